-- Secrets encrypted at rest (src/lightning/store/secrets.py): webhook signing secrets and API-key
-- secrets awaiting their delivery. sealed = base64(nonce + AES-256-GCM ciphertext + tag) under
-- the key key_id names; the event log holds only a secret's id and fingerprint.
CREATE TABLE IF NOT EXISTS secrets (
    id TEXT PRIMARY KEY,
    purpose TEXT NOT NULL,
    key_id TEXT NOT NULL,
    sealed TEXT NOT NULL,
    created_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS secrets_by_key ON secrets (key_id, id);

-- The webhook dispatcher (src/lightning/webhooks/), a consumer kind. Its handler keeps the
-- subscriptions (webhook_endpoints) and records one delivery per (event, subscription) in the
-- transaction of its tracking position; the sender then works through the deliveries. Retry
-- schedules, leases and attempts are operational state (DESIGN §1), not events.
CREATE TABLE IF NOT EXISTS webhook_endpoints (
    id TEXT PRIMARY KEY,
    url TEXT NOT NULL,
    event_types TEXT NOT NULL,
    description TEXT NOT NULL,
    status TEXT NOT NULL,
    secret_id TEXT NOT NULL,
    secret_fingerprint TEXT NOT NULL,
    previous_secret_id TEXT,
    previous_valid_until TEXT,
    disabled_reason TEXT,
    failing_since TEXT,
    created_position BIGINT NOT NULL,
    position BIGINT NOT NULL,
    version BIGINT NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS webhook_endpoints_by_created ON webhook_endpoints (created_position);

CREATE TABLE IF NOT EXISTS webhook_deliveries (
    id TEXT PRIMARY KEY,
    subscription_id TEXT NOT NULL,
    event_id TEXT NOT NULL,
    position BIGINT NOT NULL,
    event_type TEXT NOT NULL,
    status TEXT NOT NULL,
    attempts BIGINT NOT NULL,
    round_attempts BIGINT NOT NULL,
    next_attempt_at TEXT,
    leased_until TEXT,
    secret_id TEXT,
    last_error TEXT,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS webhook_deliveries_by_event
    ON webhook_deliveries (subscription_id, event_id);
CREATE INDEX IF NOT EXISTS webhook_deliveries_due ON webhook_deliveries (status, next_attempt_at);
CREATE INDEX IF NOT EXISTS webhook_deliveries_by_position
    ON webhook_deliveries (subscription_id, position);
CREATE INDEX IF NOT EXISTS webhook_deliveries_leased
    ON webhook_deliveries (subscription_id, status, leased_until);
CREATE INDEX IF NOT EXISTS webhook_deliveries_next
    ON webhook_deliveries (subscription_id, status, attempts, position);

CREATE TABLE IF NOT EXISTS webhook_attempts (
    delivery_id TEXT NOT NULL,
    attempt BIGINT NOT NULL,
    at TEXT NOT NULL,
    status_code BIGINT,
    latency_ms DOUBLE PRECISION NOT NULL,
    error TEXT,
    response TEXT,
    PRIMARY KEY (delivery_id, attempt)
);

-- Attempts counted by outcome and latency bucket (what /metrics shows, across processes).
CREATE TABLE IF NOT EXISTS webhook_attempt_stats (
    outcome TEXT NOT NULL,
    le TEXT NOT NULL,
    count BIGINT NOT NULL,
    total_ms DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (outcome, le)
);

ALTER TABLE api_keys ADD COLUMN deliver_to TEXT;
