-- The durable timer scheduler's index (src/lightning/consumers/timers.py): timers scheduled and
-- neither fired nor cancelled, as the handler "timers" read them from the log (timer.* events),
-- written in the same transaction as its tracking position. due_at is UTC in a fixed-width
-- ISO form (…Z), so text order is time order on both backends.
CREATE TABLE IF NOT EXISTS pending_timers (
    id TEXT PRIMARY KEY,
    saga TEXT NOT NULL,
    instance TEXT NOT NULL,
    step TEXT NOT NULL,
    due_at TEXT NOT NULL,
    payload TEXT NOT NULL,
    position BIGINT NOT NULL
);
CREATE INDEX IF NOT EXISTS pending_timers_by_due ON pending_timers (due_at, id);
