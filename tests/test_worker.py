"""Planning and workers: idempotent plans, leases, retries, dependencies, graceful stop."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time

from sqlalchemy import text

from simcons.metrics import Metric
from simcons.plan import plan
from simcons.storage import ResultStore
from simcons.storage.jobs import JobQueue, NewJob
from simcons.storage.migrate import downgrade, upgrade
from simcons.worker import Worker
from simcons.workflow import Context, SubsetRule, run_extractions, run_similarities
from tests.test_workflow import make_image_folder, tiny_models

RULE = SubsetRule(split="train", max_samples=12, seed=42)
METRICS = [Metric.from_slug("cka_kernel_linear_unbiased"),
           Metric.from_slug("rsa_method_correlation_corr_method_spearman")]


def _ctx(store, tmp_path, name="home"):
    root = tmp_path / "datasets"
    if not root.exists():
        make_image_folder(root, "ds_a", seed=1)
        make_image_folder(root, "ds_b", seed=2)
    return Context(store=store, home=tmp_path / name, datasets_root=root, progress=False)


def _ingest(store):
    from simcons.catalog import DatasetSpec

    store.upsert_models(tiny_models())
    store.upsert_datasets([DatasetSpec(key=k, name=k, category="synthetic", source="imagefolder",
                                       params={"path": k}) for k in ("ds_a", "ds_b")])


def test_plan_is_idempotent_and_grows_by_the_difference(store, tmp_path):
    _ingest(store)
    ctx, queue = _ctx(store, tmp_path), JobQueue(store)
    models, datasets = store.models(), store.datasets()
    first = plan(ctx, queue, models[:2], datasets, METRICS, RULE)
    assert first.queued == {"extract": 4, "similarity": 4}
    again = plan(ctx, queue, models[:2], datasets, METRICS, RULE)
    assert again.queued == {"extract": 0, "similarity": 0}
    grown = plan(ctx, queue, models, datasets, METRICS, RULE)
    assert grown.queued == {"extract": 2, "similarity": 4}  # one block per dataset and metric
    new_blocks = [p for _, p in queue.payloads("similarity")][4:]
    assert all(len(p["pairs"]) == 2 and all("vit-tiny" in pair for pair in p["pairs"])
               for p in new_blocks)


def test_worker_runs_the_plan_like_the_grid(sqlite_store, tmp_path, sqlite_url):
    store = sqlite_store
    _ingest(store)
    ctx, queue = _ctx(store, tmp_path), JobQueue(store)
    plan(ctx, queue, store.models(), store.datasets(), METRICS, RULE, block_pairs=2)
    report = Worker(ctx, queue, lease_seconds=30, log=lambda _: None).run()
    assert (report.done, report.failed) == (6 + 2 * 2 * 2, 0)
    assert queue.counts() == {"extract": {"queued": 0, "running": 0, "done": 6, "failed": 0},
                              "similarity": {"queued": 0, "running": 0, "done": 8, "failed": 0}}
    reference = ResultStore(f"sqlite:///{tmp_path / 'ref.db'}", check=False)
    upgrade(reference.engine)
    _ingest(reference)
    ref_ctx = _ctx(reference, tmp_path, "ref-home")
    run_extractions(ref_ctx, reference.models(), reference.datasets(), RULE)
    run_similarities(ref_ctx, reference.models(), reference.datasets(), METRICS, RULE)
    for d in ("ds_a", "ds_b"):
        for m in METRICS:
            assert store.pair_values(d, m.slug) == reference.pair_values(d, m.slug)


def test_similarity_waits_for_its_extractions(store, tmp_path):
    queue = JobQueue(store)
    queue.enqueue([NewJob("extract", "e1", {}), NewJob("similarity", "s1", {}, ("e1",))])
    first = queue.claim("w1", lease_seconds=30)
    assert first.key == "e1"
    assert queue.claim("w2", lease_seconds=30) is None
    assert queue.unfinished() == 2
    assert queue.complete(first.id, "w1")
    assert queue.claim("w2", lease_seconds=30).key == "s1"


def test_expired_lease_is_reclaimed_and_the_old_owner_loses_it(store):
    queue = JobQueue(store)
    queue.enqueue([NewJob("extract", "e1", {})])
    job = queue.claim("dead-worker", lease_seconds=1)
    assert queue.claim("w2", lease_seconds=30) is None
    time.sleep(2.2)
    again = queue.claim("w2", lease_seconds=30)
    assert (again.id, again.attempts) == (job.id, 2)
    assert not queue.heartbeat(job.id, "dead-worker", lease_seconds=30)
    assert not queue.complete(job.id, "dead-worker")
    assert queue.complete(job.id, "w2")


def test_retry_limit_keeps_the_error(store):
    queue = JobQueue(store)
    queue.enqueue([NewJob("extract", "e1", {})], max_attempts=2)
    for attempt in (1, 2):
        job = queue.claim("w", lease_seconds=30)
        assert job.attempts == attempt
        status = queue.fail(job.id, "w", f"ValueError: boom {attempt}", "Traceback ...")
    assert status == "failed"
    assert queue.claim("w", lease_seconds=30) is None
    [failure] = queue.failures()
    assert (failure.status, failure.attempts, failure.error) == ("failed", 2, "ValueError: boom 2")
    assert queue.retry_failed() == 1
    assert queue.claim("w", lease_seconds=30).attempts == 1


def test_concurrent_claims_never_share_a_job(store):
    queue = JobQueue(store)
    queue.enqueue([NewJob("noop", f"j{i}", {}) for i in range(60)])
    claimed: list[int] = []
    lock = threading.Lock()

    def drain(owner: str) -> None:
        q = JobQueue(store)
        while (job := q.claim(owner, lease_seconds=60)) is not None:
            with lock:
                claimed.append(job.id)
            assert q.complete(job.id, owner)

    threads = [threading.Thread(target=drain, args=(f"w{i}",)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(claimed) == sorted(set(claimed)) and len(claimed) == 60


def _worker_cmd(url, tmp_path, *extra):
    return [sys.executable, "-m", "simcons", "--db", url, "--home", str(tmp_path / "home"),
            "--datasets-root", str(tmp_path / "datasets"), "worker", *extra]


def test_worker_refuses_another_schema_revision(sqlite_store, sqlite_url, tmp_path):
    downgrade(sqlite_store.engine, "0002")
    result = subprocess.run(_worker_cmd(sqlite_url, tmp_path), capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 2
    assert "simcons db upgrade" in result.stderr


def test_sigterm_releases_the_current_job(sqlite_store, sqlite_url, tmp_path):
    store = sqlite_store
    _ingest(store)
    ctx, queue = _ctx(store, tmp_path), JobQueue(store)
    plan(ctx, queue, store.models()[:1], store.datasets()[:1], METRICS[:1], RULE)
    env = {**os.environ, "SIMCONS_WORKER_PAUSE": "30"}
    proc = subprocess.Popen(_worker_cmd(sqlite_url, tmp_path, "--lease", "60"), env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.time() + 60
    while time.time() < deadline:
        _, rows = store.query("SELECT COUNT(*) FROM jobs WHERE status = 'running'")
        if rows[0][0]:
            break
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, out
    assert "released" in out
    _, rows = store.query("SELECT status, attempts, lease_owner FROM jobs WHERE kind = 'extract'")
    assert rows == [("queued", 0, None)]
    with store.engine.connect() as conn:
        assert conn.execute(text("SELECT COUNT(*) FROM extraction_runs WHERE status = 'done'")
                            ).scalar() == 0
