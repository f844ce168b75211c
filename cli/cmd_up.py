"""`ioc up`: the whole operations center in one command, on embedded servers.

One `ioc up` per data dir: it holds an `flock` on DATA_DIR/ioc-up.lock for its whole life, so
a second one is refused and leaves the running one alone, while the servers of a killed one
(a detached postmaster) are recognised as orphans and recovered.

Order matters both ways (docs/operations.md): database and broker first, then migrations, the
first admin and the demo registry, then ingest, the gateway and the simulator, and the alert
evaluator last, once ingest hears the broker; on Ctrl-C or SIGTERM the alert evaluator stops
first, then the gateway, ingest, the simulator, the broker and the database, each waited for in
turn, so the evaluator never runs without ingest to feed it.
"""

import argparse
import ctypes
import json
import logging
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from cli import context
from cli.embedded import DataDirInUse, DataDirLock, Mosquitto, Postgres, port_open
from services import auth, registry, registry_file
from services.db import connect, first_line
from services.errors import ConfigError, IocError
from services.migrate import migrate
from services.settings import IocSettings, load

log = logging.getLogger("ioc.up")

PROCESSES = ("ingest", "gateway", "alerts")
# Stopped one by one in this order; the alert evaluator must never outlive ingest, or a
# planned stop looks like "IOC lost its broker" and devices going silent.
STOP_ORDER = ("alerts", "gateway", "ingest", "simulate")
# `alerts` starts once ingest reports that it hears the broker, or after this long anyway.
ALERTS_WAIT_S = 30.0
STATE_FILE = "up.json"
BACKOFF_MAX_S = 30.0
# A child that ran this long before dying is restarted without delay.
HEALTHY_RUN_S = 60.0
STOP_TIMEOUT_S = 15.0
PR_SET_PDEATHSIG = 1


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "up",
        parents=[context.common()],
        help="run everything on embedded defaults",
        description="Start the operations center: for IOC_DATABASE_URL and IOC_MQTT_URL that are unset, "
        "an embedded PostgreSQL+TimescaleDB and Mosquitto with their data in the data dir "
        "(kept across restarts); then migrations, `ioc ingest`, `ioc gateway` and `ioc alerts` "
        "as child processes, restarted when they die. On first start it writes "
        "DATA_DIR/secret_key (unless IOC_SECRET_KEY is set) and, if no user exists, creates "
        "`admin` with a one-time password it prints. Ctrl-C stops everything.",
    )
    p.add_argument(
        "--demo",
        action="store_true",
        help="also load the demo communes (Thoại Sơn, Long Thành) and run their simulated devices",
    )
    p.add_argument(
        "--rate-scale",
        type=float,
        default=1.0,
        metavar="X",
        help="with --demo: simulated devices X times faster (default 1)",
    )
    p.add_argument("--seed", type=int, default=0, help="with --demo: the simulator's random seed")
    p.set_defaults(func=run)


def _die_with_parent() -> None:
    """Runs in the child before exec: a `kill -9` of `ioc up` takes its children along."""
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except OSError:
        pass


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def registered_commands() -> set[str]:
    from cli.main import parser

    for action in parser()._actions:
        if isinstance(action, argparse._SubParsersAction):
            return set(action.choices)
    return set()


@dataclass
class Child:
    name: str
    argv: list[str]
    proc: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0
    failures: int = 0
    restart_at: float = 0.0


