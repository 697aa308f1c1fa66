"""The data flow end to end on tiny real models and images: extract, compare, resume, refuse."""

from __future__ import annotations

import itertools

import h5py
import numpy as np
import pytest
from PIL import Image

from simcons.catalog import DatasetSpec, ModelSpec
from simcons.extract.errors import FeatureFileError
from simcons.metrics import Metric, cka
from simcons.storage import StoreError
from simcons.workflow import (
    Context,
    SubsetRule,
    load_dataset_features,
    resolve_subset,
    run_extractions,
    run_similarities,
)

RULE = SubsetRule(split="train", max_samples=12, seed=42)
METRICS = [Metric.from_slug(s) for s in (
    "cka_kernel_linear_unbiased", "cka_kernel_rbf_unbiased_sigma_0.4",
    "rsa_method_correlation_corr_method_spearman",
)]


def tiny_models() -> list[ModelSpec]:
    """Three random-init timm controls, small enough for the CPU."""
    return [
        ModelSpec(key=f"r10-s{seed}", loader="timm", model_name="resnet10t",
                  module_name="global_pool", loader_params={"pretrained": False, "seed": seed},
                  attributes={"objective": "Untrained", "seed": str(seed)})
        for seed in (0, 1)
    ] + [ModelSpec(key="vit-tiny", loader="timm", model_name="vit_tiny_patch16_224",
                   module_name="norm", token_rule="cls",
                   loader_params={"pretrained": False, "seed": 0},
                   attributes={"objective": "Untrained"})]


