"""Similarity vs performance gap from SQL against scipy on the same numbers, on both backends."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from scipy import stats

from simcons.catalog import DatasetSpec, ModelSpec
from simcons.consistency.gaps import by_category, gap_correlations
from simcons.storage import PairValue, ProbeValue, StoreError

METRIC = "cka_kernel_linear_unbiased"


def _probe(model, dataset, seed, acc):
    return ProbeValue(model=model, dataset=dataset, seed=seed, learning_rate=0.1,
                      weight_decay=1e-4, val_top1=acc, test_top1=acc, test_top5=1.0,
                      test_balanced_acc=acc, n_classes=10, n_train=100, n_test=50)


@pytest.fixture
def filled(store):
    rng = np.random.default_rng(3)
    models = [f"m{i}" for i in range(7)]
    store.upsert_models(ModelSpec(key=k, loader="timm", model_name="resnet18",
                                  module_name="global_pool") for k in models)
    cats = {"d0": "Natural", "d1": "Natural", "d2": "Structured"}
    store.upsert_datasets(DatasetSpec(key=d, name=d, category=c, source="demo")
                          for d, c in cats.items())
    store.ensure_metric(METRIC, "cka", {})
    acc: dict[tuple[str, str], float] = {}
    sims: dict[str, dict[tuple[str, str], float]] = {}
    for d in cats:
        for m in models:
            per_seed = np.round(rng.uniform(0.4, 0.9, 3), 2)
            for seed, a in enumerate(per_seed):
                store.upsert_probe(_probe(m, d, seed, float(a)))
            acc[(m, d)] = float(per_seed.mean())
        pairs = list(itertools.combinations(models, 2))
        sims[d] = {p: float(v) for p, v in zip(pairs, rng.uniform(0.2, 0.9, len(pairs)),
                                                 strict=True)}
        store.upsert_pairs(d, METRIC, [PairValue(a, b, v) for (a, b), v in sims[d].items()])
    return store, models, acc, sims, cats


def test_gap_correlations_match_scipy(filled):
    store, models, acc, sims, cats = filled
    table = gap_correlations(store, METRIC)
    assert list(table["dataset"]) == ["d0", "d1", "d2"]  # ordered by (category, name)
    for row in table.itertuples():
        pairs = sorted(sims[row.dataset])
        x = [sims[row.dataset][p] for p in pairs]
        y = [abs(acc[(a, row.dataset)] - acc[(b, row.dataset)]) for a, b in pairs]
        assert row.n_pairs == 21
        assert row.category == cats[row.dataset]
        assert row.pearson == pytest.approx(stats.pearsonr(x, y)[0], abs=1e-12)
        assert row.spearman == pytest.approx(stats.spearmanr(x, y)[0], abs=1e-12)
    summary = by_category(table).set_index("category")
    assert summary.loc["Natural", "datasets"] == 2
    assert summary.loc["Natural", "pearson_mean"] == pytest.approx(table["pearson"][:2].mean())


def test_gap_correlations_for_a_model_subset_and_bad_accuracy(filled):
    store, models, acc, sims, _ = filled
    keep = models[:4]
    table = gap_correlations(store, METRIC, models=keep)
    assert set(table["n_pairs"]) == {6}
    pairs = [p for p in sorted(sims["d2"]) if p[0] in keep and p[1] in keep]
    x = [sims["d2"][p] for p in pairs]
    y = [abs(acc[(a, "d2")] - acc[(b, "d2")]) for a, b in pairs]
    d2 = table.set_index("dataset").loc["d2"]
    assert d2["pearson"] == pytest.approx(stats.pearsonr(x, y)[0], abs=1e-12)
    with pytest.raises(StoreError, match="unknown accuracy"):
        gap_correlations(store, METRIC, accuracy="top2")
