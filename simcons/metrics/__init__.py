"""Pure numerical similarity measures (CKA, RSA) between model representations."""

from simcons.metrics.engine import all_pairs, cka, rsa, similarity
from simcons.metrics.spec import Metric, MetricError

__all__ = ["Metric", "MetricError", "all_pairs", "cka", "rsa", "similarity"]
