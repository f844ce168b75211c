"""NGSI-LD notification latency: a device's state change, published to MQTT, to the subscriber.

The whole path is real: Mosquitto, `ioc ingest`, PostgreSQL, `ioc alerts` (its push worker's
NGSI-LD producer and outbox), `ioc gateway` (the subscriptions are made through it), and a
loopback HTTP receiver. Background load: `--devices` speakers each publishing a status every
`--devices / --rate` seconds (2,000 msg/s in all by default, QoS 1). Probes: every `--probe-every-s`
a device (not one of the background ones) publishes availability `offline` or `online`; the time
from that publish to each subscriber receiving a notification whose data shows the new
`deviceState` is one sample.

Subscriptions (`--subs`, 50): one key per commune and one of every commune; each subscription
watches `deviceState` of every Device its key reaches, except `--all-attrs` (5) that watch every
attribute (they are notified of every status the live feed carries, the producer's heaviest case).

Limits measured in the same run: `ingest_to_feed_ms`, the same probes seen on the live feed by a
LISTEN client (what ingest takes before the producer can know of a change), and `post_ms`, one
notification POSTed to the same receiver by a plain client (the HTTP round trip).

    .venv/bin/python bench/ngsi_notify.py [--seconds 60] [--rate 2000] [--devices 2000] [--subs 50]
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import httpx
import orjson
import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.fastpub import FastPublisher  # noqa: E402
from bench.loopback import LoopbackHttp  # noqa: E402
from bench.stack import ROOT, stack, wait_states  # noqa: E402
from services import keys, registry, registry_file  # noqa: E402
from services.topics import device_topic  # noqa: E402

KIND = "speaker"


class Receiver(LoopbackHttp):
    """Records when each notification arrives; bodies are read after the run (no parsing under load)."""

    def __init__(self) -> None:
        self.arrivals: list[tuple[float, str, bytes]] = []
        self.bulk = 0
        self.bulk_bytes = 0
        self.lock = threading.Lock()
        super().__init__(self._take)

    def _take(self, path: str, headers: Mapping[str, str], body: bytes) -> tuple[int, None]:
        at = time.time()
        with self.lock:
            if path.startswith("/bulk/"):
                self.bulk += 1
                self.bulk_bytes += len(body)
            else:
                self.arrivals.append((at, path, body))
        return 204, None


def registry_yaml(commune: str, n: int, probes: int) -> str:
    lines = [
        f'commune: {{id: {commune}, name: "Xã {commune}"}}',
        "villages:",
        "  - {id: ap-1, name: Ấp 1}",
        "devices:",
    ]
    for i in range(n):
        lines.append(f"  - {{id: {commune}-spk-{i}, kind: {KIND}, village: ap-1, heartbeat_s: 60}}")
    for i in range(probes):
        lines.append(f"  - {{id: {commune}-probe-{i}, kind: {KIND}, village: ap-1, heartbeat_s: 60}}")
    return "\n".join(lines) + "\n"


class FeedWatch:
    """The probes' changes as the live feed shows them, with the time a LISTEN client saw each."""

    def __init__(self, url: str, probe_ids: list[str]) -> None:
        self.url = url
        self.ids = probe_ids
        self.seen: list[tuple[float, str, str]] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        with psycopg.connect(self.url, autocommit=True) as conn:
            conn.execute("LISTEN ioc_feed")
            row = conn.execute("SELECT value FROM counters WHERE name = 'feed'").fetchone()
            after = int(row[0]) if row else 0
            while not self.stop.is_set():
                for _ in conn.notifies(timeout=0.5, stop_after=1):
                    pass
                # Up to the head read first: a row committed meanwhile is read next time, never skipped.
                top = conn.execute("SELECT value FROM counters WHERE name = 'feed'").fetchone()
                head = int(top[0]) if top else after
                rows = conn.execute(
                    "SELECT i->>'device_id', i->>'state' FROM feed f, json_array_elements(f.items) i"
                    " WHERE f.seq_first > %s AND f.seq_last <= %s AND i->>'type' = 'status'"
                    " AND i->>'device_id' = ANY(%s)",
                    (after, head, self.ids),
                ).fetchall()
                at = time.time()
                for device, state in rows:
                    self.seen.append((at, device, state))
                after = head

    def close(self) -> None:
        self.stop.set()
        self.thread.join(10)


def drained(url: str, timeout_s: float = 120) -> None:
    """Wait until the producer has read the whole feed and no notification is waiting to be sent."""
    deadline = time.monotonic() + timeout_s
    with psycopg.connect(url, autocommit=True) as conn:
        while time.monotonic() < deadline:
            row = conn.execute(
                "SELECT (SELECT feed_seq FROM ngsi_producer) >= (SELECT value FROM counters WHERE name = 'feed')"
                " AND NOT EXISTS (SELECT 1 FROM push_outbox WHERE status = 'pending' AND target LIKE 'ngsi:%')"
            ).fetchone()
            if row and row[0]:
                time.sleep(0.5)  # the last POSTs' answers
                return
            time.sleep(0.2)


