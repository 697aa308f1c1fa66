"""Store behaviour on both backends: idempotent upserts, unordered pairs, subsets, extractions."""

from __future__ import annotations

import pytest

from simcons.catalog import DatasetSpec, ModelSpec, builtin_catalog
from simcons.storage import ExtractionInfo, PairValue, ProbeValue, StoreError, fingerprint

M = "cka_kernel_linear_unbiased"


def _spec(key: str, **attrs: str) -> ModelSpec:
    return ModelSpec(
        key=key, loader="timm", model_name="resnet18", module_name="global_pool", attributes=attrs
    )


def test_paper_catalog_reingest_updates_never_duplicates(store):
    cat = builtin_catalog("paper")
    assert store.upsert_models(cat.models) == (64, 0)
    assert store.upsert_datasets(cat.datasets) == (23, 0)
    assert store.upsert_models(cat.models) == (0, 0)
    changed = [m if m.key != "vgg16" else _spec("vgg16", objective="Changed") for m in cat.models]
    assert store.upsert_models(changed) == (0, 1)
    assert len(store.models()) == 64
    assert store.models(["vgg16"])[0].attributes == {"objective": "Changed"}
    _, rows = store.query(
        "SELECT COUNT(*) FROM model_attributes WHERE model_id = "
        "(SELECT id FROM models WHERE key = 'vgg16')"
    )
    assert rows == [(1,)]
    _, rows = store.query("SELECT COUNT(*) FROM model_catalog WHERE objective = 'Self-Supervised'")
    assert rows[0][0] == len(
        [m for m in cat.models if m.attributes["objective"] == "Self-Supervised"]
    )


def test_pairs_are_unordered_and_stored_once(store):
    store.upsert_models([_spec("a"), _spec("b"), _spec("c")])
    store.upsert_datasets([DatasetSpec(key="d", name="d", category="c", source="demo")])
    store.ensure_metric(M, "cka", {})
    store.upsert_pairs("d", M, [PairValue("b", "a", 0.1), PairValue("a", "c", 0.2)])
    store.upsert_pairs("d", M, [PairValue("a", "b", 0.3)])
    assert store.pair_values("d", M) == {("a", "b"): 0.3, ("a", "c"): 0.2}
    with pytest.raises(StoreError, match="self-pair"):
        store.upsert_pairs("d", M, [PairValue("a", "a", 1.0)])
    with pytest.raises(StoreError, match="unknown model 'zz'"):
        store.upsert_pairs("d", M, [PairValue("a", "zz", 1.0)])
    with pytest.raises(StoreError, match="unknown metric"):
        store.upsert_pairs("d", "nope", [PairValue("a", "b", 1.0)])
    assert store.pair_values("d", M) == {("a", "b"): 0.3, ("a", "c"): 0.2}  # nothing lost


def test_values_are_float64_exact(store):
    store.upsert_models([_spec("a"), _spec("b")])
    store.upsert_datasets([DatasetSpec(key="d", name="d", category="c", source="demo")])
    store.ensure_metric(M, "cka", {})
    value = 0.12345678901234567
    store.upsert_pairs("d", M, [PairValue("a", "b", value)])
    assert store.pair_values("d", M)[("a", "b")] == value


def test_subset_indices_and_extraction_lifecycle(store):
    store.upsert_models([_spec("a")])
    store.upsert_datasets([DatasetSpec(key="d", name="d", category="c", source="demo")])
    indices = [5, 1, 9, 3]
    sub = store.ensure_subset(
        "d", "train", indices, rule="stratified", max_samples=4, per_class=None, seed=42
    )
    again = store.ensure_subset(
        "d", "train", indices, rule="stratified", max_samples=4, per_class=None, seed=42
    )
    assert again.id == sub.id and sub.fingerprint == fingerprint(indices)
    assert store.subset_indices(sub.id) == indices
    assert store.find_extraction("a", "d", "train", sub.id) is None
    run = store.start_extraction("a", "d", "train", sub.id)
    store.fail_extraction(run, "boom")
    rec = store.find_extraction("a", "d", "train", sub.id)
    assert (rec.status, rec.error, rec.path) == ("failed", "boom", None)
    assert store.start_extraction("a", "d", "train", sub.id) == run  # retried, not duplicated
    store.finish_extraction(
        run, ExtractionInfo(path="features/a.h5", n_samples=4, dim=8, dtype="float32")
    )
    rec = store.find_extraction("a", "d", "train", sub.id)
    assert (rec.status, rec.path, rec.n_samples, rec.dim) == ("done", "features/a.h5", 4, 8)
    assert [e.id for e in store.extractions(status="done")] == [run]


def test_probe_upsert_replaces_same_seed(store):
    store.upsert_models([_spec("a")])
    store.upsert_datasets([DatasetSpec(key="d", name="d", category="c", source="demo")])
    base = dict(
        model="a",
        dataset="d",
        learning_rate=0.1,
        weight_decay=1e-4,
        val_top1=0.5,
        test_top5=None,
        test_balanced_acc=None,
        n_classes=2,
        n_train=10,
        n_test=5,
    )
    store.upsert_probe(ProbeValue(seed=0, test_top1=0.5, **base))
    store.upsert_probe(ProbeValue(seed=0, test_top1=0.75, **base))
    store.upsert_probe(ProbeValue(seed=1, test_top1=0.25, **base))
    assert store.probe_seeds("a", "d") == [0, 1]
    _, rows = store.query("SELECT n_seeds, test_top1 FROM probe_view")
    assert rows == [(2, pytest.approx(0.5))]
