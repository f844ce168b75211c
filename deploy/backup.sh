#!/usr/bin/env bash
# Back up the IOC database with pg_dump's custom format (-Fc): one compressed file holding
# everything (registry, users, keys, MQTT account hashes, history in the TimescaleDB
# hypertables). Restore with deploy/restore.sh.
#
#   deploy/backup.sh [OUT_DIR]          default OUT_DIR: /var/backups/ioc
#
# The database is IOC_DATABASE_URL; when unset, /etc/ioc/ioc.env is read (IOC_ENV_FILE names
# another file), and failing that the embedded database of `ioc up` in IOC_DATA_DIR (.ioc).
# Keeps the newest IOC_BACKUP_KEEP files (14). Also keep IOC_SECRET_KEY safe, apart from the
# dumps: camera passwords in them are encrypted with it.
set -euo pipefail

out_dir=${1:-/var/backups/ioc}
keep=${IOC_BACKUP_KEEP:-14}

# shellcheck source=/dev/null
if [ -z "${IOC_DATABASE_URL:-}" ] && [ -r "${IOC_ENV_FILE:-/etc/ioc/ioc.env}" ]; then
  set -a; . "${IOC_ENV_FILE:-/etc/ioc/ioc.env}"; set +a
fi
if [ -z "${IOC_DATABASE_URL:-}" ]; then
  meta="${IOC_DATA_DIR:-.ioc}/pg.json"
  if [ -r "$meta" ]; then
    IOC_DATABASE_URL=$(python3 -c 'import json,sys; m=json.load(open(sys.argv[1])); p=m.get("password"); print(f"postgresql://ioc{":"+p if p else ""}@127.0.0.1:{m["port"]}/ioc")' "$meta")
  fi
fi
[ -n "${IOC_DATABASE_URL:-}" ] || { echo "backup: IOC_DATABASE_URL is not set" >&2; exit 2; }

mkdir -p "$out_dir"
chmod 0700 "$out_dir"
file="$out_dir/ioc-$(date -u +%Y%m%dT%H%M%SZ).dump"
# TimescaleDB's catalog has circular foreign keys; pg_dump warns about them on every run,
# which is noise for cron mail.
pg_dump -Fc --file="$file.partial" "$IOC_DATABASE_URL" \
  2> >(grep -v -e 'circular foreign-key' -e 'Consider using a full dump' -e 'disable-triggers or temporarily dropping' -e '^pg_dump: detail: [a-z_]*$' >&2)
mv "$file.partial" "$file"
chmod 0600 "$file"
echo "$file"

# Keep the newest $keep dumps.
if [ "$keep" -gt 0 ]; then
  find "$out_dir" -maxdepth 1 -name 'ioc-*.dump' -printf '%T@ %p\n' | sort -rn | tail -n +"$((keep + 1))" \
    | cut -d' ' -f2- | xargs -r rm -f --
fi