def pct(values: list[float], p: float) -> float | None:
    if not values:
        return None
    s = sorted(values)
    return round(s[min(len(s) - 1, int(p / 100 * len(s)))], 1)


def cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def post_round_trip(port: int, body: bytes, n: int = 200) -> list[float]:
    with httpx.Client(headers={"Content-Type": "application/json"}) as c:
        out = []
        for i in range(n):
            t = time.perf_counter()
            c.post(f"http://127.0.0.1:{port}/bulk/alone", content=body, headers={"Idempotency-Key": f"a{i}"})
            out.append((time.perf_counter() - t) * 1000)
        return out


def run(args: argparse.Namespace) -> dict[str, Any]:
    communes = [f"xa-{i}" for i in range(args.communes)]
    per = args.devices // args.communes
    probes_per = max(1, args.probes // args.communes)

    def seed(url: str) -> None:
        with psycopg.connect(url) as conn:
            for c in communes:
                registry.import_registry(
                    conn, registry_file.parse_yaml(registry_yaml(c, per, probes_per)), None
                )

    recv = Receiver()
    with stack("bench-ngsi-", seed) as st:
        with psycopg.connect(st.db_url) as conn:
            secrets = [keys.create(conn, f"xa {c}", [c], None, 1_000_000)[1] for c in communes]
            secrets.append(keys.create(conn, "tinh", None, None, 1_000_000)[1])
            conn.commit()
        env = {k: v for k, v in os.environ.items() if not k.startswith("IOC_")}
        env.update(IOC_DATABASE_URL=st.db_url, IOC_DATA_DIR=str(st.base), PYTHONPATH=str(ROOT))
        alerts_log = (st.base / "alerts.log").open("wb")
        alerts = subprocess.Popen(
            [sys.executable, "-m", "cli.main", "alerts"],
            env=env,
            cwd=st.base,
            stdout=alerts_log,
            stderr=subprocess.STDOUT,
        )
        try:
            with FastPublisher(st.mqtt_url, "bench-ngsi") as pub:
                devices = [f"{c}-spk-{i}" for c in communes for i in range(per)]
                probe_ids = [f"{c}-probe-{i}" for c in communes for i in range(probes_per)]
                commune_of = {d: d.split("-spk-")[0].split("-probe-")[0] for d in devices + probe_ids}
                topics = {d: device_topic(commune_of[d], KIND, d, "status") for d in devices + probe_ids}
                pub.publish([(topics[d], b'{"volume": 10}') for d in devices + probe_ids])
                wait_states(st.db_url, "online", len(devices) + len(probe_ids))
                with httpx.Client(base_url=st.gateway_url, timeout=30) as http:
                    for i in range(args.subs):
                        secret = secrets[i % len(secrets)]
                        bulk = i < args.all_attrs
                        doc: dict[str, Any] = {
                            "type": "Subscription",
                            "entities": [{"type": "Device"}],
                            "notification": {
                                "format": "keyValues",
                                "endpoint": {
                                    "uri": f"http://127.0.0.1:{recv.port}/{'bulk' if bulk else 's'}/{i}"
                                },
                            },
                        }
                        if not bulk:
                            doc["watchedAttributes"] = ["deviceState"]
                            doc["notification"]["attributes"] = ["deviceState"]
                        r = http.post(
                            "/ngsi-ld/v1/subscriptions",
                            json=doc,
                            headers={"Authorization": f"Bearer {secret}"},
                        )
                        r.raise_for_status()
                scope = {f"/s/{i}": secrets_scope(i, communes) for i in range(args.all_attrs, args.subs)}
                with psycopg.connect(st.db_url, autocommit=True) as conn:
                    deadline = time.monotonic() + 60
                    while conn.execute("SELECT count(*) FROM ngsi_producer").fetchone() == (0,):
                        if time.monotonic() > deadline:
                            raise RuntimeError("the NGSI-LD producer did not start (see alerts.log)")
                        time.sleep(0.2)
                time.sleep(2)  # the producer has loaded the subscriptions
                watch = FeedWatch(st.db_url, probe_ids)
                probes: list[tuple[float, str, str]] = []
                state = dict.fromkeys(probe_ids, "online")
                load0 = os.getloadavg()[0]
                cpu0, t_start = cpu_s(alerts.pid), time.monotonic()
                tick_s, per_tick = 0.01, max(1, round(args.rate * 0.01))
                next_probe = t_start + 1.0
                sent = 0
                k = 0
                t = t_start
                while t - t_start < args.seconds:
                    for _ in range(per_tick):
                        d = devices[k % len(devices)]
                        k += 1
                        pub.send(topics[d], b'{"volume": %d}' % (k % 100))
                        sent += 1
                    if t >= next_probe:
                        d = probe_ids[len(probes) % len(probe_ids)]
                        new = "offline" if state[d] == "online" else "online"
                        state[d] = new
                        probes.append((time.time(), d, new))
                        pub.send(device_topic(commune_of[d], KIND, d, "availability"), new.encode())
                        sent += 1
                        next_probe += args.probe_every_s
                    t += tick_s
                    time.sleep(max(0.0, t - time.monotonic()))
                elapsed = time.monotonic() - t_start
                cpu_alerts = cpu_s(alerts.pid) - cpu0
                load1 = os.getloadavg()[0]
                drained(st.db_url)  # the last probes' notifications are out
                watch.close()
        finally:
            alerts.terminate()
            try:
                alerts.wait(15)
            except subprocess.TimeoutExpired:
                alerts.kill()
            alerts_log.close()
        with recv.lock:
            arrivals = list(recv.arrivals)
            bulk, bulk_bytes = recv.bulk, recv.bulk_bytes
    sample_body = arrivals[0][2] if arrivals else b"{}"
    post_ms = post_round_trip_detached(sample_body)
    recv.close()
    # Each probe: when each subscriber in scope first got the new state, and when the feed showed it.
    got: dict[tuple[str, str, str], list[float]] = {}
    for at, path, body in arrivals:
        for e in orjson.loads(body)["data"]:
            got.setdefault((e["id"].rsplit(":", 1)[1], e["deviceState"], path), []).append(at)
    notify_ms: list[float] = []
    feed_ms: list[float] = []
    missing = 0
    for i, (t0, device, new) in enumerate(probes):
        t_next = probes[i + 1][0] if i + 1 < len(probes) else float("inf")
        seen = [at for at, d, s in watch.seen if d == device and s == new and t0 <= at]
        if seen:
            feed_ms.append((min(seen) - t0) * 1000)
        for path, communes_in in scope.items():
            if communes_in is not None and device.split("-probe-")[0] not in communes_in:
                continue
            arrived = [a for a in got.get((device, new, path), []) if t0 <= a < t_next + 60]
            if arrived:
                notify_ms.append((min(arrived) - t0) * 1000)
            else:
                missing += 1
    return {
        "bench": "ngsi_notify",
        "path": "MQTT publish -> ioc ingest -> live feed -> ioc alerts (NGSI-LD producer, outbox) -> HTTP POST",
        "note": "shared machine (2 cores, other work running); every process on it, the publisher and receiver too",
        "devices": len(devices) + len(probe_ids),
        "communes": args.communes,
        "target_msg_per_s": args.rate,
        "published_msg_per_s": round(sent / elapsed),
        "seconds": round(elapsed, 1),
        "subscriptions": args.subs,
        "subscriptions_every_attribute": args.all_attrs,
        "probes": len(probes),
        "notify_samples": len(notify_ms),
        "notify_missing": missing,
        "notify_ms": {"p50": pct(notify_ms, 50), "p99": pct(notify_ms, 99), "max": pct(notify_ms, 100)},
        "limit_ingest_to_feed_ms": {"p50": pct(feed_ms, 50), "p99": pct(feed_ms, 99)},
        "limit_post_ms": {"p50": pct(post_ms, 50), "p99": pct(post_ms, 99)},
        "notify_minus_feed_p50_ms": round(statistics.median(notify_ms) - statistics.median(feed_ms), 1)
        if notify_ms and feed_ms
        else None,
        "every_attribute_notifications": bulk,
        # what the outbox keeps of them (delivered rows stay IOC_PUSH_KEEP_DAYS)
        "every_attribute_bytes_per_s": round(bulk_bytes / elapsed),
        "ioc_alerts_cpu_pct_of_a_core": round(100 * cpu_alerts / elapsed, 1),
        "machine_load_1min_start_end": [round(load0, 1), round(load1, 1)],
    }


def secrets_scope(i: int, communes: list[str]) -> set[str] | None:
    """The communes subscription i's key reaches (the last key reaches every commune)."""
    j = i % (len(communes) + 1)
    return None if j == len(communes) else {communes[j]}


def post_round_trip_detached(body: bytes) -> list[float]:
    r = Receiver()
    try:
        return post_round_trip(r.port, body)
    finally:
        r.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=60)
    ap.add_argument("--rate", type=int, default=2000, help="status messages a second, in all")
    ap.add_argument("--devices", type=int, default=2000)
    ap.add_argument("--communes", type=int, default=4)
    ap.add_argument("--probes", type=int, default=8, help="devices whose availability flips")
    ap.add_argument("--probe-every-s", type=float, default=0.5)
    ap.add_argument("--subs", type=int, default=50)
    ap.add_argument("--all-attrs", type=int, default=5, help="of the subscriptions, those on every attribute")
    print(json.dumps(run(ap.parse_args()), indent=2))


if __name__ == "__main__":
    main()
