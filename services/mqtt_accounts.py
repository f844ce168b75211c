"""MQTT accounts for Mosquitto: one per device plus the IOC's own, hashed in the database,
written out as Mosquitto's password and ACL files.

Client ids are tied to accounts by the listener (docs/broker.md): on the devices' listener the
broker replaces a device's client id with its username (`use_username_as_clientid`), so no
device can connect as `ioc-ingest-…` and take over ingest's session. The IOC's processes use
their own listener, reachable from the IOC's host (or compose network) only; their client ids
begin with `ioc-`, which no device id may.
"""

import base64
import grp
import hashlib
import hmac
import io
import logging
import os
import secrets
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import psycopg

from services import csvcells, registry, topics
from services.errors import InvalidInput, NotFound
from services.models import Device
from services.sources import IOC_BROKER, vendor
from services.sources import profiles as source_profiles
from services.sources import store as source_store

log = logging.getLogger(__name__)

IOC_USERNAME = "ioc"
# Client ids of the IOC's own processes begin with this; a device id may not (it is a client id).
IOC_CLIENT_PREFIX = "ioc-"
# What mosquitto_passwd 2.0 writes: PBKDF2-SHA512, 101 iterations, 12-byte salt. The
# passwords are 144 random bits, so the low iteration count costs nothing in safety.
_ITERATIONS = 101
_SALT_BYTES = 12
# Serialises concurrent runs, so two of them cannot hand out different passwords.
_LOCK_ID = 0x10C_0006


@dataclass(frozen=True)
class Credential:
    """A password created by this run, in clear, to hand to a device (or to the IOC)."""

    device_id: str | None
    username: str
    password: str


@dataclass(frozen=True)
class Provisioned:
    accounts: int
    created: tuple[Credential, ...]
    out_dir: Path
    ioc_password_file: Path


def hash_password(password: str, *, salt: bytes | None = None, iterations: int = _ITERATIONS) -> str:
    """Mosquitto 2.0's `$7$` hash, as `mosquitto_passwd` writes it."""
    salt = salt if salt is not None else secrets.token_bytes(_SALT_BYTES)
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, iterations)
    return f"$7${iterations}${base64.b64encode(salt).decode()}${base64.b64encode(digest).decode()}"


def verify_password(phash: str, password: str) -> bool:
    """Check a password against a `$7$` hash (ours or mosquitto_passwd's)."""
    parts = phash.split("$")
    if len(parts) != 5 or parts[1] != "7":
        return False
    try:
        iterations = int(parts[2])
        salt, digest = base64.b64decode(parts[3]), base64.b64decode(parts[4])
    except ValueError:
        return False
    return hmac.compare_digest(hashlib.pbkdf2_hmac("sha512", password.encode(), salt, iterations), digest)


def new_password() -> str:
    # Never a leading `-`: in credentials.csv it would read as a formula (and get a `'`), and
    # `mosquitto_pub -P -x…` would read it as an option.
    while (password := secrets.token_urlsafe(18)).startswith("-"):
        pass
    return password


def published_topics(d: Device) -> list[str]:
    """The topics a device may publish: its channels (SPEC §4) and its commands' results (§9).
    Not its own `cmd`: a command (retained, even) the device wrote to itself would come back to
    it as the IOC's, on every reconnect."""
    return [topics.device_topic(d.commune_id, d.kind, d.id, ch) for ch in (*topics.CHANNELS, topics.RESULTS)]


def render_passwd(hashes: dict[str, str]) -> str:
    return "".join(f"{user}:{h}\n" for user, h in sorted(hashes.items()))


def command_topic(d: Device) -> str:
    """The one topic a device reads: the IOC's commands to it (SPEC §9)."""
    return topics.device_topic(d.commune_id, d.kind, d.id, "cmd")


def vendor_topics(conn: psycopg.Connection, devices: Sequence[Device]) -> dict[str, list[str]]:
    """Device id -> the topic filters its vendor profile publishes on the IOC's own broker (SPEC §8:
    a Tasmota speaker whose `source` is a profile without `broker`), from the same catalogue the
    import checks (shipped, IOC_PROFILES_DIR, the registry's)."""
    if not any(getattr(d.source, "broker_id", None) == IOC_BROKER for d in devices):
        return {}
    try:
        base = source_profiles.catalogue(source_profiles.env_dir())
    except source_profiles.ProfileError as err:
        # one line, as the import says it, not a traceback: the ACL would miss the profile's topics
        raise InvalidInput(f"IOC_PROFILES_DIR: {'; '.join(err.errors)}") from err
    catalogue = source_profiles.effective(base, source_store.registry_profiles(conn))
    out: dict[str, set[str]] = {}
    for r in vendor.routes(devices, catalogue, IOC_BROKER):
        out.setdefault(r.device.id, set()).add(r.filter)
    return {d: sorted(fs) for d, fs in out.items()}


