"""Consistency from SQL against scipy on the same aligned vectors, on SQLite and PostgreSQL."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from scipy import stats

from simcons.catalog import DatasetSpec, ModelSpec
from simcons.consistency.query import consistency, consistency_by
from simcons.consistency.sets import ModelSet, parse_set, sets_by_attribute
from simcons.storage import PairValue, StoreError

METRIC = "cka_kernel_linear_unbiased"
OBJECTIVES = [
    "Supervised",
    "Supervised",
    "Supervised",
    "Self-Supervised",
    "Self-Supervised",
    "Image-Text",
    "Image-Text",
    "Self-Supervised",
]


@pytest.fixture
def filled(store):
    """8 models, 4 datasets, random similarities (with ties), one pair missing on dataset d3."""
    rng = np.random.default_rng(7)
    models = [f"m{i}" for i in range(len(OBJECTIVES))]
    store.upsert_models(
        ModelSpec(
            key=k,
            loader="timm",
            model_name="resnet18",
            module_name="global_pool",
            attributes={"objective": o},
        )
        for k, o in zip(models, OBJECTIVES, strict=True)
    )
    datasets = ["d0", "d1", "d2", "d3"]
    store.upsert_datasets(DatasetSpec(key=d, name=d, category="c", source="demo") for d in datasets)
    store.ensure_metric(METRIC, "cka", {})
    values: dict[str, dict[frozenset, float]] = {}
    for d in datasets:
        pairs = list(itertools.combinations(models, 2))
        vals = np.round(rng.uniform(0.3, 0.9, len(pairs)), 2)  # rounding makes ties
        if d == "d3":
            pairs, vals = pairs[1:], vals[1:]
        # store pairs in shuffled, sometimes reversed, order: alignment must be by model pair
        order = rng.permutation(len(pairs))
        store.upsert_pairs(
            d,
            METRIC,
            [PairValue(*(pairs[i][::-1] if i % 2 else pairs[i]), float(vals[i])) for i in order],
        )
        values[d] = {frozenset(p): float(v) for p, v in zip(pairs, vals, strict=True)}
    return store, models, values


def _expected(values, theta, phi, method):
    keys = {frozenset((a, b)) for a in theta for b in phi if a != b}
    out = {}
    for d1, d2 in itertools.combinations(sorted(values), 2):
        common = sorted(k for k in keys if k in values[d1] and k in values[d2])
        x = [values[d1][k] for k in common]
        y = [values[d2][k] for k in common]
        r = stats.pearsonr(x, y)[0] if method == "pearson" else stats.spearmanr(x, y)[0]
        out[(d1, d2)] = (len(common), r)
    return out


@pytest.mark.parametrize("method", ["pearson", "spearman"])
def test_all_models_matches_scipy(filled, method):
    store, models, values = filled
    everything = ModelSet("all", tuple(models))
    result = consistency(store, everything, everything, METRIC, method=method)
    expected = _expected(values, models, models, method)
    got = {(r.dataset_a, r.dataset_b): (r.n_pairs, r.rho) for r in result.table.itertuples()}
    assert set(got) == set(expected)
    for key, (n, rho) in expected.items():
        assert got[key][0] == n
        assert got[key][1] == pytest.approx(rho, abs=1e-12)
    assert got[("d0", "d3")][0] == 27  # the pair missing on d3 is left out, not misaligned


def test_cross_and_overlapping_sets_match_scipy(filled):
    store, models, values = filled
    sup = parse_set(store, "objective=Supervised")
    ssl = parse_set(store, "objective=Self-Supervised")
    assert sup.models == ("m0", "m1", "m2")
    overlap = parse_set(store, "models:m0,m1,m3,m4")
    for theta, phi in [(sup, ssl), (sup, overlap), (ssl, ssl)]:
        result = consistency(store, theta, phi, METRIC)
        expected = _expected(values, theta.models, phi.models, "pearson")
        for r in result.table.itertuples():
            n, rho = expected[(r.dataset_a, r.dataset_b)]
            assert r.n_pairs == n
            assert r.rho == pytest.approx(rho, abs=1e-12)


def test_by_attribute_skips_sets_of_two_or_fewer_pairs(filled):
    store, _, values = filled
    sets = sets_by_attribute(store, "objective")
    results = consistency_by(store, sets, METRIC)
    labels = {(r.theta.label, r.phi.label) for r in results}
    # Image-Text has 2 models: 1 pair within -> skipped; all cross pairs kept.
    assert ("objective=Image-Text", "objective=Image-Text") not in labels
    assert ("objective=Image-Text", "objective=Self-Supervised") in labels
    assert len(labels) == 5
    summary = next(r for r in results if r.theta.label == r.phi.label == "objective=Supervised")
    # 3 pairs within Supervised, but d3 lacks (m0, m1): its dataset pairs have 2 and are skipped
    rhos = [
        rho
        for n, rho in _expected(values, ["m0", "m1", "m2"], ["m0", "m1", "m2"], "pearson").values()
        if n > 2
    ]
    s = summary.summary()
    assert s["dataset_pairs"] == len(rhos) == 3
    assert s["median"] == pytest.approx(np.median(rhos))
    assert s["std"] == pytest.approx(np.std(rhos, ddof=1))


def test_bad_sets_and_metrics_are_named(filled):
    store, _, _ = filled
    with pytest.raises(StoreError, match="objective takes"):
        parse_set(store, "objective=Supervized")
    with pytest.raises(StoreError, match="unknown model 'nope'"):
        parse_set(store, "models:m0,nope")
    with pytest.raises(StoreError, match="no model has attribute 'color'"):
        sets_by_attribute(store, "color")
    everything = parse_set(store, "all")
    with pytest.raises(StoreError, match="no pairs stored for metric"):
        consistency(store, everything, everything, "rsa_method_correlation_corr_method_spearman")
