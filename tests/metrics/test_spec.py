"""Metric names: official slugs, round trips and helpful errors."""

from __future__ import annotations

import json

import pytest

from simcons.metrics import Metric, MetricError

OFFICIAL = [
    "cka_kernel_linear_unbiased",
    "cka_kernel_rbf_unbiased_sigma_0.2",
    "cka_kernel_rbf_unbiased_sigma_0.4",
    "cka_kernel_rbf_unbiased_sigma_0.6",
    "cka_kernel_rbf_unbiased_sigma_0.8",
    "rsa_method_correlation_corr_method_spearman",
]
OPTIONS = [
    "cka_kernel_linear_biased",
    "cka_kernel_rbf_biased_sigma_0.4",
    "cka_kernel_rbf_unbiased_median_0.5",
    "rsa_method_correlation_corr_method_pearson",
]


@pytest.mark.parametrize("slug", OFFICIAL + OPTIONS)
def test_slug_round_trip(slug):
    metric = Metric.from_slug(slug)
    assert metric.slug == slug
    assert Metric.from_slug(metric.slug) == metric


def test_fields_give_official_names():
    assert Metric("cka").slug == "cka_kernel_linear_unbiased"
    assert Metric("cka", kernel="rbf", sigma=0.4).slug == "cka_kernel_rbf_unbiased_sigma_0.4"
    assert Metric("rsa").slug == "rsa_method_correlation_corr_method_spearman"
    assert Metric("cka", unbiased=False).slug == "cka_kernel_linear_biased"
    median = Metric("cka", kernel="rbf", sigma=0.5, sigma_mode="median")
    assert median.slug == "cka_kernel_rbf_unbiased_median_0.5"


def test_integer_sigma_round_trips():
    metric = Metric("cka", kernel="rbf", sigma=1)
    assert metric.slug == "cka_kernel_rbf_unbiased_sigma_1"
    assert Metric.from_slug(metric.slug) == metric


def test_parameters_are_json():
    params = Metric.from_slug("cka_kernel_rbf_unbiased_sigma_0.4").parameters()
    assert json.loads(json.dumps(params)) == params
    assert params["sigma"] == 0.4 and params["kernel"] == "rbf" and params["unbiased"] is True


@pytest.mark.parametrize("slug", ["cka_linear", "cka_kernel_rbf_unbiased_sigma_x", "rsa_method_x"])
def test_unknown_slug_lists_valid_forms(slug):
    with pytest.raises(MetricError, match=r"valid forms: cka_kernel_linear_unbiased"):
        Metric.from_slug(slug)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"kind": "svcca"}, "metric kind"),
        ({"kind": "cka", "kernel": "poly"}, "kernel"),
        ({"kind": "cka", "kernel": "rbf"}, "sigma > 0"),
        ({"kind": "cka", "kernel": "rbf", "sigma": -1.0}, "sigma > 0"),
        ({"kind": "cka", "sigma": 0.4}, "only to the rbf kernel"),
        ({"kind": "cka", "sigma_mode": "median"}, "only to the rbf kernel"),
        ({"kind": "rsa", "corr_method": "kendall"}, "corr_method"),
        ({"kind": "rsa", "kernel": "rbf", "sigma": 0.4}, "only to kind='cka'"),
        ({"kind": "cka", "corr_method": "pearson"}, "only to kind='rsa'"),
    ],
)
def test_invalid_fields(fields, message):
    with pytest.raises(MetricError, match=message):
        Metric(**fields)
