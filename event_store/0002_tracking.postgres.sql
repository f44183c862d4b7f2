-- Where each consumer stands: one row per consumer (eventsourcing's single-row tracking table,
-- written by the read store in the same transaction as the consumer's effects).
CREATE TABLE IF NOT EXISTS projection_tracking (
    application_name text PRIMARY KEY,
    notification_id bigint
);
INSERT INTO projection_tracking VALUES ('__migration__', 1) ON CONFLICT DO NOTHING;
