"""PostgreSQL+TimescaleDB and Mosquitto run as child processes, data in one directory.

Used by `ioc up` (the embedded default) and by the test fixtures, so both start the
servers the same way. Both survive a killed parent: a server left running from a killed
run is stopped cleanly and started again on the same data.
"""

from __future__ import annotations

import errno
import fcntl
import glob
import json
import logging
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger(__name__)

# Debian's packages create these users; servers never run as root.
PG_USER = "postgres"
MQTT_USER = "mosquitto"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as s:
        s.settimeout(0.3)
        return s.connect_ex((host, port)) == 0


def pg_bindir() -> Path:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/postgres"), key=lambda p: int(p.split("/")[4]))
    if not found:
        raise RuntimeError("PostgreSQL is not installed (run deploy/install-deps.sh)")
    return Path(found[-1]).parent


def _as_root() -> bool:
    return os.geteuid() == 0


def _run_as(user: str) -> dict[str, object]:
    """Popen arguments that drop to `user` when we are root."""
    if not _as_root():
        return {}
    pw = pwd.getpwnam(user)
    return {"user": pw.pw_uid, "group": pw.pw_gid, "extra_groups": []}


def _chown(path: Path, user: str) -> None:
    if _as_root():
        pw = pwd.getpwnam(user)
        os.chown(path, pw.pw_uid, pw.pw_gid)


def _check_traversable(path: Path, user: str) -> None:
    """initdb/postgres must enter every directory above the data dir."""
    if not _as_root():
        return
    pw = pwd.getpwnam(user)
    resolved = path.resolve()
    for parent in [resolved, *resolved.parents]:
        st = parent.stat()
        ok = (st.st_mode & 0o001) or (st.st_uid == pw.pw_uid and st.st_mode & 0o100)
        if not ok:
            raise RuntimeError(
                f"{parent} is not searchable by the unprivileged user {user!r} that runs PostgreSQL;"
                f" choose a data dir elsewhere (--data-dir or IOC_DATA_DIR), e.g. under /var/lib"
            )


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


LOCK_FILE = "ioc-up.lock"


class DataDirInUse(RuntimeError):
    """Another live process holds the data dir's lock."""

    def __init__(self, data_dir: Path, pid: int | None) -> None:
        who = f" (pid {pid})" if pid else ""
        super().__init__(f"{data_dir} is in use by a running `ioc up`{who}")
        self.data_dir, self.pid = data_dir, pid


@dataclass
class DataDirLock:
    """An exclusive `flock` on DATA_DIR/ioc-up.lock, held by its owner for its whole life.

    The kernel drops the lock when the owner dies, however it dies (kill -9 too), so a held
    lock means a live owner and a free one means whatever still runs on the data dir is an
    orphan. Pid files and command lines cannot tell the two apart: `ioc up` started without
    --data-dir names no directory, and pids are reused. The descriptor is close-on-exec, so
    the servers and children never hold it (a detached postmaster would keep it forever).
    """

    data_dir: Path
    fd: int | None = None

    @property
    def path(self) -> Path:
        return self.data_dir / LOCK_FILE

    def acquire(self) -> None:
        """Take the lock or raise `DataDirInUse` at once (never waits)."""
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as err:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip()
            os.close(fd)
            if err.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
                raise
            raise DataDirInUse(self.data_dir, int(holder) if holder.isdigit() else None) from None
        # The pid is only for the message a refused second start prints; the lock decides.
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self.fd = fd

    def release(self) -> None:
        if self.fd is not None:
            os.ftruncate(self.fd, 0)
            os.close(self.fd)
            self.fd = None


