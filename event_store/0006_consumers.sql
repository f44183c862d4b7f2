-- The consumer mechanism's own tables (src/lightning/consumers/): every consumer kind
-- (projection builders, sagas, the webhook dispatcher) reports its handlers' health here
-- and parks what a handler cannot apply.
ALTER TABLE projection_status RENAME TO consumer_status;
ALTER TABLE consumer_status ADD COLUMN consumer TEXT NOT NULL DEFAULT 'projections';

-- Events a handler could not apply (after its retries), with every later event of the same
-- key (the aggregate for a projection) behind them, in order, until an operator retries or
-- skips them. Written in the same transaction as the handler's tracking position.
CREATE TABLE IF NOT EXISTS parked_events (
    consumer TEXT NOT NULL,
    handler TEXT NOT NULL,
    key TEXT NOT NULL,
    position BIGINT NOT NULL,
    type TEXT NOT NULL,
    error TEXT,
    attempts INTEGER NOT NULL,
    parked_at TEXT NOT NULL,
    skipping_since TEXT,  -- set while an operator's skip-parked is recording the skip
    PRIMARY KEY (consumer, handler, position)
);
CREATE INDEX IF NOT EXISTS parked_events_by_key ON parked_events (consumer, handler, key, position);
