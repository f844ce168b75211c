#!/usr/bin/env bash
# Restore a dump made by deploy/backup.sh into a NEW database, the TimescaleDB way
# (timescaledb_pre_restore / pg_restore / timescaledb_post_restore).
#
#   deploy/restore.sh FILE [TARGET_URL]
#
# TARGET_URL defaults to IOC_DATABASE_URL (or /etc/ioc/ioc.env, see backup.sh). Its database
# must not exist yet (it is created), unless --replace is given, which drops it first: stop the
# IOC services (systemctl stop ioc.target) before replacing the live database. The server
# needs the same TimescaleDB version as the one the dump came from.
set -euo pipefail

replace=0
args=()
for a in "$@"; do
  case "$a" in
    --replace) replace=1 ;;
    -h|--help) sed -n '2,12p' "$0"; exit 0 ;;
    *) args+=("$a") ;;
  esac
done
[ "${#args[@]}" -ge 1 ] || { echo "usage: $0 [--replace] FILE [TARGET_URL]" >&2; exit 2; }
file=${args[0]}
[ -r "$file" ] || { echo "restore: cannot read $file" >&2; exit 2; }

# shellcheck source=/dev/null
if [ "${#args[@]}" -lt 2 ] && [ -z "${IOC_DATABASE_URL:-}" ] && [ -r "${IOC_ENV_FILE:-/etc/ioc/ioc.env}" ]; then
  set -a; . "${IOC_ENV_FILE:-/etc/ioc/ioc.env}"; set +a
fi
url=${args[1]:-${IOC_DATABASE_URL:-}}
[ -n "$url" ] || { echo "restore: give TARGET_URL or set IOC_DATABASE_URL" >&2; exit 2; }

# postgresql://user:pass@host:port/DBNAME?params -> the database name and the same server's
# maintenance database.
base=${url%%\?*}
query=${url#"$base"}
db=${base##*/}
maint="${base%/*}/postgres$query"
[[ "$db" =~ ^[A-Za-z0-9_-]+$ ]] || { echo "restore: unusable database name '$db' in TARGET_URL" >&2; exit 2; }

psql_q() { psql -X -q -v ON_ERROR_STOP=1 "$@"; }

exists=$(psql_q -At -d "$maint" -c "SELECT 1 FROM pg_database WHERE datname = '$db'")
if [ "$exists" = 1 ]; then
  if [ "$replace" = 1 ]; then
    psql_q -d "$maint" -c "DROP DATABASE \"$db\" WITH (FORCE)"
  else
    echo "restore: database $db exists; restore into a new one, or give --replace" >&2
    exit 1
  fi
fi
psql_q -d "$maint" -c "CREATE DATABASE \"$db\""
psql_q -d "$url" -c "CREATE EXTENSION IF NOT EXISTS timescaledb" \
  -c "SELECT timescaledb_pre_restore()" >/dev/null
# pg_restore re-creates the extension's objects while timescaledb.restoring is on; its
# complaint that the extension already exists is expected, any other error is not.
errors=$(mktemp)
trap 'rm -f "$errors"' EXIT
set +e
pg_restore --no-owner --jobs="${IOC_RESTORE_JOBS:-1}" -d "$url" "$file" 2>"$errors"
rc=$?
set -e
psql_q -d "$url" -c "SELECT timescaledb_post_restore()" -c "ANALYZE" >/dev/null
if [ "$rc" != 0 ]; then
  if grep -v 'already exists\|errors ignored on restore\|while PROCESSING TOC\|from TOC entry\|Command was:\|^\s*$\|^pg_restore: warning' \
       "$errors" | grep -q .; then
    cat "$errors" >&2
    echo "restore: pg_restore reported errors (above)" >&2
    exit 1
  fi
fi
echo "restored $file into $db"
