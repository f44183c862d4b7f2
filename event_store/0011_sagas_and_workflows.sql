-- Saga instances (src/lightning/sagas/): one row per (saga type, instance), written by the
-- saga handlers in their consumer's transaction, with the events their commands appended and
-- their tracking position. PARKED is not stored: it is read from parked_events.
CREATE TABLE IF NOT EXISTS saga_instances (
    saga TEXT NOT NULL,
    instance TEXT NOT NULL,
    status TEXT NOT NULL,
    correlation_id TEXT NOT NULL,
    started_position BIGINT NOT NULL,
    position BIGINT NOT NULL,
    state TEXT NOT NULL,
    steps TEXT NOT NULL,
    failure_reason TEXT,
    next_timer_at TEXT,
    started_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    PRIMARY KEY (saga, instance)
);
CREATE INDEX IF NOT EXISTS saga_instances_by_start ON saga_instances (started_position, saga);
CREATE INDEX IF NOT EXISTS saga_instances_by_status ON saga_instances (status, started_position);

-- Read models of workflows: one row per workflow, one per requested version.
CREATE TABLE IF NOT EXISTS workflows (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    status TEXT NOT NULL,
    draft_version BIGINT NOT NULL,
    draft TEXT NOT NULL,
    published_version BIGINT,
    degraded BIGINT NOT NULL,
    failure_reason TEXT,
    created_position BIGINT NOT NULL,
    version BIGINT NOT NULL,
    position BIGINT NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS workflows_by_created ON workflows (created_position);
CREATE INDEX IF NOT EXISTS workflows_by_status ON workflows (status, created_position);

CREATE TABLE IF NOT EXISTS workflow_versions (
    id TEXT PRIMARY KEY,  -- <workflow id>:<version>
    workflow_id TEXT NOT NULL,
    version BIGINT NOT NULL,
    status TEXT NOT NULL,
    graph TEXT NOT NULL,
    agents TEXT NOT NULL,
    degraded_by TEXT NOT NULL,
    failure_reason TEXT,
    requested_at TEXT NOT NULL,
    settled_at TEXT,
    position BIGINT NOT NULL
);
CREATE INDEX IF NOT EXISTS workflow_versions_by_workflow ON workflow_versions (workflow_id, version);

-- The workflow versions attached to each agent (agent.workflow_attached / _detached), and the
-- rotation notice a key's policy gave (api_key.rotation_due), until the key is rotated.
ALTER TABLE agents ADD COLUMN workflows TEXT NOT NULL DEFAULT '[]';
ALTER TABLE api_keys ADD COLUMN rotation_due_at TEXT;
