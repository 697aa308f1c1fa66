"""simcons.probes: linear-probe accuracy of fixed features (the paper's protocol)."""

from simcons.probes.linear import (
    ProbeConfig,
    ProbeError,
    ProbeResult,
    fit_probe,
    probe_metrics,
    search_weight_decay,
)

__all__ = [
    "ProbeConfig",
    "ProbeError",
    "ProbeResult",
    "fit_probe",
    "probe_metrics",
    "search_weight_decay",
]
