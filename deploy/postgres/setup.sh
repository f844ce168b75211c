#!/usr/bin/env bash
# PostgreSQL + TimescaleDB for Commune IOC on this server (Debian/Ubuntu packages):
# loads TimescaleDB, creates the `ioc` role and database with the extension, and prints
# the IOC_DATABASE_URL. Idempotent: a second run changes nothing and prints the same URL
# when given the same password.
#
#   deploy/postgres/setup.sh [--password-file FILE]
#
# The role's password is read from FILE (default /etc/ioc/db.password), created with a random
# password (mode 0600) when missing. Run as root.
set -euo pipefail

pwfile=/etc/ioc/db.password
while [ $# -gt 0 ]; do
  case "$1" in
    --password-file) pwfile=$2; shift 2 ;;
    *) echo "usage: $0 [--password-file FILE]" >&2; exit 2 ;;
  esac
done
[ "$(id -u)" = 0 ] || { echo "setup: run as root" >&2; exit 1; }

here=$(cd "$(dirname "$0")/.." && pwd)
# PostgreSQL, TimescaleDB (built from Debian's source where no binary package exists).
bash "$here/install-deps.sh"

PGV=$(find /usr/lib/postgresql -maxdepth 1 -mindepth 1 -printf '%f\n' | sort -n | tail -1)
cluster=main
if ! pg_lsclusters -h | awk '{print $1" "$2}' | grep -qx "$PGV $cluster"; then
  pg_createcluster "$PGV" "$cluster" --start
fi
conf_dir=/etc/postgresql/$PGV/$cluster/conf.d
mkdir -p "$conf_dir"
cat >"$conf_dir/ioc.conf" <<CONF
# Commune IOC (deploy/postgres/setup.sh)
shared_preload_libraries = 'timescaledb'
timescaledb.telemetry_level = off
max_connections = 200
# A quarter of the RAM, as TimescaleDB recommends for a dedicated server; lower it when the
# IOC shares the machine with much else.
shared_buffers = '$(( $(awk '/MemTotal/ {print $2}' /proc/meminfo) / 4 / 1024 ))MB'
# Listen on loopback only (the default); the IOC's processes run on this host.
listen_addresses = 'localhost'
CONF
chmod 0644 "$conf_dir/ioc.conf"
systemctl enable --quiet "postgresql@$PGV-$cluster" 2>/dev/null || true
systemctl restart "postgresql@$PGV-$cluster"
for _ in $(seq 1 60); do pg_isready -q && break; sleep 0.5; done

mkdir -p "$(dirname "$pwfile")"
if [ ! -s "$pwfile" ]; then
  (umask 077; python3 -c 'import secrets; print(secrets.token_urlsafe(24))' >"$pwfile")
fi
password=$(head -1 "$pwfile")

as_pg() { runuser -u postgres -- psql -X -q -v ON_ERROR_STOP=1 "$@"; }
as_pg -v pw="$password" <<'SQL'
SELECT format('CREATE ROLE ioc LOGIN PASSWORD %L', :'pw') WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'ioc')
\gexec
ALTER ROLE ioc PASSWORD :'pw';
SELECT 'CREATE DATABASE ioc OWNER ioc' WHERE NOT EXISTS (SELECT 1 FROM pg_database WHERE datname = 'ioc')
\gexec
SQL
# TimescaleDB is not a trusted extension: the superuser creates it, the migrations then find it.
as_pg -d ioc -c "CREATE EXTENSION IF NOT EXISTS timescaledb"
port=$(runuser -u postgres -- psql -XAtc "SHOW port")
echo "IOC_DATABASE_URL=postgresql://ioc:$password@127.0.0.1:$port/ioc"
