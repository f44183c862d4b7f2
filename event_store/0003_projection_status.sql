-- Health of each consumer as its worker last reported it (running, stalled + the error).
CREATE TABLE IF NOT EXISTS projection_status (
    name TEXT PRIMARY KEY,
    status TEXT NOT NULL,
    error TEXT,
    updated_at TEXT NOT NULL
);
