"""Bad inputs raise MetricError naming the model (or models) and what to do."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from simcons.metrics import Metric, MetricError, all_pairs

RNG = np.random.default_rng(0)
GOOD = RNG.standard_normal((12, 5)).astype(np.float32)
LINEAR, RBF, RSA = Metric("cka"), Metric("cka", kernel="rbf", sigma=0.4), Metric("rsa")


def run(bad: np.ndarray, metric: Metric = LINEAR, good: np.ndarray = GOOD) -> None:
    """all_pairs of one good model and one bad model named 'vit_b16'."""
    all_pairs({"resnet50": good, "vit_b16": bad}, metric, progress=False)


def test_nan_names_model_and_count():
    bad = GOOD.copy()
    bad[2, 1] = bad[5, 3] = np.nan
    with pytest.raises(MetricError, match=r"'vit_b16' contain 2 NaN/inf.*re-extract"):
        run(bad)


def test_inf_is_rejected():
    bad = GOOD.copy()
    bad[0, 0] = np.inf
    with pytest.raises(MetricError, match=r"'vit_b16' contain 1 NaN/inf"):
        run(bad, RBF)


def test_too_few_samples_for_unbiased_cka():
    with pytest.raises(MetricError, match=r"unbiased CKA needs at least 4 samples; got n=3"):
        run(GOOD[:3], good=GOOD[:3])
    with pytest.raises(MetricError, match="resnet50"):
        run(GOOD[:3], good=GOOD[:3])


def test_mismatched_sample_counts_name_both_models():
    with pytest.raises(MetricError, match=r"'resnet50' and 'vit_b16'.*n=12 vs n=10"):
        run(GOOD[:10])


def test_non_2d_features():
    with pytest.raises(MetricError, match=r"'vit_b16' must be a 2-D array.*\(12,\)"):
        run(GOOD[:, 0])


def test_integer_features():
    with pytest.raises(MetricError, match=r"'vit_b16' have dtype int64"):
        run(np.ones((12, 5), dtype=np.int64))


@pytest.mark.parametrize(
    "metric",
    [
        LINEAR,
        RBF,
        Metric("cka", unbiased=False),
        Metric("cka", kernel="rbf", sigma=0.5, sigma_mode="median"),
    ],
)
def test_constant_features_make_cka_undefined(metric):
    constant = np.tile(RNG.standard_normal(5), (12, 1)).astype(np.float32) + 1000
    with pytest.raises(MetricError, match=r"undefined for model 'vit_b16'.*constant"):
        run(constant, metric)


def test_constant_rdm_under_rsa():
    collinear = np.outer(np.arange(1.0, 13.0), RNG.standard_normal(5))
    with pytest.raises(MetricError, match=r"'vit_b16'.*RDM is constant"):
        run(collinear, RSA)


def test_unknown_model_in_pairs():
    with pytest.raises(MetricError, match="'clip'"):
        all_pairs({"a": GOOD, "b": GOOD}, LINEAR, [("a", "clip")], progress=False)


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is available here")
def test_cuda_unavailable_is_an_error():
    with pytest.raises(MetricError, match="CUDA is not available"):
        all_pairs({"a": GOOD, "b": GOOD}, LINEAR, device="cuda", progress=False)
