-- Read models (times are ISO-8601 UTC text, which sorts like the times it holds).
CREATE TABLE IF NOT EXISTS agents (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    description TEXT NOT NULL,
    provider TEXT NOT NULL,
    model TEXT NOT NULL,
    temperature DOUBLE PRECISION NOT NULL,
    max_tokens BIGINT NOT NULL,
    system_prompt TEXT NOT NULL,
    tools TEXT NOT NULL,
    status TEXT NOT NULL,
    config_version BIGINT NOT NULL,
    version BIGINT NOT NULL,
    created_position BIGINT NOT NULL,
    position BIGINT NOT NULL,
    registered_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS agents_by_created ON agents (created_position);
CREATE INDEX IF NOT EXISTS agents_by_name ON agents (name);

CREATE TABLE IF NOT EXISTS api_keys (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    role TEXT NOT NULL,
    status TEXT NOT NULL,
    expires_at TEXT,
    rotation_policy TEXT,
    previous_valid_until TEXT,
    issued_at TEXT NOT NULL,
    rotated_at TEXT,
    created_position BIGINT NOT NULL,
    version BIGINT NOT NULL,
    position BIGINT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS api_keys_by_created ON api_keys (created_position);

CREATE TABLE IF NOT EXISTS audit_log (
    position BIGINT PRIMARY KEY,
    event_id TEXT NOT NULL,
    type TEXT NOT NULL,
    aggregate_type TEXT NOT NULL,
    aggregate_id TEXT NOT NULL,
    version BIGINT NOT NULL,
    actor TEXT NOT NULL,
    occurred_at TEXT NOT NULL,
    correlation_id TEXT NOT NULL,
    causation_id TEXT,
    data TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS audit_log_by_actor ON audit_log (actor, position);
CREATE INDEX IF NOT EXISTS audit_log_by_aggregate ON audit_log (aggregate_id, position);
CREATE INDEX IF NOT EXISTS audit_log_by_type ON audit_log (type, position);
