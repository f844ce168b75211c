"""One `ioc up` per data dir: a second one is refused and the first keeps running; a killed
one's orphaned PostgreSQL is recovered by the next start."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from cli.embedded import DataDirInUse, DataDirLock, free_port
from tests.cli.test_up import UpProcess, data_dir, healthy, processes_using, wait_gone  # noqa: F401

pytestmark = pytest.mark.slow


def _children(d: Path) -> list[int]:
    return sorted(int(p) for p in json.loads((d / "up.json").read_text())["children"])


def _postmaster(d: Path) -> int:
    return int((d / "pg" / "postmaster.pid").read_text().split()[0])


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split()[2]
    except OSError:
        return False
    return state != "Z"


def test_lock_is_exclusive_and_dies_with_its_owner(tmp_path: Path) -> None:
    held = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from pathlib import Path; from cli.embedded import DataDirLock;"
            "DataDirLock(Path(sys.argv[1])).acquire(); print('held', flush=True); time.sleep(600)",
            str(tmp_path),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert held.stdout is not None and held.stdout.readline() == "held\n"
        with pytest.raises(DataDirInUse) as exc:
            DataDirLock(tmp_path).acquire()
        assert exc.value.pid == held.pid
    finally:
        held.kill()
        held.wait()
        if held.stdout is not None:
            held.stdout.close()
    mine = DataDirLock(tmp_path)
    mine.acquire()  # a kill -9 released it
    mine.release()


@pytest.mark.timeout(300)
def test_second_up_is_refused_and_leaves_the_running_one_alone(data_dir: Path) -> None:  # noqa: F811
    port = free_port()
    # Named by IOC_DATA_DIR only: its command line does not say which data dir it runs on.
    first = UpProcess(data_dir, port, via_env=True)
    try:
        first.banner()
        url = f"http://127.0.0.1:{port}/"
        # `ioc alerts` starts once ingest reports, maybe after the banner
        deadline = time.monotonic() + 60
        while len(_children(data_dir)) < 3 and time.monotonic() < deadline:
            time.sleep(0.2)
        pg_pid, children = _postmaster(data_dir), _children(data_dir)
        assert len(children) == 3
        env = {k: v for k, v in os.environ.items() if not k.startswith("IOC_")}
        env["IOC_HTTP_PORT"] = str(free_port())
        second = subprocess.run(
            [sys.executable, "-m", "cli.main", "up", "--data-dir", str(data_dir)],
            capture_output=True,
            text=True,
            env=env,
            cwd=data_dir,
            timeout=60,
        )
        assert second.returncode == 1, second.stderr
        assert second.stdout == ""
        line = second.stderr.strip()
        assert "\n" not in line, second.stderr
        assert line.startswith(f"ioc: `ioc up` already runs on {data_dir} (pid {first.proc.pid})"), line
        # the first one did not notice: same server, same children, still answering
        assert first.proc.poll() is None
        assert _postmaster(data_dir) == pg_pid and _alive(pg_pid)
        assert _children(data_dir) == children and all(_alive(p) for p in children)
        assert healthy(url)
        assert "restarting" not in first.tail() and "left running" not in first.tail()
        # kill -9: the children follow their parent, the postmaster is orphaned
        first.stop(signal.SIGKILL)
        deadline = time.monotonic() + 20
        while any(_alive(p) for p in children) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not any(_alive(p) for p in children)
        assert _alive(pg_pid)
    finally:
        if first.proc.poll() is None:
            first.stop()
    third = UpProcess(data_dir, port)
    try:
        third.banner()
        assert httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=10).status_code == 200
        assert not _alive(pg_pid), "the orphaned postmaster was stopped and a new one started"
        assert _postmaster(data_dir) != pg_pid
        assert "stopping a PostgreSQL" in third.tail()
    finally:
        rc = third.stop()
    assert rc == 0, third.tail()
    assert wait_gone(data_dir) == []