def make_image_folder(root, name: str, n_per_class: int = 6, seed: int = 0,
                      splits: tuple[str, ...] = ("train",), n_classes: int = 3) -> DatasetSpec:
    """A small image-folder dataset with up to three classes of coloured noise."""
    rng = np.random.default_rng(seed)
    colours = [(200, 30, 30), (30, 200, 30), (30, 30, 200)][:n_classes]
    for split, (c, colour) in itertools.product(splits, enumerate(colours)):
        folder = root / name / split / f"class{c}"
        folder.mkdir(parents=True)
        for i in range(n_per_class):
            pixels = np.clip(rng.normal(colour, 60, (40, 40, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(folder / f"{i}.png")
    return DatasetSpec(key=name, name=name, category="synthetic", source="imagefolder",
                       params={"path": name})


@pytest.fixture
def grid(sqlite_store, tmp_path):
    """A store with three tiny models and two image-folder datasets."""
    root = tmp_path / "datasets"
    datasets = [make_image_folder(root, "ds_a", seed=1), make_image_folder(root, "ds_b", seed=2)]
    sqlite_store.upsert_models(tiny_models())
    sqlite_store.upsert_datasets(datasets)
    ctx = Context(store=sqlite_store, home=tmp_path / "home", datasets_root=root, progress=False)
    return ctx, sqlite_store.models(), sqlite_store.datasets()


def test_extract_compare_and_resume(grid):
    ctx, models, datasets = grid
    out = run_extractions(ctx, models, datasets, RULE, batch_size=5)
    assert [o.status for o in out] == ["done"] * 6
    again = run_extractions(ctx, models, datasets, RULE)
    assert [o.status for o in again] == ["skipped"] * 6
    runs = ctx.store.extractions(status="done")
    assert len(runs) == 6 and all(r.n_samples == 12 for r in runs)
    with h5py.File(ctx.home / runs[0].path) as fh:
        feats = fh["features"][()]
    assert feats.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(feats, axis=1), 1.0, atol=1e-5)

    out = run_similarities(ctx, models, datasets, METRICS, RULE)
    assert [o.status for o in out] == ["done"] * 6
    assert [o.status for o in run_similarities(ctx, models, datasets, METRICS, RULE)] == \
        ["skipped"] * 6
    subset, _ = resolve_subset(ctx, datasets[0], RULE)
    feats, _ = load_dataset_features(ctx, ["r10-s0", "vit-tiny"], datasets[0], subset)
    stored = ctx.store.pair_values("ds_a", "cka_kernel_linear_unbiased")
    value = stored.get(("r10-s0", "vit-tiny"), stored.get(("vit-tiny", "r10-s0")))
    assert value == pytest.approx(cka(feats["r10-s0"], feats["vit-tiny"]), abs=1e-12)
    assert len(stored) == 3


def test_a_new_model_adds_only_its_work(grid):
    ctx, models, datasets = grid
    run_extractions(ctx, models[:2], datasets, RULE)
    run_similarities(ctx, models[:2], datasets, METRICS[:1], RULE)
    out = run_extractions(ctx, models, datasets, RULE)
    assert sorted(o.status for o in out) == ["done", "done", "skipped", "skipped", "skipped",
                                             "skipped"]
    out = run_similarities(ctx, models, datasets, METRICS[:1], RULE)
    assert [o.detail for o in out] == ["2 pairs", "2 pairs"]


def test_half_written_feature_file_is_refused_and_nothing_lost(grid):
    ctx, models, datasets = grid
    run_extractions(ctx, models, datasets[:1], RULE)
    run_similarities(ctx, models[:2], datasets[:1], METRICS[:1], RULE)
    before = ctx.store.pair_values("ds_a", METRICS[0].slug)
    run = ctx.store.find_extraction("vit-tiny", "ds_a", "train",
                                    resolve_subset(ctx, datasets[0], RULE)[0].id)
    path = ctx.home / run.path
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    out = run_similarities(ctx, models, datasets[:1], METRICS[:1], RULE, log=lambda _: None)
    assert out[0].status == "failed" and "delete it" in out[0].detail
    subset, _ = resolve_subset(ctx, datasets[0], RULE)
    with pytest.raises(FeatureFileError):
        load_dataset_features(ctx, ["vit-tiny"], datasets[0], subset)
    assert ctx.store.pair_values("ds_a", METRICS[0].slug) == before


def test_models_with_different_samples_are_refused(grid, tmp_path):
    ctx, models, datasets = grid
    run_extractions(ctx, models[:2], datasets[:1], RULE)
    subset, _ = resolve_subset(ctx, datasets[0], RULE)
    run = ctx.store.find_extraction("r10-s1", "ds_a", "train", subset.id)
    with h5py.File(ctx.home / run.path, "r+") as fh:
        ids = fh["sample_ids"][()]
        fh["sample_ids"][0] = ids[1]
    with pytest.raises(StoreError, match="different sample ids"):
        load_dataset_features(ctx, ["r10-s0", "r10-s1"], datasets[0], subset)


def test_unknown_layer_is_recorded_as_failed(grid):
    ctx, _, datasets = grid
    bad = ModelSpec(key="bad-layer", loader="timm", model_name="resnet10t",
                    module_name="no_such_layer", loader_params={"pretrained": False, "seed": 0})
    ctx.store.upsert_models([bad])
    out = run_extractions(ctx, [bad], datasets[:1], RULE, log=lambda _: None)
    assert out[0].status == "failed" and "no_such_layer" in out[0].detail
    subset, _ = resolve_subset(ctx, datasets[0], RULE)
    rec = ctx.store.find_extraction("bad-layer", "ds_a", "train", subset.id)
    assert rec.status == "failed" and "no_such_layer" in rec.error


def test_recompute_replaces_only_the_selected_pairs_and_loses_nothing_on_failure(grid):
    ctx, models, datasets = grid
    run_extractions(ctx, models, datasets[:1], RULE)
    run_similarities(ctx, models, datasets[:1], METRICS[:1], RULE)
    before = ctx.store.pair_values("ds_a", METRICS[0].slug)
    out = run_similarities(ctx, models[:2], datasets[:1], METRICS[:1], RULE, recompute=True)
    assert out[0].detail == "1 pairs"
    assert ctx.store.pair_values("ds_a", METRICS[0].slug) == before  # same features, same values
    ghost = ModelSpec(key="no-features", loader="timm", model_name="resnet10t",
                      module_name="global_pool", loader_params={"pretrained": False})
    ctx.store.upsert_models([ghost])
    out = run_similarities(ctx, [*models, ghost], datasets[:1], METRICS[:1], RULE,
                           recompute=True, log=lambda _: None)
    assert out[0].status == "failed" and "no finished extraction of no-features" in out[0].detail
    assert ctx.store.pair_values("ds_a", METRICS[0].slug) == before


def test_a_changed_catalog_entry_gets_new_features_and_pairs(grid):
    ctx, models, datasets = grid
    run_extractions(ctx, models, datasets[:1], RULE)
    run_similarities(ctx, models, datasets[:1], METRICS[:1], RULE)
    old = ctx.store.pair_values("ds_a", METRICS[0].slug)
    changed = ModelSpec(key="r10-s0", loader="timm", model_name="resnet10t",
                        module_name="global_pool", loader_params={"pretrained": False, "seed": 5})
    ctx.store.upsert_models([changed])
    out = run_extractions(ctx, ctx.store.models(), datasets[:1], RULE)
    assert sorted(o.status for o in out) == ["done", "skipped", "skipped"]
    out = run_similarities(ctx, ctx.store.models(), datasets[:1], METRICS[:1], RULE)
    assert out[0].detail == "2 pairs"  # the two pairs of the changed model, computed again
    new = ctx.store.pair_values("ds_a", METRICS[0].slug)
    assert new[("r10-s1", "vit-tiny")] == old[("r10-s1", "vit-tiny")]
    assert new[("r10-s0", "r10-s1")] != old[("r10-s0", "r10-s1")]
    files = sorted(p.name for p in (ctx.home / "features" / "r10-s0" / "ds_a").iterdir())
    assert len(files) == 2  # the old file is not overwritten


def test_another_subset_is_not_answered_with_the_old_pairs(grid):
    ctx, models, datasets = grid
    run_extractions(ctx, models[:2], datasets[:1], RULE)
    run_similarities(ctx, models[:2], datasets[:1], METRICS[:1], RULE)
    fewer = SubsetRule(split="train", max_samples=6, seed=42)
    run_extractions(ctx, models[:2], datasets[:1], fewer)
    out = run_similarities(ctx, models[:2], datasets[:1], METRICS[:1], fewer)
    assert out[0].status == "done"
    _, rows = ctx.store.query("SELECT n_samples FROM pair_similarities")
    assert rows == [(6,)]


def test_a_feature_file_of_another_model_is_refused(grid):
    ctx, models, datasets = grid
    run_extractions(ctx, models[:2], datasets[:1], RULE)
    subset, _ = resolve_subset(ctx, datasets[0], RULE)
    a = ctx.store.find_extraction("r10-s0", "ds_a", "train", subset.id)
    b = ctx.store.find_extraction("r10-s1", "ds_a", "train", subset.id)
    (ctx.home / a.path).write_bytes((ctx.home / b.path).read_bytes())
    with pytest.raises(StoreError, match="its model is 'r10-s1'"):
        load_dataset_features(ctx, ["r10-s0", "r10-s1"], datasets[0], subset)
