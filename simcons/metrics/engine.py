"""all_pairs: every model's per-model terms once, then each pair cheaply, within a memory budget."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any, Protocol

import numpy as np
import torch
from tqdm.auto import tqdm

from simcons.metrics.cka import LinearCKA, RbfCKA
from simcons.metrics.rsa import CorrelationRSA
from simcons.metrics.spec import Metric, MetricError
from simcons.metrics.validate import check_array, check_samples, resolve_pairs

Pair = tuple[str, str]


class Strategy(Protocol):
    """What the engine needs from a metric: prepared size, per-model prep, per-pair value."""

    def nbytes(self, n: int, p: int) -> int: ...

    def prepare(self, X: torch.Tensor, name: str) -> Any: ...

    def pair(self, a: Any, b: Any) -> float: ...


def strategy_for(metric: Metric) -> Strategy:
    """The per-model/per-pair implementation of a metric."""
    if metric.kind == "rsa":
        return CorrelationRSA(metric.corr_method)
    if metric.kernel == "linear":
        return LinearCKA(metric.unbiased)
    return RbfCKA(metric.unbiased, metric.sigma, metric.sigma_mode)


def resolve_device(device: str) -> torch.device:
    """Parse the device name; asking for CUDA without it is an error, not a silent fallback."""
    try:
        dev = torch.device(device)
    except RuntimeError as err:
        raise MetricError(f"unknown device {device!r}; use 'cpu' or 'cuda'") from err
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise MetricError(f"device {device!r} requested but CUDA is not available; use 'cpu'")
    return dev


@contextmanager
def exact_matmul(device: torch.device) -> Iterator[None]:
    """Disable TF32 on CUDA for the duration, so GEMMs keep full precision."""
    if device.type != "cuda":
        yield
        return
    saved = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


def plan_blocks(models: list[str], sizes: Mapping[str, int], budget: float) -> list[list[str]]:
    """One block if everything fits; else blocks of at most half the budget (two are loaded)."""
    if sum(sizes[m] for m in models) <= budget:
        return [models]
    half = budget / 2
    worst = max(models, key=lambda m: sizes[m])
    if sizes[worst] > half:
        need = 2 * sizes[worst] / 2**30
        raise MetricError(
            f"memory_budget_gb={budget / 2**30:g} is too small: model {worst!r} needs "
            f"{sizes[worst] / 2**30:.2f} GB prepared and a pair holds two; "
            f"pass memory_budget_gb >= {need:.2f}"
        )
    blocks: list[list[str]] = [[]]
    used = 0
    for m in models:
        if blocks[-1] and used + sizes[m] > half:
            blocks.append([])
            used = 0
        blocks[-1].append(m)
        used += sizes[m]
    return blocks


def group_pairs(pairs: list[Pair], blocks: list[list[str]]) -> dict[tuple[int, int], list[Pair]]:
    """Pairs grouped by the (lower, higher) index of the blocks holding their two models."""
    block_of = {m: i for i, block in enumerate(blocks) for m in block}
    jobs: dict[tuple[int, int], list[Pair]] = defaultdict(list)
    for a, b in pairs:
        i, j = sorted((block_of[a], block_of[b]))
        jobs[(i, j)].append((a, b))
    return jobs


def all_pairs(
    features: Mapping[str, np.ndarray],
    metric: Metric,
    pairs: Iterable[Pair] | None = None,
    *,
    device: str = "cpu",
    progress: bool = True,
    memory_budget_gb: float = 4.0,
) -> dict[Pair, float]:
    """Similarity of every requested model pair (default: all a < b), per-model terms once."""
    todo = resolve_pairs(features, pairs)
    models = sorted({m for pair in todo for m in pair})
    if not models:
        return {}
    arrays = {m: check_array(m, features[m]) for m in models}
    n = check_samples(arrays, metric)
    dev = resolve_device(device)
    strategy = strategy_for(metric)
    sizes = {m: strategy.nbytes(n, arrays[m].shape[1]) for m in models}
    blocks = plan_blocks(models, sizes, memory_budget_gb * 2**30)
    jobs = group_pairs(todo, blocks)
    values: dict[Pair, float] = {}
    bar = tqdm(total=len(todo), desc=metric.slug, disable=not progress, leave=False)

    def prepare(names: Iterable[str]) -> dict[str, Any]:
        """Move each model's features to the device in float64 and prepare its terms."""
        prepared = {}
        for name in names:
            bar.set_postfix_str(f"preparing {name}")
            X = torch.tensor(arrays[name], dtype=torch.float64, device=dev)
            prepared[name] = strategy.prepare(X, name)
        return prepared

    with exact_matmul(dev), torch.no_grad(), bar:
        for i, block in enumerate(blocks):
            mine = {j: ps for (lo, j), ps in jobs.items() if lo == i}
            if not mine:
                continue
            needed = {m for ps in mine.values() for pair in ps for m in pair if m in block}
            left = prepare(sorted(needed))
            for j in sorted(mine):
                right = left
                if j != i:
                    right = prepare(sorted({m for pair in mine[j] for m in pair} - set(block)))
                states = {**left, **right}
                for a, b in mine[j]:
                    values[(a, b)] = strategy.pair(states[a], states[b])
                    bar.update()
                del right, states
            del left
    return {pair: values[pair] for pair in todo}


def similarity(X: np.ndarray, Y: np.ndarray, metric: Metric, device: str = "cpu") -> float:
    """Similarity of two representations (models named 'X' and 'Y' in error messages)."""
    return all_pairs({"X": X, "Y": Y}, metric, [("X", "Y")], device=device, progress=False)[
        ("X", "Y")
    ]


def cka(
    X: np.ndarray,
    Y: np.ndarray,
    *,
    kernel: str = "linear",
    unbiased: bool = True,
    sigma: float | None = None,
    sigma_mode: str = "absolute",
) -> float:
    """CKA of two representations (unbiased linear by default, as the paper)."""
    metric = Metric("cka", kernel=kernel, unbiased=unbiased, sigma=sigma, sigma_mode=sigma_mode)
    return similarity(X, Y, metric)


def rsa(
    X: np.ndarray, Y: np.ndarray, *, rdm_method: str = "correlation", corr_method: str = "spearman"
) -> float:
    """RSA of two representations: correlation-distance RDMs compared by Spearman by default."""
    return similarity(X, Y, Metric("rsa", rdm_method=rdm_method, corr_method=corr_method))
