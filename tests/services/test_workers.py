"""services.workers: the first failure of a worker is recorded once, by name, and stops the others."""

import asyncio
import threading

import pytest

from services.workers import Tasks, Threads, WorkerFailed


def test_a_thread_that_raises_stops_the_others_and_is_the_failure() -> None:
    w = Threads()
    w.start("calm", lambda: w.stop.wait())

    def boom() -> None:
        raise RuntimeError("disk on fire")

    w.start("boom", boom)
    assert w.wait(10)
    assert w.join(10) == []
    assert w.failure is not None and w.failure.worker == "boom"
    with pytest.raises(WorkerFailed, match="worker boom failed: RuntimeError: disk on fire"):
        w.raise_failure()


def test_a_thread_that_returns_before_stop_is_a_failure_and_after_stop_is_not() -> None:
    w = Threads()
    w.start("quitter", lambda: None)
    assert w.wait(10)
    w.join(10)
    assert w.failure is not None and w.failure.describe() == "worker quitter stopped unexpectedly"
    ok = Threads()
    ok.start("polite", lambda: ok.stop.wait())
    ok.stop.set()
    ok.join(10)
    assert ok.failure is None
    ok.raise_failure()


def test_only_the_first_failure_counts() -> None:
    w = Threads()
    gate = threading.Event()

    def first() -> None:
        raise ValueError("first")

    def second() -> None:
        gate.wait(10)
        raise ValueError("second")

    w.start("second", second)
    w.start("first", first)
    w.wait(10)
    gate.set()
    w.join(10)
    assert w.failure is not None and w.failure.worker == "first"


def test_tasks_record_the_failure_call_back_once_and_close_the_rest() -> None:
    called: list[str] = []

    async def main() -> Tasks:
        async with Tasks(on_failure=lambda f: called.append(f.worker)) as tasks:
            tasks.start("forever", lambda: asyncio.sleep(3600))

            async def boom() -> None:
                raise KeyError("x")

            tasks.start("boom", boom)
            tasks.start("also", boom)
            await asyncio.wait_for(tasks.wait(), 10)
        return tasks

    tasks = asyncio.run(main())
    assert called == ["boom"] and tasks.failure is not None and tasks.failure.worker == "boom"
    with pytest.raises(WorkerFailed):
        tasks.raise_failure()


def test_tasks_that_end_once_asked_are_no_failure() -> None:
    async def main() -> Tasks:
        async with Tasks() as tasks:
            tasks.start("engine", lambda: tasks.stop.wait())
            tasks.stop.set()
            await tasks.close(grace_s=5)
        return tasks

    assert asyncio.run(main()).failure is None
