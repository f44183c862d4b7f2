-- Applied commands (src/lightning/store/commands.py): a command id is unique per principal. The
-- event store writes a command's row in the same transaction as its events, with the position
-- of its last event, so a repeat is refused as a whole and can answer the first result.
CREATE TABLE IF NOT EXISTS applied_commands (
    principal TEXT NOT NULL,
    command_id TEXT NOT NULL,
    aggregate_id TEXT NOT NULL,
    position BIGINT NOT NULL,
    CONSTRAINT applied_commands_pkey PRIMARY KEY (principal, command_id)
);
