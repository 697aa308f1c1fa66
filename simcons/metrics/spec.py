"""Metric specification: the named similarity measures and their official slugs."""

from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import dataclass

KINDS = ("cka", "rsa")
KERNELS = ("linear", "rbf")
SIGMA_MODES = ("absolute", "median")
RDM_METHODS = ("correlation",)
CORR_METHODS = ("spearman", "pearson")

SLUG_FORMS = (
    "cka_kernel_linear_unbiased",
    "cka_kernel_linear_biased",
    "cka_kernel_rbf_unbiased_sigma_<sigma>  (also _biased_)",
    "cka_kernel_rbf_unbiased_median_<factor>  (also _biased_)",
    "rsa_method_correlation_corr_method_spearman",
    "rsa_method_correlation_corr_method_pearson",
)

_LINEAR_RE = re.compile(r"cka_kernel_linear_(unbiased|biased)")
_RBF_RE = re.compile(r"cka_kernel_rbf_(unbiased|biased)_(sigma|median)_([0-9.eE+-]+)")
_RSA_RE = re.compile(r"rsa_method_([a-z]+)_corr_method_([a-z]+)")


class MetricError(ValueError):
    """A similarity cannot be computed; the message names the culprit and the fix."""


def _format_number(value: float) -> str:
    """Shortest lossless text for a float, without a trailing '.0' (0.4 -> '0.4', 1.0 -> '1')."""
    text = repr(float(value))
    return text[:-2] if text.endswith(".0") else text


def _choice(field: str, value: str, allowed: tuple[str, ...]) -> None:
    """Raise MetricError unless value is one of the allowed names for field."""
    if value not in allowed:
        raise MetricError(f"unknown {field} {value!r}; choose one of {', '.join(allowed)}")


@dataclass(frozen=True)
class Metric:
    """One similarity measure: CKA (linear or RBF kernel) or RSA (RDM + rank correlation)."""

    kind: str
    kernel: str = "linear"
    unbiased: bool = True
    sigma: float | None = None
    sigma_mode: str = "absolute"
    rdm_method: str = "correlation"
    corr_method: str = "spearman"

    def __post_init__(self) -> None:
        """Validate the fields so an impossible metric fails at construction, not mid-run."""
        _choice("metric kind", self.kind, KINDS)
        if self.kind == "rsa":
            _choice("rdm_method", self.rdm_method, RDM_METHODS)
            _choice("corr_method", self.corr_method, CORR_METHODS)
            cka_fields = (self.kernel, self.unbiased, self.sigma, self.sigma_mode)
            if cka_fields != ("linear", True, None, "absolute"):
                raise MetricError("kernel, unbiased, sigma and sigma_mode apply only to kind='cka'")
            return
        if (self.rdm_method, self.corr_method) != ("correlation", "spearman"):
            raise MetricError("rdm_method and corr_method apply only to kind='rsa'")
        _choice("kernel", self.kernel, KERNELS)
        _choice("sigma_mode", self.sigma_mode, SIGMA_MODES)
        if self.kernel == "linear":
            if self.sigma is not None or self.sigma_mode != "absolute":
                raise MetricError(
                    "sigma and sigma_mode apply only to the rbf kernel; "
                    "drop them for kernel='linear'"
                )
            return
        if self.sigma is None or not math.isfinite(self.sigma) or self.sigma <= 0:
            raise MetricError(
                f"the rbf kernel needs a finite sigma > 0 (got {self.sigma!r}); e.g. sigma=0.4 "
                "(absolute bandwidth) or sigma=0.5 with sigma_mode='median'"
            )
        object.__setattr__(self, "sigma", float(self.sigma))

    @property
    def slug(self) -> str:
        """Official name, e.g. cka_kernel_rbf_unbiased_sigma_0.4."""
        if self.kind == "rsa":
            return f"rsa_method_{self.rdm_method}_corr_method_{self.corr_method}"
        bias = "unbiased" if self.unbiased else "biased"
        if self.kernel == "linear":
            return f"cka_kernel_linear_{bias}"
        tag = "sigma" if self.sigma_mode == "absolute" else "median"
        return f"cka_kernel_rbf_{bias}_{tag}_{_format_number(self.sigma)}"

    @classmethod
    def from_slug(cls, slug: str) -> Metric:
        """Parse an official name back into a Metric (inverse of slug)."""
        if m := _LINEAR_RE.fullmatch(slug):
            return cls("cka", "linear", unbiased=m[1] == "unbiased")
        if m := _RBF_RE.fullmatch(slug):
            try:
                sigma = float(m[3])
            except ValueError:
                sigma = None
            mode = "absolute" if m[2] == "sigma" else "median"
            if sigma is not None:
                return cls("cka", "rbf", unbiased=m[1] == "unbiased", sigma=sigma, sigma_mode=mode)
        if (m := _RSA_RE.fullmatch(slug)) and m[1] in RDM_METHODS and m[2] in CORR_METHODS:
            return cls("rsa", rdm_method=m[1], corr_method=m[2])
        raise MetricError(f"unknown metric name {slug!r}; valid forms: {'; '.join(SLUG_FORMS)}")

    def parameters(self) -> dict:
        """The fields as a JSON-able dict (for storing alongside results)."""
        return dataclasses.asdict(self)
