"""An emergency to 1,000 simulated speakers (SPEC §9: all `accepted` within 2 s p99 of the POST).

Starts a private PostgreSQL and Mosquitto, `ioc ingest` (its broadcast worker) and `ioc gateway`
as processes, and the speakers in this process (simulator/player.py: each fetches the audio by its
signed URL and checks the sha256). Prints JSON: seconds from the POST to each speaker's
`accepted` and `done` as heard on the broker (p50/p99/max), and how many got there. With
--load RATE, status messages are published at RATE/s for the whole run.

--with-ingest: two emergencies in the same run, first with ingest idle (the limit), then while
ingest carries its normal load — RATE statuses/s (default 2,000/s, the live-feed benchmarks'
rate: 4,000 more devices of the registry every 2 s) from bench/fastpub.py in a process of its
own — and prints both with their ratio, and how many of the load's statuses were stored.

    .venv/bin/python bench/broadcast.py [--speakers 1000] [--villages 20] [--seconds 5] [--load 0]
    .venv/bin/python bench/broadcast.py --with-ingest [--rate 2000]
"""

import argparse
import asyncio
import io
import json
import multiprocessing
import os
import subprocess
import sys
import threading
import time
import wave
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
import orjson  # noqa: E402
import paho.mqtt.client as paho  # noqa: E402
import psycopg  # noqa: E402

SECRET = "bench-secret-key-0123456789"


def registry_yaml(speakers: int, villages: int, others: int = 0) -> str:
    lines = ['commune: {id: bench, name: "Xã Bench"}', "villages:"]
    lines += [f'  - {{id: xom-{v}, name: "Xóm {v}"}}' for v in range(1, villages + 1)]
    lines.append("devices:")
    lines += [
        f"  - {{id: spk-{i}, kind: speaker, village: xom-{i % villages + 1}, heartbeat_s: 300}}"
        for i in range(1, speakers + 1)
    ]
    # the rest of the commune's devices, whose statuses are ingest's load
    lines += [
        f"  - {{id: load-{i}, kind: wifi, village: xom-{i % villages + 1}, heartbeat_s: 60}}"
        for i in range(1, others + 1)
    ]
    return "\n".join(lines) + "\n"


def wav(seconds: float) -> bytes:
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(1)
        w.setframerate(8000)
        w.writeframes(b"\x80" * int(seconds * 8000))
    return buf.getvalue()


def pct(xs: list[float], p: float) -> float | None:
    if not xs:
        return None
    s = sorted(xs)
    return round(s[min(len(s) - 1, int(p / 100 * len(s)))], 3)


def summary(xs: list[float]) -> dict[str, Any]:
    return {"n": len(xs), "p50_s": pct(xs, 50), "p99_s": pct(xs, 99), "max_s": pct(xs, 100)}


class Listener:
    """Hears every cmd_result and keeps the first time of each (delivery, status)."""

    def __init__(self, port: int) -> None:
        self.first: dict[tuple[str, str], float] = {}
        self.c = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id="bench-listener")
        self.c.on_message = self._on
        self.c.on_connect = lambda c, *_: c.subscribe("ioc/v1/+/+/+/cmd_result", qos=1)
        self.c.connect("127.0.0.1", port)
        self.c.loop_start()

    def _on(self, _c: Any, _u: Any, m: paho.MQTTMessage) -> None:
        body = orjson.loads(m.payload)
        self.first.setdefault((str(body["id"]), body["status"]), time.monotonic())

    def times(self, status: str, t0: float) -> list[float]:
        return [t - t0 for (_, s), t in self.first.items() if s == status]


def load(port: int, rate: float, speakers: int, stop: threading.Event) -> None:
    c = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id="bench-load")
    c.max_queued_messages_set(0)
    c.max_inflight_messages_set(1000)
    c.connect("127.0.0.1", port)
    c.loop_start()
    i, t0 = 0, time.monotonic()
    while not stop.is_set():
        i += 1
        d = i % speakers + 1
        c.publish(f"ioc/v1/bench/speaker/spk-{d}/status", b'{"volume": 60, "playing": false}', qos=1)
        ahead = i / rate - (time.monotonic() - t0)
        if ahead > 0:
            time.sleep(ahead)
    c.loop_stop()


