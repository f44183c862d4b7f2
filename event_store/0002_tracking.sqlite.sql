-- Where each consumer stands (eventsourcing's single-row SQLite tracking table).
CREATE TABLE IF NOT EXISTS tracking (
    application_name TEXT,
    notification_id INTEGER,
    PRIMARY KEY (application_name)
) WITHOUT ROWID;
INSERT INTO tracking VALUES ('__migration__', 1) ON CONFLICT DO NOTHING;
