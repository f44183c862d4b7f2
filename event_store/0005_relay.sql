-- The outbox relay's progress: the last position the broker confirmed. Written only after the
-- confirm, so a crash republishes (consumers drop duplicates) and never skips.
CREATE TABLE IF NOT EXISTS relay_position (
    name TEXT PRIMARY KEY,
    position BIGINT NOT NULL,
    updated_at TEXT NOT NULL
);