def fast_load(url: str, rate: float, devices: int, stop: Any, counts: Any) -> None:
    """Statuses of `devices` wifi hotspots at `rate`/s through bench/fastpub.py (a process of its
    own: the 1,000 speakers of this one need its core)."""
    from bench.fastpub import FastPublisher

    with FastPublisher(url, "bench-broadcast-load") as pub:
        i, t0 = 0, time.monotonic()
        while not stop.is_set():
            i += 1
            payload = b'{"clients": %d, "uplink_up": true, "cpu_pct": 12.5}' % (i % 40)
            pub.send(f"ioc/v1/bench/wifi/load-{i % devices + 1}/status", payload)
            ahead = i / rate - (time.monotonic() - t0)
            if ahead > 0:
                time.sleep(ahead)
        pub.wait_acked()
        counts.value = i


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--speakers", type=int, default=1000)
    p.add_argument("--villages", type=int, default=20)
    p.add_argument("--seconds", type=float, default=5.0, help="length of the audio")
    p.add_argument("--load", type=float, default=0, help="status messages per second during the run")
    p.add_argument(
        "--with-ingest",
        action="store_true",
        help="measure twice in one run: ingest idle (the limit), then carrying --rate statuses/s",
    )
    p.add_argument("--rate", type=float, default=2000, help="with --with-ingest: statuses per second")
    p.add_argument("--others", type=int, default=4000, help="with --with-ingest: devices the load speaks for")
    args = p.parse_args()

    from cli.embedded import Mosquitto, Postgres, free_port
    from services import auth, registry, registry_file
    from services.migrate import migrate
    from simulator.devices import Simulator
    from simulator.scenario import Scenario
    from tests.fix_pg import private_dir

    base = private_dir("ioc-bench-broadcast-")
    pg, mq = Postgres(base / "pg", fast_unsafe=True), Mosquitto(base / "mqtt")
    procs: list[subprocess.Popen[bytes]] = []
    stop = threading.Event()
    try:
        pg.start()
        mq.start()
        migrate(pg.url())
        reg_text = registry_yaml(args.speakers, args.villages, args.others if args.with_ingest else 0)
        with psycopg.connect(pg.url()) as conn:
            registry.import_registry(conn, registry_file.parse_yaml(reg_text), None)
            auth.add_user(conn, "bench", "bench-password", "admin")
            token, _ = auth.login(conn, "bench", "bench-password")
        port = free_port()
        gw = f"http://127.0.0.1:{port}"
        env = {k: v for k, v in os.environ.items() if not k.startswith("IOC_")}
        env.update(
            IOC_DATABASE_URL=pg.url(),
            IOC_MQTT_URL=mq.url(),
            IOC_DATA_DIR=str(base),
            PYTHONPATH=str(ROOT),
            IOC_SECRET_KEY=SECRET,
            IOC_PUBLIC_URL=gw,
        )
        log = (base / "procs.log").open("wb")
        for cmd in (["ingest", "--no-onvif", "--id", "bench"], ["gateway", "--port", str(port)]):
            procs.append(
                subprocess.Popen(
                    [sys.executable, "-m", "cli.main", *cmd],
                    env=env,
                    cwd=base,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
            )
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(gw + "/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise SystemExit("the gateway did not start: " + (base / "procs.log").read_text()[-2000:])
            time.sleep(0.2)

        speakers_only = registry_file.parse_yaml(registry_yaml(args.speakers, args.villages))
        sim = Simulator(speakers_only, mq.url(), rate_scale=1, seed=1, scenario=Scenario.quiet())
        sim.cmd_fault_p = 0.0  # type: ignore[attr-defined]
        loop = asyncio.new_event_loop()
        threading.Thread(target=loop.run_until_complete, args=(sim.run(),), daemon=True).start()
        deadline = time.monotonic() + 120
        while True:
            with psycopg.connect(pg.url()) as conn:
                row = conn.execute("SELECT count(*) FROM device_state WHERE state = 'online'").fetchone()
            if row and row[0] >= args.speakers:
                break
            if time.monotonic() > deadline:
                raise SystemExit(f"only {row[0] if row else 0} speakers came online")
            time.sleep(0.5)
        listener = Listener(mq.port or 0)
        if args.load:
            threading.Thread(target=load, args=(mq.port, args.load, args.speakers, stop), daemon=True).start()
            time.sleep(3)
        h = {"Authorization": f"Bearer {token}"}

        def emergency() -> dict[str, Any]:
            """One emergency to every speaker, measured until all are done."""
            listener.first.clear()
            with httpx.Client(base_url=gw, headers=h, timeout=60) as http:
                m = http.post(
                    "/api/v1/media", files={"file": ("canh-bao.wav", wav(args.seconds), "audio/wav")}
                ).json()
                body = {
                    "title": "Cảnh báo bão",
                    "priority": "emergency",
                    "risk_level": 4,
                    "media_id": m["id"],
                    "targets": {"communes": ["bench"], "kinds": ["speaker"]},
                }
                t0 = time.monotonic()
                r = http.post("/api/v1/broadcasts", json=body)
                post_s = time.monotonic() - t0
                r.raise_for_status()
                bid = r.json()["id"]
                deadline = time.monotonic() + 120
                while len(listener.times("done", t0)) < args.speakers and time.monotonic() < deadline:
                    time.sleep(0.2)
                time.sleep(2)  # the last results through ingest
                b = http.get(f"/api/v1/broadcasts/{bid}").json()
            with psycopg.connect(pg.url()) as conn:
                row = conn.execute(
                    "SELECT extract(epoch FROM percentile_disc(0.5) WITHIN GROUP (ORDER BY d.sent_at)"
                    " - b.created_at), extract(epoch FROM max(d.sent_at) - b.created_at) FROM deliveries d"
                    " JOIN broadcasts b ON b.id = d.broadcast_id WHERE b.id = %s GROUP BY b.created_at",
                    (bid,),
                ).fetchone()
            sent = {"p50_s": round(float(row[0]), 3), "max_s": round(float(row[1]), 3)} if row else None
            states: dict[str, int] = {}
            for d in b["deliveries"]:
                states[d["state"]] = states.get(d["state"], 0) + 1
            return {
                "post_s": round(post_s, 3),
                "sent_after_created": sent,
                "accepted": summary(listener.times("accepted", t0)),
                "done": summary(listener.times("done", t0)),
                "deliveries": states,
                "villages_reached": sum(1 for c in b["coverage"] if c["reached"]),
            }

        head = {"speakers": args.speakers, "villages": args.villages, "audio_s": args.seconds}
        if not args.with_ingest:
            print(json.dumps(head | {"load_msgs_per_s": args.load} | emergency(), indent=2))
        else:
            limit = emergency()
            ctx = multiprocessing.get_context("spawn")
            load_stop, load_sent = ctx.Event(), ctx.Value("q", 0)
            pub = ctx.Process(
                target=fast_load, args=(mq.url(), args.rate, args.others, load_stop, load_sent), daemon=True
            )
            with psycopg.connect(pg.url()) as conn:
                stored0 = conn.execute(
                    "SELECT count(*) FROM status_samples WHERE device_id LIKE %s", ("load-%",)
                ).fetchone()
            pub.start()
            time.sleep(5)  # ingest at its steady load before the POST
            t_load = time.monotonic()
            loaded = emergency()
            load_stop.set()
            pub.join(60)
            load_s = time.monotonic() - t_load + 5
            time.sleep(3)  # ingest drains what was published last
            with psycopg.connect(pg.url()) as conn:
                stored1 = conn.execute(
                    "SELECT count(*) FROM status_samples WHERE device_id LIKE %s", ("load-%",)
                ).fetchone()

            def ratio(key: str, p: str) -> float | None:
                a, b = loaded[key][p], limit[key][p]
                return round(a / b, 2) if a is not None and b else None

            print(
                json.dumps(
                    head
                    | {
                        "load": {
                            "publisher": "bench/fastpub.py, paced, QoS 1, its own process",
                            "target_msgs_per_s": args.rate,
                            "published": load_sent.value,
                            "achieved_msgs_per_s": round(load_sent.value / load_s),
                            "statuses_stored": (stored1[0] if stored1 else 0)
                            - (stored0[0] if stored0 else 0),
                            "devices": args.others,
                        },
                        "limit_ingest_idle": limit,
                        "with_ingest_load": loaded,
                        "ratio_loaded_to_limit": {
                            "accepted_p50": ratio("accepted", "p50_s"),
                            "accepted_p99": ratio("accepted", "p99_s"),
                            "done_p50": ratio("done", "p50_s"),
                            "done_p99": ratio("done", "p99_s"),
                        },
                    },
                    indent=2,
                )
            )
        sim.stop()
    finally:
        stop.set()
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
        mq.stop()
        pg.stop()


if __name__ == "__main__":
    main()
