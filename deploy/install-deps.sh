#!/usr/bin/env bash
# Installs the system packages Commune IOC needs, from the distribution only:
# PostgreSQL + TimescaleDB (built from Debian's source package where no binary
# package exists), Mosquitto (its broker rebuilt from Debian's source with our patch), and
# with --browser Debian's Chromium for browser tests.
# Idempotent: a second run installs nothing and takes well under a second.
set -euo pipefail

want_browser=0
for arg in "$@"; do
  case "$arg" in
    --browser) want_browser=1 ;;
    *) echo "usage: $0 [--browser]" >&2; exit 2 ;;
  esac
done

SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive

pg_major() {
  local cfg
  for cfg in /usr/lib/postgresql/*/bin/pg_config; do
    [ -x "$cfg" ] && basename "$(dirname "$(dirname "$cfg")")"
  done | sort -n | tail -1
}

missing=()
have() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"; }
for p in postgresql mosquitto mosquitto-clients; do have "$p" || missing+=("$p"); done
# SNMP tests and bench: net-snmp's agent (started by tests/fix_snmp.py, never as the system
# service) and its command-line tools (the bench's raw limit)
for p in snmpd snmp; do have "$p" || missing+=("$p"); done
# Ping tests and bench: iproute2 (tests/sources/test_probes.py's network namespace) and fping (the
# bench's raw limit, bench/probe_poll.py)
for p in iproute2 fping; do have "$p" || missing+=("$p"); done
# The criteria report's PDF (services/criteria/pdf.py, WeasyPrint): Pango to lay text out, a font
# that covers Vietnamese (ễ, ự, ặ ...), and poppler-utils (pdftoppm, pdftotext) for the tests that
# render the pages and read their text back
for p in libpango-1.0-0 libpangoft2-1.0-0 fonts-dejavu-core poppler-utils; do have "$p" || missing+=("$p"); done
if [ "$want_browser" = 1 ]; then have chromium || missing+=(chromium); fi

updated=0
apt_update() {
  if [ "$updated" = 0 ]; then $SUDO apt-get update -qq; updated=1; fi
}

if [ "${#missing[@]}" -gt 0 ]; then
  echo "install-deps: installing ${missing[*]}"
  apt_update
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# The package starts a cluster and a broker as system services; Commune IOC starts
# its own (ioc up, the tests), so the system ones only take ports and memory.
for svc in mosquitto snmpd; do
  if command -v systemctl >/dev/null && systemctl is-active --quiet "$svc" 2>/dev/null; then
    $SUDO systemctl disable --now "$svc" >/dev/null 2>&1 || true
  fi
done

# Mosquitto: every release (Debian 12's 2.0.11, trixie's 2.0.21) forgets a durable client's
# $share subscription on restart, and ingest subscribes through $share: QoS 1 messages that
# arrive before ingest subscribes again are acknowledged and dropped (docs/broker.md). Build
# trixie's source package with deploy/mosquitto/patches into /usr/local/sbin/mosquitto (the
# broker only, ~15 s); the Debian package stays for its user, unit, config dirs and tools.
# Rebuilt only when that binary is missing or not this patch level.
MOSQ_BIN=/usr/local/sbin/mosquitto
MOSQ_TAG=ioc1   # bump when deploy/mosquitto/patches changes
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
build_mosquitto() {
  echo "install-deps: Mosquitto with persistent shared subscriptions"
  apt_update
  for p in build-essential dpkg-dev libssl-dev libsystemd-dev; do
    have "$p" || { $SUDO apt-get install -y -qq --no-install-recommends "$p" >/dev/null; }
  done
  mwork=$(mktemp -d /tmp/ioc-mosquitto.XXXXXX)
  mkdir -p "$mwork/lists/partial"
  echo "deb-src http://deb.debian.org/debian trixie main" >"$mwork/sources.list"
  maptopts=(-oDir::Etc::SourceList="$mwork/sources.list" -oDir::Etc::SourceParts=/nonexistent
            -oDir::State::Lists="$mwork/lists" -oAPT::Sandbox::User=root)
  apt-get "${maptopts[@]}" update -qq
  (cd "$mwork" && apt-get "${maptopts[@]}" source -qq mosquitto >/dev/null)
  msrc=$(find "$mwork" -maxdepth 1 -type d -name 'mosquitto-*' | head -1)
  [ -n "$msrc" ] || { echo "install-deps: apt-get source mosquitto gave no source tree" >&2; exit 1; }
  (
    cd "$msrc"
    for patch in "$here"/mosquitto/patches/*.patch; do patch -p1 -s <"$patch"; done
    mver=$(sed -n 's/^VERSION=//p' config.mk)
    make -C src -j"$(nproc)" VERSION="$mver+$MOSQ_TAG" WITH_SYSTEMD=yes WITH_WEBSOCKETS=no \
      WITH_CJSON=no WITH_DOCS=no WITH_SRV=no WITH_WRAP=no WITH_DLT=no WITH_MEMORY_TRACKING=no \
      mosquitto >/dev/null
    $SUDO install -m 0755 src/mosquitto "$MOSQ_BIN"
  )
  rm -rf "$mwork"
  echo "install-deps: $("$MOSQ_BIN" -h | head -1) installed as $MOSQ_BIN"
}
mosq_now=$("$MOSQ_BIN" -h 2>/dev/null | head -1 || true)   # -h exits non-zero
case "$mosq_now" in
  *"+$MOSQ_TAG") ;;
  *) build_mosquitto ;;
esac

# snmpsim (the tests' simulated SNMP agents) refuses to run as root and drops to nobody, who
# cannot read a Python under /root (pyenv): its own venv from Debian's python3, world-readable.
SNMPSIM=/opt/ioc-snmpsim
if [ ! -x "$SNMPSIM/bin/snmpsim-command-responder" ]; then
  echo "install-deps: snmpsim in $SNMPSIM"
  have python3-venv || { apt_update; $SUDO apt-get install -y -qq --no-install-recommends python3-venv >/dev/null; }
  $SUDO /usr/bin/python3 -m venv "$SNMPSIM"
  $SUDO "$SNMPSIM/bin/pip" install -q --disable-pip-version-check snmpsim==1.2.2 pysmi==2.0.0 cryptography==50.0.2
  $SUDO chmod -R a+rX "$SNMPSIM"
fi

PGV=$(pg_major)
if [ -z "$PGV" ]; then
  have "postgresql-server-dev-all" || { apt_update; $SUDO apt-get install -y -qq postgresql-server-dev-all >/dev/null; }
  PGV=$(pg_major)
fi
[ -n "$PGV" ] || { echo "install-deps: no PostgreSQL found after install" >&2; exit 1; }
PGBIN=/usr/lib/postgresql/$PGV/bin
EXTDIR=$("$PGBIN/pg_config" --sharedir 2>/dev/null || echo "/usr/share/postgresql/$PGV")/extension

if ls "$EXTDIR"/timescaledb.control >/dev/null 2>&1; then
  exit 0
fi

echo "install-deps: TimescaleDB for PostgreSQL $PGV"
apt_update
if apt-cache show "postgresql-$PGV-timescaledb" >/dev/null 2>&1; then
  $SUDO apt-get install -y -qq "postgresql-$PGV-timescaledb" >/dev/null
  exit 0
fi

# No binary package (Debian 12): build the Apache-licensed edition from Debian's
# own source package in trixie, with a private sources list so the system's apt
# configuration stays untouched.
for p in "postgresql-server-dev-$PGV" build-essential cmake dpkg-dev libssl-dev libkrb5-dev; do
  have "$p" || { $SUDO apt-get install -y -qq --no-install-recommends "$p" >/dev/null; }
done
work=$(mktemp -d /tmp/ioc-tsdb.XXXXXX)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/lists/partial"
echo "deb-src http://deb.debian.org/debian trixie main" >"$work/sources.list"
aptopts=(-oDir::Etc::SourceList="$work/sources.list" -oDir::Etc::SourceParts=/nonexistent
         -oDir::State::Lists="$work/lists" -oAPT::Sandbox::User=root)
apt-get "${aptopts[@]}" update -qq
(cd "$work" && apt-get "${aptopts[@]}" source -qq timescaledb >/dev/null)
src=$(find "$work" -maxdepth 1 -type d -name 'timescaledb-*' | head -1)
[ -n "$src" ] || { echo "install-deps: apt-get source timescaledb gave no source tree" >&2; exit 1; }
(
  cd "$src"
  ./bootstrap -DAPACHE_ONLY=1 -DREGRESS_CHECKS=OFF -DTAP_CHECKS=OFF -DUSE_TELEMETRY=OFF \
    -DWARNINGS_AS_ERRORS=OFF -DPG_CONFIG="$PGBIN/pg_config" >/dev/null
  make -C build -j"$(nproc)" >/dev/null
  $SUDO make -C build install >/dev/null
)
echo "install-deps: TimescaleDB $(basename "$src" | sed 's/timescaledb-//') installed (Apache edition)"
