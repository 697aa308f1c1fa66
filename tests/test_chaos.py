"""Chaos: real worker processes on PostgreSQL and SQLite, SIGKILLed mid-job and restarted.

At the end every job is done exactly once, the pair table holds exactly the expected unordered
pairs, every registered feature file opens with its recorded shape, and the values equal those
of a single-process run.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time

import h5py
import pytest

from simcons.plan import plan
from simcons.storage import ResultStore, make_engine
from simcons.storage.jobs import JobQueue
from simcons.storage.migrate import upgrade
from simcons.workflow import Context, run_extractions, run_similarities
from tests.test_worker import METRICS, RULE, _ctx, _ingest

KILLS = {"extract": 3, "similarity": 2}
LEASE = 3


def _start(url, tmp_path):
    env = {**os.environ, "SIMCONS_WORKER_PAUSE": "1.5"}
    cmd = [sys.executable, "-m", "simcons", "--db", url, "--home", str(tmp_path / "home"),
           "--datasets-root", str(tmp_path / "datasets"), "worker", "--lease", str(LEASE),
           "--poll", "0.3"]
    return subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def _running_pids(store, kind):
    _, rows = store.query("SELECT lease_owner FROM jobs WHERE status = 'running' AND kind = :k",
                          {"k": kind})
    return [int(owner.split(":")[1]) for (owner,) in rows if owner]


def _chaos(url, tmp_path, n_workers):
    store = ResultStore(url, check=False)
    upgrade(store.engine)
    _ingest(store)
    ctx, queue = _ctx(store, tmp_path), JobQueue(store)
    plan(ctx, queue, store.models(), store.datasets(), METRICS, RULE, block_pairs=1,
         max_attempts=20)
    workers = {p.pid: p for p in (_start(url, tmp_path) for _ in range(n_workers))}
    killed = {"extract": 0, "similarity": 0}
    rng = random.Random(0)
    deadline = time.time() + 400
    while time.time() < deadline and (any(p.poll() is None for p in workers.values())):
        for kind, wanted in KILLS.items():
            pids = [p for p in _running_pids(store, kind) if p in workers
                    and workers[p].poll() is None]
            if killed[kind] < wanted and pids:
                victim = rng.choice(pids)
                os.kill(victim, signal.SIGKILL)
                workers[victim].wait()
                killed[kind] += 1
                fresh = _start(url, tmp_path)
                workers[fresh.pid] = fresh
        time.sleep(0.2)
    for p in workers.values():
        if p.poll() is None:
            p.kill()
        p.wait()
    return store, ctx, queue, killed, workers


@pytest.mark.parametrize("backend,n_workers", [("postgresql", 4), ("sqlite", 2)])
def test_killed_workers_lose_nothing_and_duplicate_nothing(backend, n_workers, request, tmp_path):
    url = request.getfixturevalue("pg_url" if backend == "postgresql" else "sqlite_url")
    store, ctx, queue, killed, workers = _chaos(url, tmp_path, n_workers)
    assert killed == KILLS, f"kills landed: {killed}"
    errors = [p.stderr.read().decode()[-2000:] for p in workers.values()
              if p.returncode not in (0, -signal.SIGKILL)]
    assert not errors, errors
    counts = queue.counts()
    assert counts["extract"] == {"queued": 0, "running": 0, "done": 6, "failed": 0}
    assert counts["similarity"] == {"queued": 0, "running": 0, "done": 12, "failed": 0}

    _, rows = store.query(
        "SELECT d.key, m.slug, COUNT(*), COUNT(DISTINCT p.model_a_id || '-' || p.model_b_id) "
        "FROM pair_similarities p JOIN datasets d ON d.id = p.dataset_id "
        "JOIN metrics m ON m.id = p.metric_id GROUP BY d.key, m.slug ORDER BY d.key, m.slug")
    assert rows == [(d, m.slug, 3, 3) for d in ("ds_a", "ds_b")
                    for m in sorted(METRICS, key=lambda m: m.slug)]
    runs = store.extractions()
    assert len(runs) == 6 and all(r.status == "done" for r in runs)
    for r in runs:
        with h5py.File(ctx.home / r.path, "r") as fh:
            assert fh["features"].shape == (r.n_samples, r.dim)
    assert not list((ctx.home).rglob("*.tmp*")) or all(
        str(p) not in {str(ctx.home / r.path) for r in runs} for p in ctx.home.rglob("*.tmp*"))

    reference = ResultStore(f"sqlite:///{tmp_path / 'ref.db'}", check=False)
    upgrade(reference.engine)
    _ingest(reference)
    ref = Context(store=reference, home=tmp_path / "ref-home", datasets_root=ctx.datasets_root,
                  progress=False)
    run_extractions(ref, reference.models(), reference.datasets(), RULE)
    run_similarities(ref, reference.models(), reference.datasets(), METRICS, RULE)
    for d in ("ds_a", "ds_b"):
        for m in METRICS:
            assert store.pair_values(d, m.slug) == reference.pair_values(d, m.slug)
    make_engine(url).dispose()
