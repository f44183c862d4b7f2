-- Event types compare byte by byte (as on SQLite), whatever the database's collation: the audit
-- log's type filters ask for ranges such as 'agent.' <= type < 'agent/' (every agent.* type),
-- which a linguistic collation would order differently. Rebuilds audit_log_by_type.
ALTER TABLE audit_log ALTER COLUMN type TYPE TEXT COLLATE "C";
