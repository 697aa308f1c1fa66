"""Job-queue benchmark: claim-and-complete throughput of empty jobs, and per-job overhead.

    python benchmarks/bench_queue.py --pg postgresql://postgres@127.0.0.1:5432/test

1. Throughput: N worker processes drain J empty jobs (claim, complete); jobs per second for 1, 4
   and 8 workers on PostgreSQL and 1 and 2 on SQLite, printed side by side.
2. Overhead: a real grid (the demo's models on two demo datasets, `--samples` images) run by one
   worker; the time outside the jobs' own work (claims, completions, heartbeats, schema checks)
   as a share of the jobs' work.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import tempfile
import time
import uuid
from pathlib import Path

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from simcons.storage import ResultStore, make_engine
from simcons.storage.engine import normalise_url
from simcons.storage.jobs import JobQueue, NewJob
from simcons.storage.migrate import upgrade


def _drain(url: str, owner: str, start: mp.Event, counts: mp.Queue) -> None:
    store = ResultStore(url)
    queue = JobQueue(store)
    start.wait()
    n = 0
    while (job := queue.claim(owner, lease_seconds=60)) is not None:
        queue.complete(job.id, owner)
        n += 1
    counts.put(n)
    store.close()


def throughput(url: str, workers: int, jobs: int) -> float:
    """Jobs per second for `workers` processes draining `jobs` empty jobs."""
    engine = make_engine(url)
    upgrade(engine)
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM job_dependencies"))
        conn.execute(text("DELETE FROM jobs"))
    engine.dispose()
    store = ResultStore(url)
    JobQueue(store).enqueue([NewJob("noop", f"noop/{uuid.uuid4().hex}", {}) for _ in range(jobs)])
    store.close()
    ctx = mp.get_context("spawn")
    start, counts = ctx.Event(), ctx.Queue()
    procs = [ctx.Process(target=_drain, args=(url, f"w{i}", start, counts))
             for i in range(workers)]
    for p in procs:
        p.start()
    time.sleep(3.0)  # let every process import and connect before the clock starts
    t0 = time.perf_counter()
    start.set()
    total = sum(counts.get() for _ in procs)
    elapsed = time.perf_counter() - t0
    for p in procs:
        p.join()
    assert total == jobs, f"{total} of {jobs} jobs claimed"
    return jobs / elapsed


def new_pg_database(admin: str) -> tuple[str, object]:
    """A fresh PostgreSQL database on the admin URL's server, and a function dropping it."""
    admin = normalise_url(admin)
    name = f"simcons_bench_{uuid.uuid4().hex[:10]}"
    engine = create_engine(admin, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))

    def drop() -> None:
        with engine.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        engine.dispose()

    return make_url(admin).set(database=name).render_as_string(hide_password=False), drop


def overhead(url: str, home: Path, samples: int) -> tuple[float, float, int]:
    """(seconds inside jobs, seconds outside them, jobs) for a real grid run by one worker."""
    from simcons.catalog import builtin_catalog
    from simcons.ingest import ingest_catalog
    from simcons.metrics import Metric
    from simcons.plan import plan
    from simcons.worker import Worker
    from simcons.workflow import Context, SubsetRule

    engine = make_engine(url)
    upgrade(engine)
    engine.dispose()
    store = ResultStore(url)
    ingest_catalog(store, "demo")
    catalog = builtin_catalog("demo")
    ctx = Context(store=store, home=home, progress=False)
    queue = JobQueue(store)
    datasets = store.datasets(["demo/digits", "demo/lfw_faces"])
    metrics = [Metric.from_slug("cka_kernel_linear_unbiased"),
               Metric.from_slug("rsa_method_correlation_corr_method_spearman")]
    plan(ctx, queue, store.models([m.key for m in catalog.models]), datasets, metrics,
         SubsetRule(max_samples=samples))

    class Timed(Worker):
        inside = 0.0

        def execute(self, job):  # noqa: ANN001, ANN202
            t = time.perf_counter()
            try:
                super().execute(job)
            finally:
                Timed.inside += time.perf_counter() - t

    t0 = time.perf_counter()
    report = Timed(ctx, queue, lease_seconds=120, log=lambda _: None).run()
    total = time.perf_counter() - t0
    return Timed.inside, total - Timed.inside, report.done


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pg", help="PostgreSQL server URL on which databases may be created")
    parser.add_argument("--jobs", type=int, default=2000)
    parser.add_argument("--samples", type=int, default=200)
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        if args.pg:
            url, drop = new_pg_database(args.pg)
            try:
                rows += [("postgresql", w, throughput(url, w, args.jobs)) for w in (1, 4, 8)]
            finally:
                drop()
        sqlite = f"sqlite:///{Path(tmp) / 'queue.db'}"
        rows += [("sqlite", w, throughput(sqlite, w, args.jobs)) for w in (1, 2)]
        print(f"\nclaim-and-complete throughput, {args.jobs} empty jobs")
        print(f"{'backend':<12}{'workers':>8}{'jobs/s':>10}{'vs 1 worker':>13}")
        base = {}
        for backend, w, rate in rows:
            base.setdefault(backend, rate)
            print(f"{backend:<12}{w:>8}{rate:>10.1f}{rate / base[backend]:>12.2f}x")
        inside, outside, jobs = overhead(f"sqlite:///{Path(tmp) / 'grid.db'}", Path(tmp) / "home",
                                         args.samples)
        print(f"\nreal grid on SQLite (6 demo models x 2 datasets, {args.samples} samples, "
              f"2 metrics): {jobs} jobs")
        print(f"{'inside jobs [s]':>16}{'outside [s]':>13}{'overhead':>10}")
        print(f"{inside:>16.2f}{outside:>13.2f}{outside / inside:>9.2%}")


if __name__ == "__main__":
    main()
