-- The event store itself: eventsourcing 9.5's SQLiteApplicationRecorder schema, unchanged.
-- rowid is the global position; state is the JSON envelope without its position.
CREATE TABLE IF NOT EXISTS stored_events (
    originator_id TEXT,
    originator_version INTEGER,
    topic TEXT,
    state BLOB,
    PRIMARY KEY (originator_id, originator_version)
);
