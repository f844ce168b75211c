#!/usr/bin/env bash
# Runs an `ioc` command on a production install as the ioc user, with /etc/ioc/ioc.env:
#   sudo /opt/ioc/deploy/ioc-cli.sh devices import /etc/ioc/registry.yaml
#   sudo /opt/ioc/deploy/ioc-cli.sh users add admin --role admin   (password on stdin)
# After `devices import`, give the new devices MQTT accounts: systemctl start ioc-mqtt-auth
set -euo pipefail
cd /var/lib/ioc
set -a
# shellcheck source=/dev/null
. /etc/ioc/ioc.env
set +a
# runuser without --login keeps the environment just loaded.
exec runuser -u ioc -- /opt/ioc/.venv/bin/ioc "$@"
