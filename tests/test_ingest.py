"""Ingest of catalogs from files and of results in the public code's folder layout."""

from __future__ import annotations

import pytest
import torch

from simcons.catalog import CatalogError
from simcons.ingest import ingest_catalog, ingest_results
from simcons.storage import StoreError

MODELS_YAML = """
models:
  - key: r18
    loader: timm
    model_name: resnet18
    module_name: global_pool
    attributes: {objective: Supervised, architecture: ResNet}
  - key: vit
    loader: timm
    model_name: vit_tiny_patch16_224
    module_name: norm
    token_rule: cls
    attributes: {objective: Self-Supervised, architecture: ViT, custom_tag: x}
  - key: r34
    loader: timm
    model_name: resnet34
    module_name: global_pool
    attributes: {objective: Supervised}
datasets:
  - {key: wds/vtab/cifar10, name: CIFAR-10, category: Natural, source: wds,
     params: {path: wds_vtab-cifar10}}
"""


@pytest.fixture
def catalog_file(tmp_path):
    path = tmp_path / "cat.yaml"
    path.write_text(MODELS_YAML)
    return path


def test_yaml_catalog_with_open_attributes(store, catalog_file):
    reports = ingest_catalog(store, catalog_file)
    assert [(r.added, r.updated) for r in reports] == [(3, 0), (1, 0)]
    assert [(r.added, r.updated) for r in ingest_catalog(store, catalog_file)] == [(0, 0), (0, 0)]
    assert store.models_where({"custom_tag": "x"}) == ["vit"]


def test_csv_models_catalog(store, tmp_path):
    path = tmp_path / "models.csv"
    path.write_text(
        "key,loader,model_name,module_name,token_rule,objective\n"
        "a,timm,resnet18,global_pool,none,Supervised\n"
    )
    ingest_catalog(store, path)
    assert store.models(["a"])[0].attributes == {"objective": "Supervised"}


def test_bad_catalogs_are_named(store, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "models:\n  - key: x\n    loader: keras\n    model_name: a\n    module_name: b\n"
    )
    with pytest.raises(CatalogError, match="unknown loader 'keras'"):
        ingest_catalog(store, bad)
    with pytest.raises(CatalogError, match="neither a file nor a built-in"):
        ingest_catalog(store, "nonexistent")


def _write_results(root, dataset_dir, ids, matrix):
    folder = root / dataset_dir / "cka_kernel_linear_unbiased"
    folder.mkdir(parents=True)
    torch.save(torch.tensor(matrix, dtype=torch.float64), folder / "similarity_matrix.pt")
    (folder / "model_ids.txt").write_text("\n".join(ids) + "\n")


def test_results_in_public_layout(store, catalog_file, tmp_path):
    ingest_catalog(store, catalog_file)
    root = tmp_path / "results"
    m = [[1.0, 0.5, 0.25], [0.5, 1.0, 0.125], [0.25, 0.125, 1.0]]
    _write_results(root, "wds_vtab-cifar10", ["vit", "r18", "r34"], m)
    reports = ingest_results(store, root)
    assert [(r.added, r.updated) for r in reports] == [(3, 0)]
    values = store.pair_values("wds/vtab/cifar10", "cka_kernel_linear_unbiased")
    got = {frozenset(k): v for k, v in values.items()}
    assert got == {
        frozenset({"vit", "r18"}): 0.5,
        frozenset({"vit", "r34"}): 0.25,
        frozenset({"r18", "r34"}): 0.125,
    }
    assert [(r.added, r.updated) for r in ingest_results(store, root)] == [(0, 3)]


def test_results_errors_keep_stored_values(store, catalog_file, tmp_path):
    ingest_catalog(store, catalog_file)
    good = tmp_path / "good"
    _write_results(good, "wds/vtab/cifar10", ["vit", "r18"], [[1, 0.5], [0.5, 1]])
    ingest_results(store, good)
    bad = tmp_path / "bad"
    _write_results(bad, "wds/vtab/cifar10", ["vit", "unknown_model"], [[1, 0.9], [0.9, 1]])
    with pytest.raises(StoreError, match="model_ids.txt: unknown model.s. 'unknown_model'"):
        ingest_results(store, bad)
    asym = tmp_path / "asym"
    _write_results(asym, "wds/vtab/cifar10", ["vit", "r18"], [[1, 0.9], [0.1, 1]])
    with pytest.raises(StoreError, match="not symmetric"):
        ingest_results(store, asym)
    nodata = tmp_path / "nodata"
    _write_results(nodata, "no_such_dataset", ["vit", "r18"], [[1, 0.9], [0.9, 1]])
    with pytest.raises(StoreError, match="matches no stored dataset"):
        ingest_results(store, nodata)
    values = store.pair_values("wds/vtab/cifar10", "cka_kernel_linear_unbiased")
    assert list(values.values()) == [0.5]


def test_results_are_all_or_nothing_and_range_checked(store, catalog_file, tmp_path):
    ingest_catalog(store, catalog_file)
    from simcons.catalog import DatasetSpec

    store.upsert_datasets([DatasetSpec(key="other", name="o", category="c", source="demo")])
    mixed = tmp_path / "mixed"
    _write_results(mixed, "other", ["vit", "r18"], [[1, 0.5], [0.5, 1]])
    _write_results(mixed, "wds/vtab/cifar10", ["vit", "r18"], [[1, float("nan")], [0.5, 1]])
    with pytest.raises(StoreError, match="NaN"):
        ingest_results(store, mixed)
    assert store.pair_values("other", "cka_kernel_linear_unbiased") == {}  # nothing written
    wild = tmp_path / "wild"
    _write_results(wild, "other", ["vit", "r18"], [[1, 4.0], [4.0, 1]])
    with pytest.raises(StoreError, match="outside \\[-1, 1\\]"):
        ingest_results(store, wild)


def test_results_keep_computed_pairs_unless_replaced(store, catalog_file, tmp_path):
    ingest_catalog(store, catalog_file)
    from simcons.storage import PairValue

    store.ensure_metric("cka_kernel_linear_unbiased", "cka", {})
    store.upsert_pairs("wds/vtab/cifar10", "cka_kernel_linear_unbiased",
                       [PairValue("vit", "r18", 0.75)])
    root = tmp_path / "res"
    _write_results(root, "wds/vtab/cifar10", ["vit", "r18"], [[1, 0.5], [0.5, 1]])
    with pytest.raises(StoreError, match="--replace"):
        ingest_results(store, root)
    values = store.pair_values("wds/vtab/cifar10", "cka_kernel_linear_unbiased")
    assert list(values.values()) == [0.75]
    assert [(r.added, r.updated) for r in ingest_results(store, root, replace=True)] == [(0, 1)]
    values = store.pair_values("wds/vtab/cifar10", "cka_kernel_linear_unbiased")
    assert list(values.values()) == [0.5]
