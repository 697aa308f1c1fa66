"""Input checks that turn bad features into a MetricError naming the model and the fix."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from itertools import combinations

import numpy as np

from simcons.metrics.spec import Metric, MetricError


def check_array(name: str, features: object) -> np.ndarray:
    """Return features as a 2-D finite floating array, or raise MetricError naming the model."""
    array = np.asarray(features)
    if array.ndim != 2:
        raise MetricError(
            f"features of model {name!r} must be a 2-D array (samples x features); "
            f"got shape {array.shape}; reshape to (n_samples, n_features)"
        )
    if not np.issubdtype(array.dtype, np.floating):
        raise MetricError(
            f"features of model {name!r} have dtype {array.dtype}; expected float32 or float64"
        )
    bad = int(array.size - np.count_nonzero(np.isfinite(array)))
    if bad:
        raise MetricError(
            f"features of model {name!r} contain {bad} NaN/inf value(s) out of {array.size}; "
            "re-extract that model's features (check the model in eval mode and its input pipeline)"
        )
    return array


def min_samples(metric: Metric) -> int:
    """Smallest n the metric is defined for (unbiased HSIC needs n >= 4)."""
    if metric.kind == "rsa":
        return 3
    return 4 if metric.unbiased else 2


def check_samples(arrays: Mapping[str, np.ndarray], metric: Metric) -> int:
    """Check every model has the same number of samples, enough for the metric; return n."""
    names = list(arrays)
    first = names[0]
    n = arrays[first].shape[0]
    for name in names[1:]:
        other = arrays[name].shape[0]
        if other != n:
            raise MetricError(
                f"models {first!r} and {name!r} have different numbers of samples "
                f"(n={n} vs n={other}); extract both on the same stimuli"
            )
    need = min_samples(metric)
    if n < need:
        what = {"cka": "unbiased CKA" if metric.unbiased else "biased CKA", "rsa": "RSA"}
        raise MetricError(
            f"model {first!r}: {what[metric.kind]} needs at least {need} samples; got n={n}"
        )
    return n


def resolve_pairs(
    names: Iterable[str], pairs: Iterable[tuple[str, str]] | None
) -> list[tuple[str, str]]:
    """Default to every unordered pair a < b; otherwise check the given pairs name known models."""
    known = set(names)
    if pairs is None:
        return list(combinations(sorted(known), 2))
    resolved = []
    for pair in pairs:
        if len(pair) != 2:
            raise MetricError(f"a model pair must have two model names; got {pair!r}")
        a, b = pair
        for name in (a, b):
            if name not in known:
                raise MetricError(
                    f"pair {pair!r} names model {name!r}, which has no features; "
                    f"known models: {', '.join(sorted(known))}"
                )
        resolved.append((a, b))
    return resolved
