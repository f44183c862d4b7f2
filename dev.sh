#!/usr/bin/env bash
# The two commands of the README:
#   ./dev.sh run    set up and start the server on the embedded default (SQLite, in-process bus)
#   ./dev.sh test   set up, start PostgreSQL + RabbitMQ (scripts/services.sh), lint, type-check, test
# Extra arguments go to `lightning serve` or to pytest.
set -euo pipefail
cd "$(dirname "$0")"
VENV=${VENV:-.venv}

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

ensure_python() {
    if ! command -v python3 >/dev/null; then
        as_root apt-get update -qq && as_root apt-get install -y -qq python3 python3-venv
    fi
    python3 -c 'import sys; sys.exit(sys.version_info < (3, 11))' || {
        echo "Lightning needs Python 3.11 or newer (found $(python3 --version))" >&2
        exit 1
    }
}

ensure_venv() {
    ensure_python
    if [ ! -x "$VENV/bin/python" ]; then
        if ! python3 -m venv "$VENV" 2>/dev/null; then
            rm -rf "$VENV"
            as_root apt-get update -qq
            as_root apt-get install -y -qq "python3-venv" || as_root apt-get install -y -qq \
                "python$(python3 -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')-venv"
            python3 -m venv "$VENV"
        fi
    fi
    local stamp
    stamp="$VENV/.installed-$(sha256sum pyproject.toml | cut -c1-16)"
    if [ ! -f "$stamp" ]; then
        "$VENV/bin/python" -m pip install -q --upgrade pip
        "$VENV/bin/python" -m pip install -q -e ".[dev]"
        rm -f "$VENV"/.installed-*
        touch "$stamp"
    fi
}

lint() {
    "$VENV/bin/ruff" check src tests scripts
    "$VENV/bin/ruff" format --check src tests scripts
    "$VENV/bin/mypy"
}

command=${1:-}
shift || true
case "$command" in
    run)
        ensure_venv
        exec "$VENV/bin/lightning" serve "$@"
        ;;
    test)
        ensure_venv
        scripts/services.sh
        lint
        exec "$VENV/bin/pytest" "$@"
        ;;
    lint)
        ensure_venv
        lint
        ;;
    setup)
        ensure_venv
        ;;
    *)
        echo "usage: ./dev.sh run|test|lint|setup [args]" >&2
        exit 2
        ;;
esac
