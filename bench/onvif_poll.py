"""ONVIF poller benchmark: 1,000 simulated cameras (own process), the real poller, a real Mosquitto.

Prints JSON: the cycle time of a full round of polls (connect round and steady rounds), CPU
seconds of this process per 1,000 polls and per 1,000 PullMessages, and the share of one core
the poller used while running its real loops at the configured interval.

    .venv/bin/python bench/onvif_poll.py [--cameras 1000] [--interval 30] [--duration 60]
"""

import argparse
import asyncio
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cli.embedded import Mosquitto  # noqa: E402
from ingest.onvif.camera import CameraPoller, Target, Tuning  # noqa: E402
from ingest.onvif.publisher import MqttPublisher  # noqa: E402
from services.cameras import CameraMedia  # noqa: E402
from tests.fix_pg import private_dir  # noqa: E402

PASSWORD = "bench-pw"


def cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


async def timed(coros: list) -> tuple[float, float]:  # type: ignore[type-arg]
    c0, t0 = cpu_s(), time.perf_counter()
    await asyncio.gather(*coros)
    return time.perf_counter() - t0, cpu_s() - c0


async def save_media(media: CameraMedia) -> None:
    pass


async def run(args: argparse.Namespace, port: int, mqtt_url: str) -> dict[str, object]:
    publisher = MqttPublisher(mqtt_url, client_id="bench-onvif")
    publisher.start()
    try:
        tuning = Tuning(concurrency=args.concurrency, pull_wait_s=args.pull_wait)
        sem = asyncio.Semaphore(tuning.concurrency)
        pollers = [
            CameraPoller(
                Target(
                    f"cam-{i}",
                    "bench",
                    "127.0.0.1",
                    port,
                    f"/onvif/cam-{i}/device_service",
                    "admin",
                    args.interval,
                    PASSWORD,
                ),
                publisher.publish,
                save_media,
                sem,
                tuning,
            )
            for i in range(args.cameras)
        ]
        out: dict[str, object] = {
            "cameras": args.cameras,
            "concurrency": tuning.concurrency,
            "cores": os.cpu_count(),
        }
        # 1. First round: connect (clock, identity, services, profiles + URIs, snapshot check).
        wall, cpu = await timed([p.poll_once() for p in pollers])
        ok = sum(p.availability == "online" for p in pollers)
        out["connect_cycle_s"] = round(wall, 2)
        out["connect_cpu_s_per_1000"] = round(cpu * 1000 / args.cameras, 2)
        out["reachable"] = ok
        # 2. Subscriptions and one empty pull each (what the event loop does every pull_wait_s).
        for p in pollers:
            p.events_ok = True  # a live subscription proves the credentials: polls are one call
        wall, cpu = await timed([p.client.subscribe(tuning.subscription_s) for p in pollers if p.connected])
        out["subscribe_cycle_s"] = round(wall, 2)
        wall, cpu = await timed([p.client.pull(0) for p in pollers if p.client.subscription])
        out["cpu_s_per_1000_pulls"] = round(cpu * 1000 / args.cameras, 2)
        # 3. Steady polling rounds: every camera due at once, as fast as the cap allows.
        cycles, cpus = [], []
        for _ in range(args.rounds):
            wall, cpu = await timed([p.poll_once() for p in pollers])
            cycles.append(wall)
            cpus.append(cpu)
        out["poll_cycle_s"] = round(max(cycles), 2)
        out["poll_cycle_s_rounds"] = [round(c, 2) for c in cycles]
        out["cpu_s_per_1000_polls"] = round(sum(cpus) / len(cpus) * 1000 / args.cameras, 2)
        est = (
            out["cpu_s_per_1000_polls"] * args.cameras / 1000 / args.interval  # type: ignore[operator]
            + out["cpu_s_per_1000_pulls"] * args.cameras / 1000 / args.pull_wait
        )  # type: ignore[operator]
        out["estimated_core_pct_at_interval"] = round(est * 100, 1)
        for p in pollers:
            await p.client.unsubscribe()
            await p.client.close()
        # 4. The real loops (poll + PullPoint) for `duration` seconds after a warm-up.
        if args.duration > 0:
            for p in pollers:
                p.tuning = Tuning(**{**tuning.__dict__, "first_poll_spread_s": float(args.interval)})
            tasks = [asyncio.create_task(p.run(), name=f"onvif[{p.t.device_id}]") for p in pollers]
            await asyncio.sleep(args.interval + 5)
            n0, c0, t0 = publisher.published, cpu_s(), time.perf_counter()
            await asyncio.sleep(args.duration)
            n1, c1, t1 = publisher.published, cpu_s(), time.perf_counter()
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            out["loop_seconds"] = round(t1 - t0, 1)
            out["loop_status_messages"] = n1 - n0
            out["loop_core_pct"] = round((c1 - c0) / (t1 - t0) * 100, 1)
            out["loop_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
        out["targets"] = {"poll_cycle_s": "< 10", "loop_core_pct": "< 50"}
        return out
    finally:
        publisher.stop()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cameras", type=int, default=1000)
    p.add_argument("--concurrency", type=int, default=Tuning().concurrency)
    p.add_argument("--interval", type=int, default=30, help="poll_s of every camera")
    p.add_argument("--pull-wait", type=float, default=Tuning().pull_wait_s)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--duration", type=float, default=60, help="seconds of real loops to measure (0: skip)")
    args = p.parse_args()
    root = Path(__file__).resolve().parents[1]
    # The cameras live in their own process: the CPU measured here is the poller's alone.
    sim = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "simulator.onvif",
            "--count",
            str(args.cameras),
            "--password",
            PASSWORD,
            "--no-multicast",
        ],
        stdout=subprocess.PIPE,
        cwd=root,
    )
    broker = Mosquitto(private_dir("ioc-bench-mqtt-"))
    try:
        broker.start()
        assert sim.stdout
        port = json.loads(sim.stdout.readline())["port"]
        print(json.dumps(asyncio.run(run(args, port, broker.url())), indent=2))
    finally:
        broker.stop()
        sim.terminate()
        sim.wait(10)


if __name__ == "__main__":
    main()