def render_acl(devices: Sequence[Device], vendor_topics: Mapping[str, Sequence[str]] | None = None) -> str:
    """The broker's ACL; `vendor_topics`: each device's vendor topics on this broker."""
    by_device = vendor_topics or {}
    lines = [
        "# Written by `ioc mqtt-auth` from the device registry; run it again rather than edit.",
        "# Mosquitto refuses everything not granted here.",
        "",
        "# The IOC's own processes read every device topic, publish camera status and events",
        "# for the ONVIF poller and commands to devices, and talk to each other under ioc/internal.",
        f"user {IOC_USERNAME}",
        f"topic read {topics.ROOT}/#",
        f"topic write {topics.ROOT}/+/camera/#",
        f"topic write {topics.device_topic('+', '+', '+', 'cmd')}",
        f"topic readwrite {topics.INTERNAL}/#",
    ]
    heard = sorted({t for ts in by_device.values() for t in ts})
    if heard:
        lines += ["# ... and the vendor topics of devices heard through a profile on this broker."]
        lines += [f"topic read {t}" for t in heard]
    lines += [
        "",
        "# Each device publishes its own status, availability, event and cmd_result only (or its",
        "# profile's topics), and reads only its own commands.",
    ]
    for d in sorted(devices, key=lambda d: d.id):
        lines += [f"user {d.id}", *(f"topic write {t}" for t in published_topics(d))]
        lines += [f"topic write {t}" for t in by_device.get(d.id, ())]
        lines += [f"topic read {command_topic(d)}", ""]
    return "\n".join(lines) + "\n"


def render_credentials(created: Sequence[Credential]) -> str:
    buf = io.StringIO()
    w = csvcells.writer(buf, lineterminator="\n")
    w.writerow(["device_id", "username", "password"])
    for c in created:
        w.writerow([c.device_id or "", c.username, c.password])
    return buf.getvalue()


def _write(path: Path, text: str, mode: int, group: str | None = None) -> None:
    """Replace `path` atomically: a broker reloading on SIGHUP never reads half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.chmod(tmp, mode)
        if group:
            _give_group(Path(tmp), group, mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _give_group(path: Path, group: str, mode: int) -> None:
    """Let the broker's group read a file; without that right, fall back to world-readable."""
    try:
        gid = grp.getgrnam(group).gr_gid
    except KeyError:
        return
    if path.stat().st_gid == gid:
        return
    try:
        os.chown(path, -1, gid)
    except PermissionError:
        log.warning("cannot give %s to group %s; making it world-readable", path, group)
        os.chmod(path, mode | 0o044)


def sync(
    conn: psycopg.Connection, ioc_password: str | None, rotate: Sequence[str] = ()
) -> tuple[dict[str, str], list[Device], list[Credential]]:
    """Create missing accounts and rotate the asked ones, in the caller's transaction.

    Returns (username -> hash of every active account, active devices, passwords created).
    The `ioc` account keeps its password while `ioc_password` still matches its hash.
    """
    conn.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK_ID,))
    devices = registry.devices(conn)
    if any(d.id == IOC_USERNAME for d in devices):
        raise InvalidInput(f"device id {IOC_USERNAME!r} is the IOC's own MQTT account; rename the device")
    reserved = sorted(d.id for d in devices if d.id.startswith(IOC_CLIENT_PREFIX))
    if reserved:
        raise InvalidInput(
            f"device ids beginning with {IOC_CLIENT_PREFIX!r} are the IOC's MQTT client ids"
            f" (a device's client id is its id): rename {', '.join(reserved)}"
        )
    known = {d.id for d in devices} | {IOC_USERNAME}
    unknown = sorted(set(rotate) - known)
    if unknown:
        raise NotFound(f"no active device {', '.join(unknown)} to rotate")
    stored = dict(conn.execute("SELECT username, password_hash FROM mqtt_accounts").fetchall())
    created: list[Credential] = []

    def issue(username: str, device_id: str | None, password: str | None = None) -> None:
        password = password or new_password()
        h = hash_password(password)
        conn.execute(
            "INSERT INTO mqtt_accounts (username, device_id, password_hash) VALUES (%s, %s, %s) "
            "ON CONFLICT (username) DO UPDATE SET password_hash = EXCLUDED.password_hash, rotated_at = now()",
            (username, device_id, h),
        )
        stored[username] = h
        created.append(Credential(device_id, username, password))

    ioc_hash = stored.get(IOC_USERNAME)
    if IOC_USERNAME in rotate or not ioc_password:
        issue(IOC_USERNAME, None)
    elif ioc_hash is None:
        # A fresh database next to a kept password file (restored or re-created): the
        # running processes still use that password, so adopt it.
        h = hash_password(ioc_password)
        conn.execute("INSERT INTO mqtt_accounts (username, password_hash) VALUES (%s, %s)", (IOC_USERNAME, h))
        stored[IOC_USERNAME] = h
    elif not verify_password(ioc_hash, ioc_password):
        issue(IOC_USERNAME, None)
    for d in devices:
        if d.id in rotate or d.id not in stored:
            issue(d.id, d.id)
    active = {IOC_USERNAME: stored[IOC_USERNAME]} | {d.id: stored[d.id] for d in devices}
    return active, devices, created


def provision(
    conn: psycopg.Connection, out_dir: Path, ioc_password_file: Path, rotate: Sequence[str] = ()
) -> Provisioned:
    """`ioc mqtt-auth`: sync accounts, then write passwd, acl, credentials.csv and the IOC's password.

    Files are written before the transaction commits: if writing fails, no password is
    created that nobody can read back.
    """
    current = ioc_password_file.read_text().strip() if ioc_password_file.exists() else None
    with conn.transaction():
        hashes, devices, created = sync(conn, current, rotate)
        for c in created:
            if c.username == IOC_USERNAME:
                _write(ioc_password_file, c.password + "\n", 0o600)
        _write(out_dir / "credentials.csv", render_credentials(created), 0o600)
        _write(out_dir / "acl", render_acl(devices, vendor_topics(conn, devices)), 0o640, group="mosquitto")
        _write(out_dir / "passwd", render_passwd(hashes), 0o640, group="mosquitto")
    return Provisioned(len(hashes), tuple(created), out_dir, ioc_password_file)
