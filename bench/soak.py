"""Soak test: the demo (`ioc up --demo`) at a raised rate for a while; prints JSON with the memory
of every process and the publish->database latency over time, and how both drift.

    .venv/bin/python bench/soak.py --minutes 5 --rate-scale 10

Latency: a probe status with a unique `ts` is published (QoS 1) for one demo device every
`--probe-s` seconds; the time until its row is visible in `status_samples` is measured by
polling. Memory: RSS of each ioc process (PSS summed over PostgreSQL's processes, which share
their buffers), sampled every `--sample-s` seconds. Drift: the least-squares slope of memory
after the warm-up (MB/hour) and the latency medians of the first and last thirds.

Readers, as in a real day: one dashboard on `/ws/live?batch=1` (reconnecting with `?since=` if
closed), an operator's `GET /api/v1/status` every 10 s, and a province key pulling
`/api/share/v1/status` and `/changes` every 60 s. `--progress` prints each memory sample to stderr.
"""

import argparse
import asyncio
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _children_map() -> dict[int, list[int]]:
    kids: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        kids.setdefault(ppid, []).append(int(entry))
    return kids


def descendants(pid: int) -> list[int]:
    kids, out, todo = _children_map(), [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo += kids.get(p, [])
    return out


def role(pid: int) -> str | None:
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return None
    words = [a.decode(errors="replace") for a in argv if a]
    if not words:
        return None
    exe = Path(words[0]).name
    if exe.startswith("postgres"):
        return "postgres"
    if exe == "mosquitto":
        return "mosquitto"
    for i, w in enumerate(words):
        if Path(w).name == "ioc" or w == "cli.main":
            sub = next((x for x in words[i + 1 :] if not x.startswith("-")), "?")
            return f"ioc {sub}"
    return exe


def memory_kb(pid: int, *, pss: bool) -> int:
    path, key = (f"/proc/{pid}/smaps_rollup", "Pss:") if pss else (f"/proc/{pid}/status", "VmRSS:")
    try:
        for line in Path(path).read_text().splitlines():
            if line.startswith(key):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def sample_memory(root_pid: int) -> dict[str, float]:
    """MB per role; roles with several processes (ioc simulate workers, postgres) are summed."""
    out: dict[str, float] = {}
    for pid in descendants(root_pid):
        r = role(pid)
        if r is None:
            continue
        out[r] = out.get(r, 0.0) + memory_kb(pid, pss=(r == "postgres")) / 1024
    return out


def slope_per_hour(points: list[tuple[float, float]]) -> float:
    if len(points) < 3:
        return 0.0
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    den = sum((x - mx) ** 2 for x in xs)
    return 0.0 if den == 0 else sum((x - mx) * (y - my) for x, y in points) / den * 3600


def pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    s = sorted(values)
    return round(s[min(len(s) - 1, int(q * len(s)))], 1)


class Up:
    """`ioc up --demo` in a temp data dir, stopped with Ctrl-C (SIGINT) like an operator would."""

    def __init__(self, data_dir: Path, rate_scale: float) -> None:
        self.data_dir = data_dir
        self.ready = threading.Event()
        self.log = (data_dir / "soak-up.log").open("w")
        env = {k: v for k, v in os.environ.items() if not k.startswith("IOC_")}
        self.http_port = _free_port()
        self.proc = subprocess.Popen(
            [
                str(ROOT / ".venv" / "bin" / "ioc"),
                "up",
                "--demo",
                "--rate-scale",
                str(rate_scale),
                "--data-dir",
                str(data_dir),
            ],
            stdout=subprocess.PIPE,
            stderr=self.log,
            env=env | {"IOC_HTTP_PORT": str(self.http_port)},
            cwd=data_dir,
            process_group=0,
        )
        threading.Thread(target=self._read, name="soak.up-stdout", daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout
        for line in self.proc.stdout:
            self.log.write(line.decode(errors="replace"))
            self.log.flush()
            if b"Commune IOC is up" in line:
                self.ready.set()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.log.close()


class Readers:
    """The dashboard, the operator and the province, each in one thread; counts what they got."""

    def __init__(self, data_dir: Path, base: str) -> None:
        self.base = base
        self.stop_event = threading.Event()
        self.counts = {"ws_messages": 0, "ws_reconnects": 0, "status_polls": 0, "share_pulls": 0, "errors": 0}
        env = os.environ | {"IOC_DATA_DIR": str(data_dir)}
        ioc = str(ROOT / ".venv" / "bin" / "ioc")
        subprocess.run(
            [ioc, "users", "add", "soak-viewer", "--role", "viewer"],
            input=b"soak-password-123\n",
            env=env,
            check=True,
            capture_output=True,
        )
        out = subprocess.run(
            [ioc, "keys", "create", "--name", "soak province", "--all-communes"],
            env=env,
            check=True,
            capture_output=True,
        )
        self.key = out.stdout.decode().strip().splitlines()[-1].strip()
        import httpx

        r = httpx.post(
            f"{base}/api/v1/auth/login", json={"username": "soak-viewer", "password": "soak-password-123"}
        )
        r.raise_for_status()
        self.token = r.json()["token"]
        self.threads = [
            threading.Thread(target=self._ws, name="soak.ws", daemon=True),
            threading.Thread(target=self._poll, name="soak.poll", daemon=True),
        ]
        for t in self.threads:
            t.start()

    def _ws(self) -> None:
        from websockets.asyncio.client import connect
        from websockets.exceptions import ConnectionClosed

        async def loop() -> None:
            since = None
            url = self.base.replace("http", "ws", 1) + "/ws/live?batch=1"
            while not self.stop_event.is_set():
                try:
                    q = f"&since={since}" if since is not None else ""
                    async with connect(
                        url + q, additional_headers={"Authorization": f"Bearer {self.token}"}
                    ) as ws:
                        while not self.stop_event.is_set():
                            try:
                                raw = await asyncio.wait_for(ws.recv(), 1.0)
                            except TimeoutError:
                                continue
                            data = json.loads(raw)
                            for m in data if isinstance(data, list) else [data]:
                                since = m.get("seq", since)
                                self.counts["ws_messages"] += 1
                except (ConnectionClosed, OSError):
                    self.counts["ws_reconnects"] += 1
                    await asyncio.sleep(1)

        asyncio.run(loop())

    def _poll(self) -> None:
        import httpx

        op = httpx.Client(base_url=self.base, headers={"Authorization": f"Bearer {self.token}"}, timeout=30)
        province = httpx.Client(
            base_url=self.base, headers={"Authorization": f"Bearer {self.key}"}, timeout=30
        )
        cursor = None
        tick = 0
        while not self.stop_event.wait(10):
            tick += 1
            try:
                op.get("/api/v1/status").raise_for_status()
                self.counts["status_polls"] += 1
                if tick % 6 == 0:
                    province.get("/api/share/v1/status").raise_for_status()
                    params = {"cursor": cursor} if cursor else {}
                    r = province.get("/api/share/v1/changes", params=params)
                    r.raise_for_status()
                    cursor = r.json()["next_cursor"]
                    self.counts["share_pulls"] += 1
            except httpx.HTTPError:
                self.counts["errors"] += 1

    def stop(self) -> dict[str, int]:
        self.stop_event.set()
        for t in self.threads:
            t.join(5)
        return self.counts


def _free_port() -> int:
    from cli.embedded import free_port

    return free_port()


def run(
    minutes: float, rate_scale: float, probe_s: float, sample_s: float, keep: bool, progress: bool
) -> dict[str, object]:
    import paho.mqtt.client as mqtt
    import psycopg

    from cli import context
    from services import topics

    data_dir = Path(tempfile.mkdtemp(prefix="ioc-soak-"))
    data_dir.chmod(0o755)
    up = Up(data_dir, rate_scale)
    try:
        if not up.ready.wait(180):
            raise RuntimeError(f"ioc up did not come up in 180 s; see {data_dir}/soak-up.log")
        os.environ["IOC_DATA_DIR"] = str(data_dir)
        s = context.settings(need_db=True, need_mqtt=True)
        assert s.database_url and s.mqtt_url
        conn = psycopg.connect(s.database_url, autocommit=True)
        devices = conn.execute("SELECT count(*) FROM devices WHERE retired_at IS NULL").fetchone()[0]
        probe = conn.execute(
            "SELECT id, commune_id, kind FROM devices WHERE retired_at IS NULL AND kind <> 'camera' ORDER BY id LIMIT 1"
        ).fetchone()
        host_port = s.mqtt_url.rsplit("@", 1)[-1].removeprefix("mqtt://")
        host, port = host_port.rsplit(":", 1)
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="ioc-soak-probe")
        if "@" in s.mqtt_url:
            user, password = s.mqtt_url.removeprefix("mqtt://").rsplit("@", 1)[0].split(":", 1)
            client.username_pw_set(user, password)
        client.connect(host, int(port))
        client.loop_start()
        topic = topics.device_topic(probe[1], probe[2], probe[0], "status")

        def counter() -> int:
            row = conn.execute(
                "SELECT coalesce(sum(value), 0) FROM metric_counters WHERE name = 'ioc_ingest_messages_total'"
            ).fetchone()
            return int(row[0])

        readers = Readers(data_dir, f"http://127.0.0.1:{up.http_port}")
        start, msgs0 = time.monotonic(), counter()
        end = start + minutes * 60
        latencies: list[tuple[float, float]] = []
        lost = 0
        memory: list[tuple[float, dict[str, float]]] = []
        next_sample = start
        while time.monotonic() < end:
            now = time.monotonic()
            if now >= next_sample:
                memory.append((now - start, sample_memory(up.proc.pid)))
                next_sample += sample_s
                if progress:
                    print(
                        json.dumps({"t_s": round(now - start), **memory[-1][1]}), file=sys.stderr, flush=True
                    )
            ts = datetime.now(UTC)
            sent = time.monotonic()
            client.publish(topic, json.dumps({"ts": ts.isoformat(), "soak_probe": True}), qos=1)
            seen = None
            while time.monotonic() - sent < 30:
                if conn.execute(
                    "SELECT 1 FROM status_samples WHERE device_id = %s AND ts = %s", (probe[0], ts)
                ).fetchone():
                    seen = time.monotonic()
                    break
                time.sleep(0.005)
            if seen is None:
                lost += 1
            else:
                latencies.append((sent - start, (seen - sent) * 1000))
            time.sleep(max(0.0, probe_s - (time.monotonic() - sent)))
        elapsed = time.monotonic() - start
        msgs = counter() - msgs0
        memory.append((elapsed, sample_memory(up.proc.pid)))
        read_counts = readers.stop()
        client.loop_stop()
        client.disconnect()
        conn.close()
    finally:
        up.stop()
        if not keep:
            subprocess.run(["rm", "-rf", str(data_dir)], check=False)

    warm = [(t, m) for t, m in memory if t >= elapsed * 0.2] or memory
    roles = sorted({r for _, m in memory for r in m})
    rss = {}
    for r in roles:
        series = [(t, m[r]) for t, m in warm if r in m]
        rss[r] = {
            "start_mb": round(next((m[r] for _, m in memory if r in m), 0.0), 1),
            "end_mb": round(memory[-1][1].get(r, 0.0), 1),
            "max_mb": round(max(m.get(r, 0.0) for _, m in memory), 1),
            "drift_mb_per_h": round(slope_per_hour(series), 1),
        }
    lat = [v for _, v in latencies]
    third = max(1, len(latencies) // 3)
    first, last = [v for _, v in latencies[:third]], [v for _, v in latencies[-third:]]
    return {
        "bench": "soak",
        "minutes": round(elapsed / 60, 2),
        "rate_scale": rate_scale,
        "devices": devices,
        "ingest_msgs_per_s": round(msgs / elapsed, 1),
        "latency_ms": {
            "n": len(lat),
            "lost": lost,
            "p50": pct(lat, 0.5),
            "p95": pct(lat, 0.95),
            "p99": pct(lat, 0.99),
            "max": round(max(lat), 1) if lat else None,
        },
        "readers": read_counts,
        "memory": rss,
        "drift": {
            "latency_p50_first_third_ms": pct(first, 0.5),
            "latency_p50_last_third_ms": pct(last, 0.5),
            "memory_mb_per_h_total": round(sum(v["drift_mb_per_h"] for v in rss.values()), 1),
        },
        "samples": len(memory),
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--minutes", type=float, default=5.0, help="how long to run (default 5)")
    p.add_argument(
        "--rate-scale", type=float, default=10.0, help="simulated devices this much faster (default 10)"
    )
    p.add_argument("--probe-s", type=float, default=1.0, help="seconds between latency probes (default 1)")
    p.add_argument("--sample-s", type=float, default=10.0, help="seconds between memory samples (default 10)")
    p.add_argument("--keep", action="store_true", help="keep the temp data dir (logs) afterwards")
    p.add_argument("--progress", action="store_true", help="print each memory sample to stderr")
    args = p.parse_args()
    print(
        json.dumps(
            run(args.minutes, args.rate_scale, args.probe_s, args.sample_s, args.keep, args.progress),
            indent=2,
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
