"""Workers: claim queued jobs, run them, renew their leases, and stop gracefully on a signal.

A worker can be killed at any moment: results are written idempotently (files renamed into
place, then registered; pairs and probes inserted ON CONFLICT), so a job whose lease expires is
simply run again by another worker.
"""

from __future__ import annotations

import os
import signal
import socket
import threading
import time
import traceback
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from types import FrameType

from simcons.storage.jobs import Job, JobQueue
from simcons.workflow import (
    Context,
    extract_one,
    load_model,
    probe_one,
    similarity_block,
    stored_subset,
)

#: Seconds to sleep inside each claimed job before its work starts (chaos tests widen the
#: window in which a kill lands mid-job with it); 0 in normal use.
PAUSE_ENV = "SIMCONS_WORKER_PAUSE"


class GracefulStop(BaseException):
    """Raised in the worker's main thread by SIGTERM/SIGINT to release the current job."""


def default_owner() -> str:
    """host:pid:random, unique per worker process."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


@dataclass
class WorkerReport:
    """What one worker did."""

    owner: str
    done: int = 0
    failed: int = 0
    released: int = 0
    lost: int = 0
    errors: list[str] = field(default_factory=list)


class _Heartbeat(threading.Thread):
    """Renews one job's lease every third of the lease until stopped."""

    def __init__(self, queue: JobQueue, job: Job, owner: str, lease: float) -> None:
        super().__init__(daemon=True)
        self.queue, self.job, self.owner, self.lease = queue, job, owner, lease
        self.stopped, self.lost = threading.Event(), False

    def run(self) -> None:
        while not self.stopped.wait(self.lease / 3):
            try:
                if not self.queue.heartbeat(self.job.id, self.owner, lease_seconds=self.lease):
                    self.lost = True
                    return
            except Exception:  # noqa: BLE001 - a missed beat is retried; the lease has slack
                continue


class Worker:
    """Claims and runs jobs until none is queued or running (or forever with wait=True)."""

    def __init__(
        self, ctx: Context, queue: JobQueue, *, owner: str | None = None,
        lease_seconds: float = 120.0, wait: bool = False, poll_seconds: float = 5.0,
        kinds: Sequence[str] | None = None, max_jobs: int | None = None,
        log: Callable[[str], None] = print,
    ) -> None:
        self.ctx, self.queue = ctx, queue
        self.owner = owner or default_owner()
        self.lease, self.wait, self.poll = lease_seconds, wait, poll_seconds
        self.kinds, self.max_jobs, self.log = kinds, max_jobs, log
        self._stop = False
        self._in_job = False
        self._model_cache: tuple[str, object] | None = None

    def run(self) -> WorkerReport:
        """The claim loop; installs SIGTERM/SIGINT handlers when run in the main thread."""
        report = WorkerReport(self.owner)
        restore = self._install_signals()
        try:
            while not self._stop and (self.max_jobs is None or report.done < self.max_jobs):
                job = self.queue.claim(self.owner, lease_seconds=self.lease, kinds=self.kinds)
                if job is None:
                    # Nothing claimable now; work waiting on dependencies or on another
                    # worker's lease may still become claimable, so only an empty queue ends.
                    if not self.wait and not self.queue.unfinished(self.kinds):
                        break
                    time.sleep(self.poll)
                    continue
                self._run_job(job, report)
        finally:
            restore()
        return report

    def _run_job(self, job: Job, report: WorkerReport) -> None:
        beat = _Heartbeat(self.queue, job, self.owner, self.lease)
        beat.start()
        self._in_job = True
        try:
            self.log(f"[{self.owner}] {job.key} (attempt {job.attempts}/{job.max_attempts})")
            self.execute(job)
        except GracefulStop:
            self._stop = True
            report.released += self.queue.release(job.id, self.owner)
            self.log(f"[{self.owner}] stopping: released {job.key}")
            return
        except Exception as exc:  # noqa: BLE001 - recorded on the job, the worker goes on
            status = self.queue.fail(job.id, self.owner, f"{type(exc).__name__}: {exc}",
                                     traceback.format_exc())
            report.failed += status == "failed"
            report.errors.append(f"{job.key}: {exc}")
            self.log(f"[{self.owner}] {job.key} failed ({status}): {exc}")
            return
        finally:
            self._in_job = False
            beat.stopped.set()
        if self.queue.complete(job.id, self.owner):
            report.done += 1
        else:
            report.lost += 1  # another worker reclaimed it; its writes are idempotent too

    def execute(self, job: Job) -> None:
        """Run one job by kind."""
        runners = {"extract": self._extract, "similarity": self._similarity,
                   "probe": self._probe}
        if job.kind not in runners:
            raise ValueError(f"unknown job kind {job.kind!r}; this simcons runs "
                             f"{', '.join(runners)}")
        runners[job.kind](job.payload)

    def _extract(self, p: dict) -> None:
        store = self.ctx.store
        spec, d = store.models([p["model"]])[0], store.datasets([p["dataset"]])[0]
        subset = store.subset(p["subset_id"])
        images = stored_subset(self.ctx, d, subset)
        if self._model_cache is None or self._model_cache[0] != spec.key:
            self._model_cache = None  # free the previous model before loading the next
            self._model_cache = (spec.key, load_model(spec, self.ctx.device))
        _pause()
        extract_one(self.ctx, self._model_cache[1], spec, d, subset, images)

    def _similarity(self, p: dict) -> None:
        from simcons.metrics import Metric

        store = self.ctx.store
        d, subset = store.datasets([p["dataset"]])[0], store.subset(p["subset_id"])
        _pause()
        similarity_block(self.ctx, d, Metric.from_slug(p["metric"]), subset,
                         [tuple(pair) for pair in p["pairs"]])

    def _probe(self, p: dict) -> None:
        store = self.ctx.store
        d = store.datasets([p["dataset"]])[0]
        _pause()
        probe_one(self.ctx, p["model"], d, store.subset(p["train_subset_id"]),
                  store.subset(p["test_subset_id"]), p["seed"], p["config"])

    def _install_signals(self) -> Callable[[], None]:
        if threading.current_thread() is not threading.main_thread():
            return lambda: None
        previous = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}

        def handler(signum: int, _frame: FrameType | None) -> None:
            self._stop = True
            if self._in_job:
                raise GracefulStop(signal.Signals(signum).name)

        for s in previous:
            signal.signal(s, handler)
        return lambda: [signal.signal(s, h) for s, h in previous.items()] and None


def _pause() -> None:
    seconds = float(os.environ.get(PAUSE_ENV) or 0)
    if seconds > 0:
        time.sleep(seconds)