@dataclass
class Postgres:
    """A private PostgreSQL+TimescaleDB cluster in `data_dir`."""

    data_dir: Path
    port: int | None = None
    password: str | None = None
    # Test clusters trade durability against an OS crash for speed; never the default.
    fast_unsafe: bool = False
    settings: dict[str, str] = field(default_factory=dict)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def pgdata(self) -> Path:
        return self.data_dir / "pg"

    @property
    def meta_file(self) -> Path:
        return self.data_dir / "pg.json"

    def url(self, dbname: str = "ioc") -> str:
        auth = f"ioc:{self.password}@" if self.password else "ioc@"
        return f"postgresql://{auth}127.0.0.1:{self.port}/{dbname}"

    def _bin(self, name: str) -> str:
        return str(pg_bindir() / name)

    def _initdb(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        _check_traversable(self.data_dir, PG_USER)
        self.pgdata.mkdir(mode=0o700, exist_ok=True)
        _chown(self.pgdata, PG_USER)
        args = [self._bin("initdb"), "-D", str(self.pgdata), "-U", "ioc", "-E", "UTF8", "--no-locale"]
        pwfile = None
        if self.password:
            pwfile = self.data_dir / "pg-initpw"
            pwfile.write_text(self.password + "\n")
            pwfile.chmod(0o600)
            _chown(pwfile, PG_USER)
            args += ["--pwfile", str(pwfile), "--auth-host=scram-sha-256", "--auth-local=scram-sha-256"]
        else:
            args += ["--auth=trust"]
        try:
            subprocess.run(args, check=True, capture_output=True, **_run_as(PG_USER))  # type: ignore[call-overload]
        except subprocess.CalledProcessError as err:
            raise RuntimeError(f"initdb failed: {err.stderr.decode(errors='replace').strip()}") from err
        finally:
            if pwfile:
                pwfile.unlink(missing_ok=True)

    def _write_conf(self) -> None:
        conf = {
            "listen_addresses": "'127.0.0.1'",
            "port": str(self.port),
            "unix_socket_directories": f"'{self.pgdata}'",
            "shared_preload_libraries": "'timescaledb'",
            "timescaledb.telemetry_level": "off",
            "max_connections": "200",
            "shared_buffers": "256MB",
            "logging_collector": "off",
        }
        if self.fast_unsafe:
            conf |= {"fsync": "off", "full_page_writes": "off", "timescaledb.max_background_workers": "0"}
        conf |= self.settings
        text = "".join(f"{k} = {v}\n" for k, v in conf.items())
        path = self.pgdata / "ioc.conf"
        path.write_text(text)
        _chown(path, PG_USER)
        main = self.pgdata / "postgresql.conf"
        if "include_if_exists = 'ioc.conf'" not in main.read_text():
            with main.open("a") as f:
                f.write("\ninclude_if_exists = 'ioc.conf'\n")

    def _stop_leftover(self) -> None:
        pidfile = self.pgdata / "postmaster.pid"
        if not pidfile.exists():
            return
        try:
            pid = int(pidfile.read_text().split()[0])
        except (ValueError, IndexError):
            return
        if _pid_alive(pid):
            log.warning("stopping a PostgreSQL (pid %s) left running on %s", pid, self.pgdata)
            subprocess.run(
                [self._bin("pg_ctl"), "stop", "-D", str(self.pgdata), "-m", "fast", "-w", "-t", "60"],
                capture_output=True,
                check=False,
                **_run_as(PG_USER),  # type: ignore[call-overload]
            )

    def start(self, timeout_s: float = 60) -> None:
        """Init on first use, then start `postgres` as a child; waits until it accepts connections."""
        meta = json.loads(self.meta_file.read_text()) if self.meta_file.exists() else {}
        self.password = self.password or meta.get("password")
        if not (self.pgdata / "PG_VERSION").exists():
            if self.password is None and not self.fast_unsafe:
                self.password = secrets.token_urlsafe(24)
            self._initdb()
        self._stop_leftover()
        if self.port is None:
            saved = meta.get("port")
            self.port = saved if saved and not port_open(saved) else free_port()
        self.meta_file.write_text(json.dumps({"port": self.port, "password": self.password}))
        self.meta_file.chmod(0o600)
        self._write_conf()
        logf = open(self.data_dir / "postgres.log", "ab")  # noqa: SIM115 - handed to the child
        self.proc = subprocess.Popen(  # type: ignore[call-overload]
            [self._bin("postgres"), "-D", str(self.pgdata)],
            stdout=logf,
            stderr=logf,
            stdin=subprocess.DEVNULL,
            process_group=0,
            **_run_as(PG_USER),
        )
        logf.close()
        self._wait_ready(timeout_s)
        self._ensure_db()

    def _wait_ready(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc and self.proc.poll() is not None:
                tail = (self.data_dir / "postgres.log").read_text(errors="replace")[-2000:]
                raise RuntimeError(f"postgres exited with {self.proc.returncode}:\n{tail}")
            r = subprocess.run(
                [self._bin("pg_isready"), "-h", "127.0.0.1", "-p", str(self.port), "-q"], check=False
            )
            if r.returncode == 0:
                return
            time.sleep(0.1)
        raise RuntimeError(f"postgres did not accept connections within {timeout_s}s")

    def _ensure_db(self) -> None:
        import psycopg

        with psycopg.connect(self.url("postgres"), autocommit=True) as conn:
            if not conn.execute("SELECT 1 FROM pg_database WHERE datname = 'ioc'").fetchone():
                conn.execute("CREATE DATABASE ioc")

    def kill(self) -> None:
        """SIGKILL the postmaster, as a crash would (children notice and exit)."""
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
            # Backends exit once they notice the postmaster is gone; wait for the port.
            deadline = time.monotonic() + 10
            while port_open(self.port or 0) and time.monotonic() < deadline:
                time.sleep(0.05)

    def stop(self, timeout_s: float = 30) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)  # fast shutdown
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None


MOSQUITTO_CONF = """\
# Written by Commune IOC; edits are overwritten at start.
# One set of accounts and ACLs for every listener (see the Mosquitto class).
per_listener_settings false
{listeners}
persistence true
persistence_location {dir}/
autosave_interval 60
# The default 1000 silently drops QoS 1 messages for a lagging or reconnecting ingest.
max_queued_messages 10000000
max_queued_bytes 0
max_inflight_messages 1000
message_size_limit 1048576
log_dest file {dir}/mosquitto.log
log_type error
log_type warning
log_type notice
connection_messages false
"""

# deploy/install-deps.sh builds this from Debian's source with deploy/mosquitto/patches: every
# released Mosquitto forgets a durable client's $share subscription on restart, and ingest
# subscribes through $share (docs/broker.md).
FIXED_MOSQUITTO = Path("/usr/local/sbin/mosquitto")
_warned_unpatched = False


def mosquitto_binary() -> str:
    """The patched broker when installed, else the distribution's (with a warning, once)."""
    global _warned_unpatched
    if FIXED_MOSQUITTO.exists():
        return str(FIXED_MOSQUITTO)
    system = [shutil.which("mosquitto", path="/usr/sbin:/usr/bin"), shutil.which("mosquitto")]
    found = next((p for p in system if p and Path(p) != FIXED_MOSQUITTO), None)
    if found is None:
        raise RuntimeError("Mosquitto is not installed (run deploy/install-deps.sh)")
    if not _warned_unpatched:
        _warned_unpatched = True
        log.warning(
            "%s is not the patched broker: a restart loses QoS 1 messages sent to ingest before it"
            " subscribes again (run deploy/install-deps.sh; docs/broker.md)",
            found,
        )
    return found


@dataclass
class Mosquitto:
    """A private Mosquitto broker with persistence in `data_dir`.

    Without `passwd_file` anyone may connect (the embedded default, loopback only). With it
    and `device_listener`, as the shipped configs run: `port` is the IOC's listener and
    `device_port` the devices' one, where the broker replaces each client id with the account's
    name, so no device can take over another client's session. One set of accounts for both:
    `per_listener_settings true` would deny every message queued for an offline session (the
    broker forgets a disconnected client's listener), dropping ingest's queue (docs/broker.md).
    """

    data_dir: Path
    port: int | None = None
    host: str = "127.0.0.1"
    passwd_file: Path | None = None
    acl_file: Path | None = None
    device_listener: bool = False
    device_port: int | None = None
    binary: str | None = None
    proc: subprocess.Popen[bytes] | None = None

    @property
    def conf_file(self) -> Path:
        return self.data_dir / "mosquitto.conf"

    @property
    def pid_file(self) -> Path:
        return self.data_dir / "mosquitto.pid"

    def _listeners(self) -> str:
        text = f"listener {self.port} {self.host}\n"
        if self.device_port:
            # Devices: the client id is the account's name, whatever the device sends.
            text += f"listener {self.device_port} {self.host}\nuse_username_as_clientid true\n"
        if self.passwd_file is None:
            return text + "allow_anonymous true\n"
        text += f"allow_anonymous false\npassword_file {self.passwd_file}\n"
        return text + (f"acl_file {self.acl_file}\n" if self.acl_file else "")

    def url(self, user: str | None = None, password: str | None = None) -> str:
        auth = f"{user}:{password}@" if user else ""
        return f"mqtt://{auth}{self.host}:{self.port}"

    def _stop_leftover(self) -> None:
        if not self.pid_file.exists():
            return
        try:
            pid = int(self.pid_file.read_text().strip())
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except (ValueError, OSError):
            return
        if str(self.conf_file).encode() in cmdline:
            log.warning("stopping a Mosquitto (pid %s) left running on %s", pid, self.data_dir)
            os.kill(pid, signal.SIGTERM)
            deadline = time.monotonic() + 10
            while _pid_alive(pid) and time.monotonic() < deadline:
                time.sleep(0.05)

    def start(self, timeout_s: float = 15) -> None:
        binary = self.binary or mosquitto_binary()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._stop_leftover()
        meta = self.data_dir / "mosquitto.json"
        saved = json.loads(meta.read_text()) if meta.exists() else {}
        if self.port is None:
            self.port = (
                saved.get("port") if saved.get("port") and not port_open(saved["port"]) else free_port()
            )
        if self.device_listener and self.device_port is None:
            dev = saved.get("device_port")
            self.device_port = dev if dev and not port_open(dev) else free_port()
        meta.write_text(json.dumps({"port": self.port, "device_port": self.device_port}))
        conf = MOSQUITTO_CONF.format(listeners=self._listeners(), dir=self.data_dir)
        if _as_root():
            conf += f"user {MQTT_USER}\n"
            _chown(self.data_dir, MQTT_USER)
            for f in ("mosquitto.db", "mosquitto.log"):
                if (self.data_dir / f).exists():
                    _chown(self.data_dir / f, MQTT_USER)
        self.conf_file.write_text(conf)
        self.proc = subprocess.Popen(
            [binary, "-c", str(self.conf_file)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            process_group=0,
        )
        self.pid_file.write_text(str(self.proc.pid))
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                err = self.proc.stderr.read().decode(errors="replace") if self.proc.stderr else ""
                raise RuntimeError(f"mosquitto exited with {self.proc.returncode}: {err.strip()}")
            if port_open(self.port or 0) and (self.device_port is None or port_open(self.device_port)):
                return
            time.sleep(0.05)
        raise RuntimeError(f"mosquitto did not listen within {timeout_s}s")

    def save(self) -> None:
        """Write the persistent state now (SIGUSR1), as `autosave_interval` does periodically."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGUSR1)

    def reload(self) -> None:
        """Re-read password and ACL files (SIGHUP)."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGHUP)

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        if self.proc and self.proc.stderr:
            self.proc.stderr.close()

    def stop(self, timeout_s: float = 15) -> None:
        """Graceful stop: Mosquitto saves its persistent sessions and queues."""
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc and self.proc.stderr:
            self.proc.stderr.close()
        self.proc = None
        self.pid_file.unlink(missing_ok=True)