@dataclass
class Up:
    data_dir: Path
    settings: IocSettings
    demo: bool = False
    rate_scale: float = 1.0
    seed: int = 0
    pg: Postgres | None = None
    mqtt: Mosquitto | None = None
    children: list[Child] = field(default_factory=list)
    stopping: bool = False
    env: dict[str, str] = field(default_factory=dict)
    db_url: str | None = None
    lock: DataDirLock | None = None
    # The demo cameras' listening socket, bound before its port went into the registry.
    onvif_sock: socket.socket | None = None
    # The demo's "vendor cloud" broker, and the bound ports of its devices the IOC polls (HTTP, TCP).
    vendor_mqtt: Mosquitto | None = None
    demo_listen: dict[int, socket.socket] = field(default_factory=dict)
    # Database time when ingest was started, and the monotonic deadline of the wait for it.
    ingest_started_db: datetime | None = None
    alerts_deadline: float | None = None
    alerts_released: bool = False

    # -- first start and leftovers --------------------------------------------------------
    def claim(self) -> None:
        """One `ioc up` per data dir: refuse while another holds the lock; stop a killed one's children.

        Only the lock tells a live `ioc up` from a dead one; once we hold it, whatever its
        state file names is an orphan (a killed run), never the live instance.
        """
        lock = DataDirLock(self.data_dir)
        try:
            lock.acquire()
        except DataDirInUse as err:
            who = f" (pid {err.pid})" if err.pid else ""
            raise IocError(
                f"`ioc up` already runs on {self.data_dir}{who}; it was left alone"
                " (stop it first with Ctrl-C or SIGTERM, or use another --data-dir)"
            ) from err
        self.lock = lock
        f = self.data_dir / STATE_FILE
        if not f.exists():
            return
        try:
            state = json.loads(f.read_text())
        except ValueError:
            return
        for cpid in state.get("children", []):
            if str(self.data_dir).encode() in _cmdline(int(cpid)):
                log.warning("stopping process %s left running by a killed `ioc up`", cpid)
                try:
                    os.kill(int(cpid), signal.SIGTERM)
                except ProcessLookupError:
                    pass

    def save_state(self) -> None:
        pids = [c.proc.pid for c in self.children if c.proc and c.proc.poll() is None]
        (self.data_dir / STATE_FILE).write_text(json.dumps({"pid": os.getpid(), "children": pids}))

    def secret_key(self) -> str:
        if self.settings.secret_key is not None:
            return self.settings.secret_key.get_secret_value()
        f = self.data_dir / "secret_key"
        if not f.exists():
            fd = os.open(f, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as out:
                out.write(secrets.token_urlsafe(32) + "\n")
            log.info("created %s (IOC_SECRET_KEY)", f)
        return f.read_text().strip()

    def start_servers(self) -> tuple[str, str]:
        s = self.settings
        db_url, mqtt_url = s.database_url, s.mqtt_url
        try:
            if db_url is None:
                self.pg = Postgres(self.data_dir)
                self.pg.start()
                db_url = self.pg.url()
                log.info("embedded PostgreSQL on 127.0.0.1:%s (data in %s)", self.pg.port, self.pg.pgdata)
            if mqtt_url is None:
                self.mqtt = Mosquitto(self.data_dir / "mqtt")
                self.mqtt.start()
                mqtt_url = self.mqtt.url()
                log.info("embedded Mosquitto on 127.0.0.1:%s", self.mqtt.port)
        except RuntimeError as err:
            raise IocError(f"cannot start the embedded servers: {first_line(err)}") from err
        return db_url, mqtt_url

    def first_admin(self, db_url: str) -> str | None:
        with connect(db_url) as conn:
            if auth.count_users(conn):
                return None
            password = secrets.token_urlsafe(12)
            auth.add_user(conn, "admin", password, "admin")
            return password

    def load_demo(self, db_url: str, key: str) -> int:
        from cli.cmd_simulate import reserve_demo
        from services.vault import Vault

        # the vendor cloud the demo's Tasmota speakers speak to: a second embedded Mosquitto
        self.vendor_mqtt = Mosquitto(self.data_dir / "vendor-mqtt")
        try:
            self.vendor_mqtt.start()
        except RuntimeError as err:
            raise IocError(f"cannot start the demo's vendor broker: {first_line(err)}") from err
        log.info("demo vendor-cloud Mosquitto on 127.0.0.1:%s", self.vendor_mqtt.port)
        ports = reserve_demo(self.data_dir, self.vendor_mqtt.port)
        path, self.onvif_sock, self.demo_listen = ports.path, ports.onvif, ports.listen
        port = self.onvif_sock.getsockname()[1]
        reg = registry_file.read(path)
        with connect(db_url) as conn:
            registry.import_registry(conn, reg, Vault(key))
        log.info("demo registry %s imported (ONVIF cameras on 127.0.0.1:%d)", path, port)
        return len(reg.devices)

    # -- children ----------------------------------------------------------------------------
    def plan_children(self) -> None:
        have = registered_commands()
        base = [sys.executable, "-m", "cli.main"]
        for name in PROCESSES:
            if name in have:
                self.children.append(Child(name, [*base, name, "--data-dir", str(self.data_dir)]))
            else:
                log.warning("`ioc %s` is not available in this build: not started", name)
        if self.demo:
            self.children.append(
                Child(
                    "simulate",
                    [
                        *base,
                        "simulate",
                        "--demo",
                        "--data-dir",
                        str(self.data_dir),
                        "--rate-scale",
                        str(self.rate_scale),
                        "--seed",
                        str(self.seed),
                    ],
                )
            )

    def spawn(self, child: Child) -> None:
        argv, fds = child.argv, []
        if child.name == "simulate" and self.onvif_sock is not None:
            fds.append(self.onvif_sock.fileno())
            argv = [*argv, "--onvif-fd", str(fds[0])]
        if child.name == "simulate":
            for sock in self.demo_listen.values():
                fds.append(sock.fileno())
                argv = [*argv, "--listen-fd", str(sock.fileno())]
        if child.name == "ingest" and self.ingest_started_db is None:
            self.ingest_started_db = self._db_now()
        child.proc = subprocess.Popen(  # noqa: S603 - our own interpreter and module
            argv,
            env=self.env,
            stdin=subprocess.DEVNULL,
            process_group=0,
            preexec_fn=_die_with_parent,
            pass_fds=fds,
        )
        child.started_at = time.monotonic()
        log.info("started ioc %s (pid %s)", child.name, child.proc.pid)
        if child.name == "simulate":
            from simulator.demo import TCP_PORTS

            # A TCP device's port is closed by the simulator during its outages: a copy kept open
            # here would go on accepting. A restarted simulator binds these ports again itself.
            for template in TCP_PORTS:
                if template in self.demo_listen:
                    self.demo_listen.pop(template).close()
        self.save_state()

    def supervise_once(self) -> None:
        now = time.monotonic()
        for c in self.children:
            if c.proc is not None and c.proc.poll() is not None:
                ran = now - c.started_at
                c.failures = 0 if ran >= HEALTHY_RUN_S else c.failures + 1
                delay = min(BACKOFF_MAX_S, 2.0**c.failures - 1)
                log.warning(
                    "ioc %s exited with code %s; restarting in %.0f s", c.name, c.proc.returncode, delay
                )
                c.proc = None
                c.restart_at = now + delay
            if c.proc is None and now >= c.restart_at and not self.stopping and self.may_start(c, now):
                self.spawn(c)
        servers = (
            ("PostgreSQL", self.pg),
            ("Mosquitto", self.mqtt),
            ("vendor-cloud Mosquitto", self.vendor_mqtt),
        )
        for name, server in servers:
            if server is not None and server.proc is not None and server.proc.poll() is not None:
                log.error("embedded %s exited with code %s; restarting it", name, server.proc.returncode)
                try:
                    server.start()
                except RuntimeError as err:
                    log.error("embedded %s did not restart: %s", name, first_line(err))

    def _db_now(self) -> datetime | None:
        if self.db_url is None:
            return None
        try:
            with connect(self.db_url) as conn:
                row = conn.execute("SELECT now()").fetchone()
        except IocError:
            return None
        return row[0] if row else None

    def _ingest_hears(self) -> bool:
        if self.db_url is None or self.ingest_started_db is None:
            return False
        try:
            with connect(self.db_url) as conn:
                row = conn.execute(
                    "SELECT 1 FROM process_health WHERE kind = 'ingest' AND seen_at >= %s",
                    (self.ingest_started_db,),
                ).fetchone()
        except IocError:
            return False
        return row is not None

    def may_start(self, child: Child, now: float) -> bool:
        """`alerts` waits (once, at start) until ingest reports since its start, at most ALERTS_WAIT_S."""
        if child.name != "alerts" or self.alerts_released:
            return True
        if not any(c.name == "ingest" for c in self.children):
            self.alerts_released = True
            return True
        if self.alerts_deadline is None:
            self.alerts_deadline = now + ALERTS_WAIT_S
        if self._ingest_hears():
            self.alerts_released = True
        elif now >= self.alerts_deadline:
            log.warning("ingest has not reported in %.0f s; starting ioc alerts anyway", ALERTS_WAIT_S)
            self.alerts_released = True
        return self.alerts_released

    def stop_children(self) -> None:
        """One at a time in STOP_ORDER, each waited for before the next is told to stop."""
        rank = {name: i for i, name in enumerate(STOP_ORDER)}
        for c in sorted(self.children, key=lambda c: rank.get(c.name, len(STOP_ORDER))):
            if c.proc is None or c.proc.poll() is not None:
                continue
            c.proc.terminate()
            try:
                c.proc.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                log.warning("ioc %s did not stop in %.0f s; killing it", c.name, STOP_TIMEOUT_S)
                c.proc.kill()
                c.proc.wait()
            log.info("stopped ioc %s (code %s)", c.name, c.proc.returncode)
        self.save_state()

    def shutdown(self) -> None:
        self.stop_children()
        if self.mqtt is not None:
            self.mqtt.stop()
        if self.vendor_mqtt is not None:
            self.vendor_mqtt.stop()
        if self.pg is not None:
            self.pg.stop()
        if self.onvif_sock is not None:
            self.onvif_sock.close()
        for sock in self.demo_listen.values():
            sock.close()
        (self.data_dir / STATE_FILE).unlink(missing_ok=True)
        log.info("stopped")
        if self.lock is not None:
            self.lock.release()

    def wait_http(self, timeout_s: float = 60) -> bool:
        """Until the gateway listens (or is missing, or we are told to stop)."""
        gw = next((c for c in self.children if c.name == "gateway"), None)
        deadline = time.monotonic() + timeout_s
        while gw is not None and not self.stopping and time.monotonic() < deadline:
            if port_open(self.settings.http_port, self.settings.http_host):
                return True
            self.supervise_once()
            time.sleep(0.2)
        return False


def run(args: argparse.Namespace) -> int:
    context.setup_logging(args.verbose)
    context.data_dir_arg(args.data_dir)
    s = load(IocSettings)
    if args.rate_scale <= 0:
        raise ConfigError("--rate-scale must be > 0")
    data_dir = s.data_dir.resolve()
    if not data_dir.exists():
        data_dir.mkdir(parents=True)
        # the unprivileged server users must be able to enter it, whatever the umask
        data_dir.chmod(0o755)
    up = Up(data_dir, s, demo=args.demo, rate_scale=args.rate_scale, seed=args.seed)

    def on_signal(signum: int, _frame: object) -> None:
        up.stopping = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    up.claim()
    key = up.secret_key()
    try:
        db_url, mqtt_url = up.start_servers()
        up.db_url = db_url
        migrate(db_url)
        password = up.first_admin(db_url)
        n_demo = up.load_demo(db_url, key) if args.demo else 0
        up.env = {
            **os.environ,
            "IOC_DATABASE_URL": db_url,
            "IOC_MQTT_URL": mqtt_url,
            "IOC_SECRET_KEY": key,
            "IOC_DATA_DIR": str(data_dir),
        }
        if args.demo:
            # The demo speakers' own programmes (the commune's FM bulletin, the VOV1 relay, the
            # vendor relays that cannot say) are allowed; a USB stick is not (unscheduled_broadcast).
            up.env.setdefault("IOC_BROADCAST_ALLOWED_SOURCES", "fm-xa,vov1,none")
        up.plan_children()
        up.supervise_once()
        listening = up.wait_http()
        if not up.stopping:
            url = f"http://{s.http_host}:{s.http_port}/"
            print(f"Commune IOC is up (data in {data_dir})", flush=True)
            print(f"  dashboard: {url}" + ("" if listening else "  (gateway not answering yet)"), flush=True)
            if password:
                print(f"  login:     admin / {password}", flush=True)
                print(
                    "             (one-time password: shown only now; change it with `ioc users passwd admin`)",
                    flush=True,
                )
            else:
                print(
                    "  login:     an existing user (add one with `ioc users add NAME --role admin`)",
                    flush=True,
                )
            if n_demo:
                print(
                    f"  demo:      {n_demo} simulated devices in Xã Thoại Sơn and Xã Long Thành", flush=True
                )
            print("Press Ctrl-C to stop.", flush=True)
        while not up.stopping:
            up.supervise_once()
            time.sleep(0.5)
    finally:
        up.shutdown()
    return 0
