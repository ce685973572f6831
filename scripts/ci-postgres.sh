#!/usr/bin/env bash
# Installs (if missing) and starts a local PostgreSQL for Kav's store tests, creates a role and a
# database, and prints the connection URL on stdout (everything else goes to stderr). Idempotent:
# safe to run again on a machine where it already ran. Debian/Ubuntu (apt, pg_ctlcluster).
#
#   export KAV_TEST_POSTGRES_URL="$(scripts/ci-postgres.sh)"
#   cargo test --test store
#
# Overrides: KAV_PG_USER (kav), KAV_PG_PASSWORD (kav), KAV_PG_DB (kav_test).
set -euo pipefail

PG_USER="${KAV_PG_USER:-kav}"
PG_PASS="${KAV_PG_PASSWORD:-kav}"
PG_DB="${KAV_PG_DB:-kav_test}"

log() { echo "ci-postgres: $*" >&2; }

if [ "$(id -u)" -eq 0 ]; then
    SUDO=()
    as_postgres() { runuser -u postgres -- "$@"; }
else
    SUDO=(sudo)
    as_postgres() { sudo -u postgres "$@"; }
fi

if ! command -v pg_lsclusters >/dev/null 2>&1; then
    log "installing postgresql"
    "${SUDO[@]}" apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive "${SUDO[@]}" apt-get install -y -qq postgresql >&2
fi

cluster="$(pg_lsclusters --no-header | head -n 1 || true)"
if [ -z "$cluster" ]; then
    version="$(ls /usr/lib/postgresql | sort -V | tail -n 1)"
    log "creating cluster $version/main"
    "${SUDO[@]}" pg_createcluster "$version" main >&2
    cluster="$(pg_lsclusters --no-header | head -n 1)"
fi
read -r version name port status _ <<<"$cluster"

if [ "$status" != "online" ]; then
    log "starting cluster $version/$name on port $port"
    "${SUDO[@]}" pg_ctlcluster "$version" "$name" start >&2
fi

for _ in $(seq 1 30); do
    if pg_isready -q -h 127.0.0.1 -p "$port"; then break; fi
    sleep 1
done
pg_isready -h 127.0.0.1 -p "$port" >&2

psql_pg() { as_postgres psql -p "$port" -v ON_ERROR_STOP=1 -qtA "$@"; }

if [ "$(psql_pg -c "SELECT 1 FROM pg_roles WHERE rolname = '$PG_USER'")" != "1" ]; then
    log "creating role $PG_USER"
    psql_pg -c "CREATE ROLE \"$PG_USER\" LOGIN PASSWORD '$PG_PASS'" >&2
else
    psql_pg -c "ALTER ROLE \"$PG_USER\" LOGIN PASSWORD '$PG_PASS'" >&2
fi

if [ "$(psql_pg -c "SELECT 1 FROM pg_database WHERE datname = '$PG_DB'")" != "1" ]; then
    log "creating database $PG_DB"
    psql_pg -c "CREATE DATABASE \"$PG_DB\" OWNER \"$PG_USER\"" >&2
fi

echo "postgres://$PG_USER:$PG_PASS@127.0.0.1:$port/$PG_DB"
