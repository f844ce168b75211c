"""The workers of one process, owned in one place by name: the first that fails ends the process.

A worker is a thread or an asyncio task that runs until its owner asks it to stop. Expected
trouble (a database that went away, a camera that does not answer) is the worker's own business:
it retries with backoff and goes on. Anything else — it raises, or it returns while nobody asked
it to stop — is a failure: logged once with the worker's name, every other worker is asked to
stop, and the owner exits non-zero after a stop as clean as it can make it, so that `ioc up` or
systemd starts the process again. A process is never left half alive.

`Threads` holds threads (ingest: the MQTT network loop, the writer, liveness, housekeeping, the
ONVIF poller's event loop); `Tasks` holds asyncio tasks in a TaskGroup (the gateway's live feed,
the alert engine).
"""

import asyncio
import logging
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from services.errors import IocError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Failure:
    """The first worker that failed, and how (None: it returned while nobody asked it to stop)."""

    worker: str
    error: BaseException | None

    def describe(self) -> str:
        if self.error is None:
            return f"worker {self.worker} stopped unexpectedly"
        first = (str(self.error).strip().splitlines() or [""])[0]
        return f"worker {self.worker} failed: {type(self.error).__name__}" + (f": {first}" if first else "")


class WorkerFailed(IocError):
    """A worker of this process failed; the process exits non-zero (its supervisor restarts it)."""

    code = "worker_failed"

    def __init__(self, failure: Failure) -> None:
        super().__init__(failure.describe())
        self.failure = failure


class _Record:
    """The first failure of a set of workers, logged once."""

    def __init__(self) -> None:
        self.failure: Failure | None = None
        self._lock = threading.Lock()

    def fail(self, worker: str, error: BaseException | None) -> bool:
        """Record a failure; True when it is the first."""
        with self._lock:
            first = self.failure is None
            if first:
                self.failure = Failure(worker, error)
        if first:
            log.error("%s; stopping the process", Failure(worker, error).describe(), exc_info=error)
        else:
            # Usually a consequence of the first (its owner is stopping): one line, no traceback.
            log.info("%s (after %s)", Failure(worker, error).describe(), self.failure and self.failure.worker)
        return first


class Threads:
    """Named threads of one owner. `stop` is set when the owner asks them to stop or one fails."""

    def __init__(self, stop: threading.Event | None = None) -> None:
        self.stop = stop or threading.Event()
        self._record = _Record()
        self._threads: list[threading.Thread] = []

    @property
    def failure(self) -> Failure | None:
        return self._record.failure

    def start(self, name: str, run: Callable[[], object]) -> threading.Thread:
        """Start `run` in a thread called `name`; it must return only once `stop` is set.

        Daemon threads: a worker wedged in a system call must not keep a failed process from exiting.
        """
        t = threading.Thread(target=self._guard, args=(name, run), name=name, daemon=True)
        self._threads.append(t)
        t.start()
        return t

    def _guard(self, name: str, run: Callable[[], object]) -> None:
        try:
            run()
        except BaseException as err:  # noqa: BLE001 - every way a worker can end is reported
            self._record.fail(name, err)
        else:
            if not self.stop.is_set():
                self._record.fail(name, None)
        self.stop.set()

    def wait(self, timeout_s: float | None = None) -> bool:
        """Until stop is requested or a worker failed; True when that happened."""
        return self.stop.wait(timeout_s)

    def join(self, timeout_s: float, threads: list[threading.Thread] | None = None) -> list[str]:
        """Wait for the threads (default: all), `timeout_s` in all; the names of those still running."""
        deadline = time.monotonic() + timeout_s
        chosen = [
            t for t in (self._threads if threads is None else threads) if t is not threading.current_thread()
        ]
        for t in chosen:
            t.join(max(0.0, deadline - time.monotonic()))
        late = [t.name for t in chosen if t.is_alive()]
        if late:
            log.warning("still running after %.0f s: %s", timeout_s, ", ".join(late))
        return late

    def raise_failure(self) -> None:
        """Raise WorkerFailed when a worker failed (the owner's last step: exit non-zero)."""
        if self.failure is not None:
            raise WorkerFailed(self.failure)


class Tasks:
    """Named asyncio tasks of one owner, in a TaskGroup (use as an async context manager).

    `stop` is set when the owner asks the tasks to stop or one fails; a task may end by itself
    once it is set, or be cancelled by `close()` (which leaving the context does). A failure is
    recorded and `on_failure` is called once (e.g. to stop the server the tasks belong to). The
    group itself never sees the error: the lifespan or serve loop that owns it is not cancelled
    under it, it decides how to stop.
    """

    def __init__(
        self, stop: asyncio.Event | None = None, on_failure: Callable[[Failure], None] | None = None
    ) -> None:
        self.stop = stop or asyncio.Event()
        self.on_failure = on_failure
        self._record = _Record()
        self._tg = asyncio.TaskGroup()
        self._tasks: list[asyncio.Task[None]] = []
        self._closing = False

    @property
    def failure(self) -> Failure | None:
        return self._record.failure

    async def __aenter__(self) -> "Tasks":
        await self._tg.__aenter__()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
        await self._tg.__aexit__(*exc)  # type: ignore[arg-type]

    def start(self, name: str, run: Callable[[], Awaitable[object]]) -> asyncio.Task[None]:
        """Run `run()` as a task called `name`; it must not return before `stop` is set."""
        task = self._tg.create_task(self._guard(name, run), name=name)
        self._tasks.append(task)
        return task

    async def _guard(self, name: str, run: Callable[[], Awaitable[object]]) -> None:
        try:
            await run()
        except asyncio.CancelledError:
            if self._closing:
                return
            raise
        except Exception as err:  # noqa: BLE001 - every way a worker can end is reported
            self._fail(name, err)
            return
        if not self.stop.is_set():
            self._fail(name, None)

    def _fail(self, name: str, err: BaseException | None) -> None:
        first = self._record.fail(name, err)
        self.stop.set()
        if first and self.on_failure is not None:
            self.on_failure(Failure(name, err))

    async def wait(self) -> None:
        """Until stop is requested or a task failed."""
        await self.stop.wait()

    async def close(self, grace_s: float = 0.0) -> None:
        """Set `stop`; give the tasks `grace_s` to end by themselves, then cancel the rest."""
        self.stop.set()
        pending = [t for t in self._tasks if not t.done()]
        if pending and grace_s > 0:
            await asyncio.wait(pending, timeout=grace_s)
        self._closing = True
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            try:
                await t
            except asyncio.CancelledError:
                pass

    def raise_failure(self) -> None:
        """Raise WorkerFailed when a task failed (the owner's last step: exit non-zero)."""
        if self.failure is not None:
            raise WorkerFailed(self.failure)
