"""CPU used by a benchmark's child processes (grouped: chromium renderer, chromium, ingest, gateway,
...) and by the whole machine between two moments, from /proc (% of one core; 100 % = a core)."""

import os
import time
from pathlib import Path

TICK = os.sysconf("SC_CLK_TCK")


def _group(cmdline: str) -> str:
    if "chrom" in cmdline:
        if "--type=renderer" in cmdline:
            return "chromium_renderer"
        if "--type=gpu-process" in cmdline:
            return "chromium_gpu"
        return "chromium_other"
    for name in ("ingest", "gateway"):
        if f"cli.main {name}" in cmdline:
            return name
    if "mosquitto" in cmdline:
        return "mosquitto"
    if cmdline.startswith(("postgres", "/usr/lib/postgresql")):
        return "postgres"
    if "bench/live.py --client" in cmdline:
        return "bench_clients"
    if "node" in cmdline:
        return "playwright_driver"
    return "other"


def _processes() -> dict[int, tuple[int, float, str]]:
    """pid -> (parent pid, CPU seconds, command line) of every process readable now."""
    out = {}
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            stat = (d / "stat").read_text()
            cmdline = (d / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        # The command name may hold spaces and parentheses: fields start after the last ')'.
        fields = stat[stat.rindex(")") + 2 :].split()
        out[int(d.name)] = (int(fields[1]), (int(fields[11]) + int(fields[12])) / TICK, cmdline)
    return out


def _machine() -> tuple[float, float]:
    """(busy, total) CPU seconds of the machine since boot."""
    v = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = v[3] + v[4]
    return (sum(v) - idle) / TICK, sum(v) / TICK


class CpuMeter:
    """CPU of the descendants of `root` (this process, the bench) between mark() and percent()."""

    def __init__(self, root: int) -> None:
        self.root = root
        self._start: dict[int, float] = {}
        self._machine = (0.0, 0.0)
        self._at = 0.0

    def _tree(self) -> dict[int, tuple[int, float, str]]:
        procs = _processes()
        children: dict[int, list[int]] = {}
        for pid, (ppid, _, _) in procs.items():
            children.setdefault(ppid, []).append(pid)
        tree, todo = {}, [self.root]
        while todo:
            pid = todo.pop()
            if pid in procs:
                tree[pid] = procs[pid]
            todo.extend(children.get(pid, []))
        return tree

    def mark(self) -> None:
        self._start = {pid: cpu for pid, (_, cpu, _) in self._tree().items()}
        self._machine = _machine()
        self._at = time.monotonic()

    def percent(self) -> dict[str, float]:
        wall = time.monotonic() - self._at
        used: dict[str, float] = {}
        for pid, (_, cpu, cmdline) in self._tree().items():
            group = "bench" if pid == self.root else _group(cmdline)
            used[group] = used.get(group, 0.0) + cpu - self._start.get(pid, 0.0)
        busy, total = _machine()
        out = {g: round(100 * s / wall, 1) for g, s in sorted(used.items())}
        out["chromium_all"] = round(sum(v for g, v in out.items() if g.startswith("chromium")), 1)
        out["machine_busy_pct_of_all_cores"] = round(
            100 * (busy - self._machine[0]) / max(1e-9, total - self._machine[1]), 1
        )
        return out
