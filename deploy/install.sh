#!/usr/bin/env bash
# Production install of Commune IOC on one Debian 12 / Ubuntu 22.04+ server, as root:
# PostgreSQL+TimescaleDB, Mosquitto (TLS, accounts, ACL), the IOC in /opt/ioc under systemd,
# nginx with TLS in front of two gateways. Idempotent: run it again to upgrade the code
# (the source tree it is run from is copied to /opt/ioc) and restart the services.
#
#   sudo deploy/install.sh --server-name ioc.example.vn [--gateways 2] [--ingests 1]
#
# Certificates: /etc/ssl/ioc/{fullchain,privkey}.pem for nginx and
# /etc/mosquitto/certs/server.{crt,key} for MQTT; a self-signed pair is made where none is
# present, to be replaced (certbot --nginx, or the commune's CA). See deploy/INSTALL.md.
set -euo pipefail

server_name=$(hostname -f)
gateways=2
ingests=1
while [ $# -gt 0 ]; do
  case "$1" in
    --server-name) server_name=$2; shift 2 ;;
    --gateways) gateways=$2; shift 2 ;;
    --ingests) ingests=$2; shift 2 ;;
    *) echo "usage: $0 [--server-name NAME] [--gateways N] [--ingests N]" >&2; exit 2 ;;
  esac
done
[ "$(id -u)" = 0 ] || { echo "install: run as root" >&2; exit 1; }
src=$(cd "$(dirname "$0")/.." && pwd)
export DEBIAN_FRONTEND=noninteractive

echo "== packages"
bash "$src/deploy/install-deps.sh"
apt-get install -y -qq --no-install-recommends nginx python3-venv openssl rsync >/dev/null

echo "== user and directories"
id ioc >/dev/null 2>&1 || useradd --system --home-dir /var/lib/ioc --shell /usr/sbin/nologin ioc
install -d -o ioc -g ioc -m 0750 /var/lib/ioc /var/backups/ioc
install -d -o root -g ioc -m 0750 /etc/ioc
# setgid: files `ioc mqtt-auth` writes here belong to the mosquitto group, which reads them.
install -d -o ioc -g mosquitto -m 2750 /etc/mosquitto/ioc
install -d -o root -g mosquitto -m 0750 /etc/mosquitto/certs

echo "== code in /opt/ioc"
rsync -a --delete --exclude .venv --exclude .git --exclude .ioc --exclude '__pycache__' \
  --exclude '*.egg-info' --exclude test-output "$src/" /opt/ioc/
[ -x /opt/ioc/.venv/bin/python ] || python3 -m venv /opt/ioc/.venv
/opt/ioc/.venv/bin/pip install -q --disable-pip-version-check -U pip
/opt/ioc/.venv/bin/pip install -q --disable-pip-version-check -e /opt/ioc
chown -R root:root /opt/ioc

echo "== database"
db_line=$(bash /opt/ioc/deploy/postgres/setup.sh --password-file /etc/ioc/db.password | tail -1)
if [ ! -f /etc/ioc/ioc.env ]; then
  secret=$(python3 -c 'import secrets; print(secrets.token_urlsafe(32))')
  sed -e "s|^IOC_DATABASE_URL=.*|${db_line}|" -e "s|^IOC_SECRET_KEY=.*|IOC_SECRET_KEY=${secret}|" \
      -e "s|ioc.example.vn|${server_name}|" /opt/ioc/deploy/ioc.env.example >/etc/ioc/ioc.env
  chown root:ioc /etc/ioc/ioc.env
  chmod 0640 /etc/ioc/ioc.env
fi
if [ ! -f /etc/ioc/alerts.yaml ]; then
  printf 'rules: {offline: {for_s: 120}}\nchannels: {}\nroutes: []\n' >/etc/ioc/alerts.yaml
  chown root:ioc /etc/ioc/alerts.yaml
  chmod 0640 /etc/ioc/alerts.yaml
fi

self_signed() {  # CERT KEY
  [ -s "$1" ] && [ -s "$2" ] && return 0
  echo "   self-signed certificate for $server_name in $1 (replace it)"
  openssl req -x509 -newkey rsa:2048 -nodes -days 825 -subj "/CN=$server_name" \
    -addext "subjectAltName=DNS:$server_name" -keyout "$2" -out "$1" 2>/dev/null
}

echo "== systemd units"
install -m 0644 /opt/ioc/deploy/systemd/*.service /opt/ioc/deploy/systemd/*.target \
  /opt/ioc/deploy/systemd/*.timer /etc/systemd/system/
# The packaged unit runs the patched broker install-deps.sh built (/usr/local/sbin/mosquitto).
install -D -m 0644 /opt/ioc/deploy/mosquitto/systemd-dropin.conf \
  /etc/systemd/system/mosquitto.service.d/ioc.conf
systemctl daemon-reload
systemctl start ioc-migrate.service

echo "== mosquitto"
self_signed /etc/mosquitto/certs/server.crt /etc/mosquitto/certs/server.key
chgrp mosquitto /etc/mosquitto/certs/server.key && chmod 0640 /etc/mosquitto/certs/server.key
[ -f /etc/mosquitto/mosquitto.conf.dpkg-ioc ] || cp /etc/mosquitto/mosquitto.conf /etc/mosquitto/mosquitto.conf.dpkg-ioc
install -m 0644 /opt/ioc/deploy/mosquitto/mosquitto.conf /etc/mosquitto/mosquitto.conf
# Accounts for every registered device and for the IOC itself (passwd, acl, ioc.password).
systemctl start ioc-mqtt-auth.service
# install-deps.sh stops the packaged broker (development uses its own); production uses it.
systemctl enable --quiet mosquitto
systemctl restart mosquitto

echo "== IOC services"
systemctl enable --quiet ioc.target ioc-migrate.service ioc-alerts.service ioc-backup.timer
for i in $(seq 1 "$ingests"); do systemctl enable --quiet "ioc-ingest@$i.service"; done
upstream=""
for i in $(seq 1 "$gateways"); do
  port=$((8000 + i))
  systemctl enable --quiet "ioc-gateway@$port.service"
  upstream+="    server 127.0.0.1:$port max_fails=3 fail_timeout=5s;\n"
done
systemctl restart ioc.target
systemctl start ioc-backup.timer

echo "== nginx"
install -d -m 0750 /etc/ssl/ioc
self_signed /etc/ssl/ioc/fullchain.pem /etc/ssl/ioc/privkey.pem
awk -v ups="$upstream" '
  /^upstream ioc_gateway/ { print; printf "%s", ups; skip = 1; next }
  skip && /^    server / { next }
  { skip = 0; print }' /opt/ioc/deploy/nginx/ioc.conf \
  | sed "s/ioc.example.vn/$server_name/g" >/etc/nginx/sites-available/ioc
ln -sf /etc/nginx/sites-available/ioc /etc/nginx/sites-enabled/ioc
nginx -t -q
systemctl reload-or-restart nginx

echo "== done"
echo "Dashboard: https://$server_name/"
echo "First admin:  /opt/ioc/deploy/ioc-cli.sh users add admin --role admin   (password on stdin)"
echo "Devices' MQTT passwords: /etc/mosquitto/ioc/credentials.csv (mode 0600; only new ones each run)"
