#!/usr/bin/env bash
# Make sure PostgreSQL and RabbitMQ are running on this machine, idempotently:
# install them with apt-get on a bare Debian/Ubuntu machine, start them if they are stopped,
# and let the test user (postgres, trust on loopback) connect. Safe to run any number of times.
set -euo pipefail

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }
log() { echo "services: $*" >&2; }

missing=()
command -v pg_ctlcluster >/dev/null || missing+=(postgresql postgresql-contrib)
command -v rabbitmq-server >/dev/null || missing+=(rabbitmq-server)
if ((${#missing[@]})); then
    log "installing ${missing[*]}"
    as_root apt-get update -qq
    DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq "${missing[@]}"
fi

# ---- PostgreSQL -----------------------------------------------------------------------------
pg_ready() { pg_isready -h 127.0.0.1 -p 5432 -q; }
if ! pg_ready; then
    for version in $(ls /etc/postgresql); do
        log "starting PostgreSQL $version"
        as_root pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
    done
fi
for _ in $(seq 60); do pg_ready && break; sleep 0.5; done
pg_ready || { log "PostgreSQL did not come up on 127.0.0.1:5432"; exit 1; }

if ! psql "postgresql://postgres@127.0.0.1:5432/postgres" -Atqc "SELECT 1" >/dev/null 2>&1; then
    # A fresh Debian install asks for passwords on TCP; tests connect as postgres on loopback.
    for hba in /etc/postgresql/*/main/pg_hba.conf; do
        if ! grep -q "lightning-test" "$hba"; then
            log "allowing trust auth for postgres on loopback in $hba"
            as_root sed -i '1i host all postgres 127.0.0.1/32 trust # lightning-test\nhost all postgres ::1/128 trust # lightning-test' "$hba"
        fi
    done
    for version in $(ls /etc/postgresql); do
        as_root pg_ctlcluster --skip-systemctl-redirect "$version" main reload
    done
    sleep 1
    psql "postgresql://postgres@127.0.0.1:5432/postgres" -Atqc "SELECT 1" >/dev/null
fi
log "PostgreSQL ready"

# ---- RabbitMQ -------------------------------------------------------------------------------
rabbit_ready() { as_root rabbitmq-diagnostics -q check_port_connectivity >/dev/null 2>&1; }
if ! rabbit_ready; then
    log "starting RabbitMQ"
    as_root rabbitmq-server -detached >/dev/null 2>&1 || true
    for _ in $(seq 120); do rabbit_ready && break; sleep 1; done
fi
rabbit_ready || { log "RabbitMQ did not come up on 127.0.0.1:5672"; exit 1; }
log "RabbitMQ ready"
