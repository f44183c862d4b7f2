-- What the GraphQL servers share when several run (lightning serve --workers N, or several
-- machines): the websockets each holds per credential, so the per-credential cap holds across
-- processes (src/lightning/api/sockets.py), and the automatic persisted queries clients
-- registered, so a hash registered with one process is known to all (src/lightning/api/apq.py).
-- Times are UTC in a fixed-width ISO form (…Z), so text order is time order on both backends.
CREATE TABLE IF NOT EXISTS websocket_leases (
    id TEXT PRIMARY KEY,
    actor TEXT NOT NULL,
    server TEXT NOT NULL,
    expires_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS websocket_leases_by_actor ON websocket_leases (actor, expires_at);
CREATE INDEX IF NOT EXISTS websocket_leases_by_server ON websocket_leases (server);

CREATE TABLE IF NOT EXISTS persisted_queries (
    sha256 TEXT PRIMARY KEY,
    document TEXT NOT NULL,
    registered_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS persisted_queries_by_age ON persisted_queries (registered_at);
