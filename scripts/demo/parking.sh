#!/usr/bin/env bash
# Parking, shown from outside in distributed mode (DESIGN §1):
#   a worker whose agents projection fails on one aggregate (a failpoint), 1,000 commands on other
#   aggregates reaching every read model meanwhile, /health/ready degraded, the parked events in
#   order, and retry-parked healing them once the failpoint is gone.
# Needs the services (scripts/services.sh) and the venv (./dev.sh setup). Uses its own database
# and RabbitMQ vhost, removed at the end.
#   scripts/demo/parking.sh [commands]
set -euo pipefail
cd "$(dirname "$0")/../.."
COMMANDS=${1:-1000}
RUN=demo$$
PORT=$(.venv/bin/python -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
LOGS=$(mktemp -d)
export LIGHTNING_DATABASE_URL=postgresql://postgres@127.0.0.1:5432/lightning_$RUN
export LIGHTNING_AMQP_URL=amqp://guest:guest@127.0.0.1:5672/lightning-$RUN
export LIGHTNING_ADMIN_SECRET=demo-secret LIGHTNING_PORT=$PORT
lightning() { .venv/bin/lightning "$@"; }
L=.venv/bin/lightning  # for processes in the background: $! must be the process itself
step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
gql() {  # gql QUERY [VARIABLES-JSON]
    curl -sf "localhost:$PORT/graphql" -H "Authorization: Bearer $LIGHTNING_ADMIN_SECRET" \
        -H 'Content-Type: application/json' -d "{\"query\": $(jq -Rn --arg q "$1" '$q'), \"variables\": ${2:-{\}}}"
}
PIDS=()
cleanup() {
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    psql -qh 127.0.0.1 -U postgres -c "DROP DATABASE IF EXISTS lightning_$RUN WITH (FORCE)" >/dev/null
    rabbitmqctl -q delete_vhost "lightning-$RUN" >/dev/null 2>&1 || true
    echo "(logs in $LOGS)"
}
trap cleanup EXIT
command -v jq >/dev/null || { echo "needs jq (apt-get install jq)" >&2; exit 1; }

step "a fresh database and RabbitMQ vhost; migrate; start serve and the workers"
psql -qh 127.0.0.1 -U postgres -c "CREATE DATABASE lightning_$RUN"
rabbitmqctl -q add_vhost "lightning-$RUN" >/dev/null
rabbitmqctl -q set_permissions -p "lightning-$RUN" guest '.*' '.*' '.*' >/dev/null
lightning db migrate
$L serve >"$LOGS/serve.log" 2>&1 & PIDS+=($!)
until curl -sf "localhost:$PORT/health/live" >/dev/null; do sleep 0.2; done
TARGET=$(gql 'mutation { registerAgent(input: {name: "target", provider: "grok", model: "grok-beta"}) { agent { id } } }' | jq -r .data.registerAgent.agent.id)
echo "target aggregate: $TARGET"
LIGHTNING_FAILPOINTS="apply:agents:$TARGET" $L worker all >"$LOGS/worker-1.log" 2>&1 & WORKER=$!; PIDS+=($WORKER)
echo "worker started with LIGHTNING_FAILPOINTS=apply:agents:$TARGET"

step "three reconfigurations of the target (its agents projection fails on them), then $COMMANDS commands on other agents"
for t in 0.3 0.6 0.9; do
    gql 'mutation($id: ID!, $t: Float) { reconfigureAgent(input: {id: $id, temperature: $t}) { position } }' \
        "{\"id\": \"$TARGET\", \"t\": $t}" | jq -c .data
done
start=$(date +%s.%N)
seq "$COMMANDS" | xargs -P 8 -I{} curl -sf -o /dev/null "localhost:$PORT/graphql" \
    -H "Authorization: Bearer $LIGHTNING_ADMIN_SECRET" -H 'Content-Type: application/json' \
    -d '{"query": "mutation { registerAgent(input: {name: \"agent-{}\", provider: \"grok\", model: \"grok-code-fast-1\"}) { position } }"}'
HEAD=$(psql -qtAh 127.0.0.1 -U postgres -d "lightning_$RUN" -c "SELECT max(notification_id) FROM stored_events")
echo "$COMMANDS commands in $(echo "$(date +%s.%N) - $start" | bc) s; store head: position $HEAD"

step "every read model reaches the head (consistentWith $HEAD on an untouched aggregate's read models)"
gql "{ auditLog(first: 1, consistentWith: $HEAD) { edges { node { position type } } } apiKeys(consistentWith: $HEAD) { edges { node { id } } } }" | jq -c .
echo "agents in the read model: $(lightning projections status --json | jq -c 'select(.name=="agents") | {position, lag, status, parked}')"
psql -qtAh 127.0.0.1 -U postgres -d "lightning_$RUN" -c "SELECT count(*) || ' agent rows (all but the target: ' || $COMMANDS || ' expected)' FROM agents"

step "/health/ready"
curl -s "localhost:$PORT/health/ready" -w '  -> HTTP %{http_code}\n'

step "lightning consumers parked (the target's events, in order)"
lightning consumers parked
lightning events list --aggregate "$TARGET" --json | jq -c '{position, type}'

step "consistentWith on the held-back aggregate says why"
gql "query(\$id: ID!) { agent(id: \$id, consistentWith: $HEAD) { temperature } }" "{\"id\": \"$TARGET\"}" | jq -c '.errors[0] | {message, code: .extensions.code}'

step "the fix: restart the worker without the failpoint; dry run, then retry-parked"
kill "$WORKER"; wait "$WORKER" 2>/dev/null || true
$L worker all >"$LOGS/worker-2.log" 2>&1 & PIDS+=($!)
lightning consumers retry-parked --aggregate "$TARGET" --dry-run
lightning consumers retry-parked --aggregate "$TARGET"
gql "query(\$id: ID!) { agent(id: \$id, consistentWith: $HEAD) { name temperature configVersion } }" "{\"id\": \"$TARGET\"}" | jq -c .
lightning consumers status
curl -s "localhost:$PORT/health/ready" -w '  -> HTTP %{http_code}\n' | cut -c1-200
