"""A real gateway (`ioc gateway`, uvicorn) in a subprocess on a free port, for live-feed and browser tests."""

import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from cli.embedded import free_port

ROOT = Path(__file__).resolve().parents[2]


@contextmanager
def gateway(db_url: str, port: int | None = None, **settings: str) -> Iterator[str]:
    """Run a gateway on `db_url`; yields its base URL. `settings` are IOC_* values (lowercase names)."""
    port = port or free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("IOC_")}
    env.update({"IOC_DATABASE_URL": db_url, "PYTHONUNBUFFERED": "1"})
    env.update({f"IOC_{k.upper()}": v for k, v in settings.items()})
    with tempfile.TemporaryDirectory(prefix="ioc-gw-") as cwd:
        # Its own working dir and data dir: no developer .env, no embedded servers are picked up.
        env["IOC_DATA_DIR"] = cwd
        log = Path(cwd) / "gateway.log"
        with log.open("wb") as out:
            proc = subprocess.Popen(
                [sys.executable, "-m", "cli.main", "gateway", "--host", "127.0.0.1", "--port", str(port)],
                cwd=cwd,
                env={**env, "PYTHONPATH": str(ROOT)},
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        base = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 30
            while True:
                if proc.poll() is not None:
                    raise RuntimeError(f"gateway exited: {log.read_text()[-2000:]}")
                try:
                    if httpx.get(base + "/healthz", timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError(f"gateway did not start: {log.read_text()[-2000:]}")
                time.sleep(0.1)
            yield base
        finally:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            gateway.last_log = log.read_text()  # type: ignore[attr-defined]
