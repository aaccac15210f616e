#!/usr/bin/env bash
# Install (Debian's package) and start a PostgreSQL server for the database tests; print its admin URL.
# Everything but the URL goes to stderr, so `.ci/run` can capture it.
set -euo pipefail
as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"
  elif command -v sudo >/dev/null; then sudo "$@"
  else echo "installing PostgreSQL needs root or sudo" >&2; exit 1
  fi
}

if ! ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1; then
  as_root apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq postgresql >&2
fi
# The newest installed *server* (a newer client-only package may sit beside it).
version=$(ls -d /usr/lib/postgresql/*/bin/postgres | awk -F/ '{print $5}' | sort -V | tail -1)
if ! pg_lsclusters --no-header | grep -q "^$version main"; then
  as_root pg_createcluster "$version" main >&2
fi
as_root pg_ctlcluster "$version" main start >&2 2>&1 || true  # already running is fine
port=$(pg_lsclusters --no-header | awk -v v="$version" '$1 == v && $2 == "main" {print $3}')
for _ in $(seq 1 30); do pg_isready -q -h 127.0.0.1 -p "$port" && break; sleep 1; done
if ! pg_isready -h 127.0.0.1 -p "$port" >&2; then
  echo "PostgreSQL $version did not start; its log:" >&2
  tail -n 30 "/var/log/postgresql/postgresql-$version-main.log" >&2 || true
  exit 1
fi
as_root su postgres -c "psql -p $port -qtAc \"SELECT 1 FROM pg_roles WHERE rolname = 'nameorigin'\"" | grep -q 1 \
  || as_root su postgres -c "psql -p $port -qc \"CREATE ROLE nameorigin LOGIN CREATEDB PASSWORD 'nameorigin'\"" >&2
echo "postgresql+asyncpg://nameorigin:nameorigin@127.0.0.1:$port/postgres"
