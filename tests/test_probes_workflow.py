"""Probes over the store: fitted from stored features, skipped when stored, queued for workers."""

from __future__ import annotations

import pytest

from simcons.catalog import DatasetSpec
from simcons.extract.datasets import DatasetError
from simcons.plan import plan
from simcons.probes import ProbeError
from simcons.storage.jobs import JobQueue
from simcons.worker import Worker
from simcons.workflow import Context, ProbeSetup, SubsetRule, probe_one, resolve_subset, run_probes
from tests.test_workflow import make_image_folder, tiny_models

FAST = {"learning_rates": [0.1], "epochs": 3, "wd_steps": 8, "wd_coarse": 3}
SETUP = ProbeSetup(train=SubsetRule(split="train", max_samples=None),
                   test=SubsetRule(split="test", max_samples=None), seeds=(0, 1), config=FAST)


@pytest.fixture
def ctx(sqlite_store, tmp_path):
    root = tmp_path / "datasets"
    specs = [make_image_folder(root, "ds_p", n_per_class=8, seed=4, splits=("train", "test")),
             make_image_folder(root, "one_class", n_per_class=8, seed=5,
                               splits=("train", "test"), n_classes=1)]
    sqlite_store.upsert_models(tiny_models()[:2])
    sqlite_store.upsert_datasets(specs)
    return Context(store=sqlite_store, home=tmp_path / "home", datasets_root=root,
                   progress=False)


def test_probes_are_stored_once_per_seed(ctx):
    models, ds = ctx.store.models(), ctx.store.datasets(["ds_p"])
    out = run_probes(ctx, models, ds, SETUP)
    probes = [o for o in out if o.what.startswith("probe")]
    assert [o.status for o in probes] == ["done"] * 4
    again = [o for o in run_probes(ctx, models, ds, SETUP) if o.what.startswith("probe")]
    assert [o.status for o in again] == ["skipped"] * 4
    _, rows = ctx.store.query("SELECT model, n_seeds, test_top1 FROM probe_view ORDER BY model")
    assert [r[:2] for r in rows] == [("r10-s0", 2), ("r10-s1", 2)]
    _, rows = ctx.store.query("SELECT n_train, n_test, n_classes, test_top1, learning_rate "
                              "FROM probe_results")
    assert all(r[:3] == (24, 24, 3) and 0 <= r[3] <= 1 and r[4] == 0.1 for r in rows)
    fewer = ProbeSetup(train=SubsetRule(split="train", max_samples=12), test=SETUP.test,
                       seeds=(0,), config=FAST)
    redone = [o for o in run_probes(ctx, models, ds, fewer) if o.what.startswith("probe")]
    assert [o.status for o in redone] == ["done"] * 2  # another train subset: fitted again
    _, rows = ctx.store.query("SELECT n_train FROM probe_results WHERE seed = 0")
    assert [r[0] for r in rows] == [12, 12]


def test_one_class_dataset_is_refused_and_nothing_stored(ctx):
    models, ds = ctx.store.models(), ctx.store.datasets(["one_class"])
    out = run_probes(ctx, models[:1], ds, SETUP, log=lambda _: None)
    failed = [o for o in out if o.status == "failed"]
    assert len(failed) == 2 and all("class" in o.detail for o in failed)
    train, _ = resolve_subset(ctx, ds[0], SETUP.train)
    test, _ = resolve_subset(ctx, ds[0], SETUP.test)
    with pytest.raises(ProbeError):
        probe_one(ctx, "r10-s0", ds[0], train, test, 0, FAST)
    _, rows = ctx.store.query("SELECT COUNT(*) FROM probe_results")
    assert rows == [(0,)]


def test_planned_probes_wait_for_their_features_and_run_in_a_worker(ctx):
    queue = JobQueue(ctx.store)
    models, ds = ctx.store.models(), ctx.store.datasets(["ds_p"])
    report = plan(ctx, queue, models, ds, [], SETUP.train, probes=SETUP)
    assert report.queued == {"extract": 4, "probe": 4}
    assert plan(ctx, queue, models, ds, [], SETUP.train, probes=SETUP).queued == \
        {"extract": 0, "probe": 0}
    first = queue.claim("w", lease_seconds=30)
    assert first.kind == "extract"  # probes wait for both of their extractions
    queue.release(first.id, "w")
    done = Worker(ctx, queue, lease_seconds=30, log=lambda _: None).run()
    assert (done.done, done.failed) == (8, 0)
    _, rows = ctx.store.query("SELECT COUNT(*) FROM probe_results")
    assert rows == [(4,)]


def test_a_missing_test_split_names_the_splits_present(ctx):
    with pytest.raises(DatasetError, match="no split 'val'.*splits present: test, train"):
        run_probes(ctx, ctx.store.models()[:1], ctx.store.datasets(["ds_p"]),
                   ProbeSetup(test=SubsetRule(split="val"), config=FAST))


def test_a_test_class_unseen_in_train_is_refused_not_relabelled(ctx, tmp_path):
    root = tmp_path / "datasets"
    make_image_folder(root, "mism", n_per_class=8, seed=6, splits=("train",), n_classes=2)
    make_image_folder(root / "x", "mism", n_per_class=8, seed=7, splits=("test",), n_classes=3)
    (root / "x" / "mism" / "test" / "class1").rename(root / "x" / "mism" / "test" / "zeta")
    (root / "x" / "mism" / "test").rename(root / "mism" / "test")
    spec = DatasetSpec(key="mism", name="m", category="c", source="imagefolder",
                       params={"path": "mism"})
    ctx.store.upsert_datasets([spec])
    out = run_probes(ctx, ctx.store.models()[:1], [spec], SETUP, log=lambda _: None)
    failed = [o for o in out if o.status == "failed"]
    # class2 and zeta (labels 2, 3 of both splits' classes) are not in train: refused
    assert len(failed) == 2 and all("class(es) not in train_y: [2, 3]" in o.detail for o in failed)
    _, rows = ctx.store.query("SELECT COUNT(*) FROM probe_results")
    assert rows == [(0,)]
