"""Benchmark all_pairs (linear unbiased CKA) against a naive per-pair n x n Gram loop.

The naive loop rebuilds both Gram matrices in float64 and U-centres them for every pair, as
thingsvision does. Run: python benchmarks/bench_allpairs.py --n 2000 [--naive-pairs 4].
"""

from __future__ import annotations

import argparse
import resource
import time
from itertools import combinations

import numpy as np
import torch

from simcons.metrics import Metric, all_pairs


def parse_args() -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=10000, help="samples per model")
    parser.add_argument("--models", type=int, default=16, help="number of models")
    parser.add_argument("--pmin", type=int, default=384, help="smallest feature width")
    parser.add_argument("--pmax", type=int, default=1536, help="largest feature width")
    parser.add_argument("--device", default="cpu", help="device for all_pairs: cpu or cuda")
    parser.add_argument(
        "--naive-pairs",
        type=int,
        default=None,
        metavar="K",
        help="time the naive loop on K evenly spread pairs only and extrapolate",
    )
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args()


def make_features(n: int, models: int, pmin: int, pmax: int, seed: int) -> dict[str, np.ndarray]:
    """Seeded float32 models sharing a latent factor, widths spread over [pmin, pmax], unit rows."""
    rng = np.random.default_rng(seed)
    latent = rng.standard_normal((n, 64)).astype(np.float32)
    features = {}
    for i, p in enumerate(np.linspace(pmin, pmax, models).round().astype(int)):
        X = latent @ rng.standard_normal((64, p), dtype=np.float32)
        X += rng.uniform(2.0, 12.0) * rng.standard_normal((n, p), dtype=np.float32)
        X /= np.linalg.norm(X, axis=1, keepdims=True)
        features[f"model_{i:02d}_p{p}"] = X
    return features


def naive_u_centred_gram(X: np.ndarray) -> np.ndarray:
    """Explicit float64 Gram X X^T, U-centred (zeroed diagonal, (n-2) factors)."""
    X = X.astype(np.float64)
    n = X.shape[0]
    K = X @ X.T
    np.fill_diagonal(K, 0.0)
    means = K.sum(axis=0) / (n - 2)
    means -= means.sum() / (2 * (n - 1))
    K -= means[:, None]
    K -= means[None, :]
    np.fill_diagonal(K, 0.0)
    return K


def naive_pair(X: np.ndarray, Y: np.ndarray) -> float:
    """Unbiased linear CKA of one pair, rebuilding both Grams."""
    K, L = naive_u_centred_gram(X), naive_u_centred_gram(Y)
    k, l_ = K.ravel(), L.ravel()
    return float(np.dot(k, l_) / np.sqrt(np.dot(k, k) * np.dot(l_, l_)))


def max_rss_mib() -> float:
    """Peak resident set size of this process so far, in MiB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def spread(pairs: list[tuple[str, str]], k: int | None) -> list[tuple[str, str]]:
    """All pairs, or k of them evenly spread over the list (so widths vary)."""
    if k is None or k >= len(pairs):
        return pairs
    picks = np.unique(np.linspace(0, len(pairs) - 1, k).round().astype(int))
    return [pairs[i] for i in picks]


def row(label: str, left: str, right: str) -> str:
    """One line of the side-by-side table."""
    return f"{label:<22}{left:>28}  {right:<40}"


def main() -> None:
    """Time both implementations and print the comparison table."""
    args = parse_args()
    features = make_features(args.n, args.models, args.pmin, args.pmax, args.seed)
    pairs = list(combinations(sorted(features), 2))
    metric = Metric("cka")
    print(
        f"linear unbiased CKA: n={args.n}, {args.models} models, p in [{args.pmin}, {args.pmax}], "
        f"{len(pairs)} pairs, engine device={args.device}, torch threads={torch.get_num_threads()}"
    )

    rss_before = max_rss_mib()
    if args.device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    engine = all_pairs(features, metric, device=args.device, progress=False)
    engine_s = time.perf_counter() - start
    rss_after = max_rss_mib()
    memory = f"+{rss_after - rss_before:.0f} MiB (peak {rss_after:.0f})"
    if args.device.startswith("cuda"):
        memory += f"; GPU peak {torch.cuda.max_memory_allocated() / 2**20:.0f} MiB"

    chosen = spread(pairs, args.naive_pairs)
    start = time.perf_counter()
    naive = {(a, b): naive_pair(features[a], features[b]) for a, b in chosen}
    naive_measured_s = time.perf_counter() - start
    naive_s = naive_measured_s / len(chosen) * len(pairs)
    extrapolated = len(chosen) < len(pairs)
    rel = max(abs(engine[p] - v) / abs(v) for p, v in naive.items())

    naive_time = f"{naive_s:.1f}" + (
        f" (EXTRAPOLATED from {len(chosen)} pairs, {naive_measured_s:.1f} s measured)"
        if extrapolated
        else ""
    )
    print()
    print(row("", "engine (all_pairs)", "naive per-pair Gram (numpy float64)"))
    print(row("pairs computed", str(len(pairs)), f"{len(chosen)} of {len(pairs)}"))
    print(row("time, all pairs [s]", f"{engine_s:.1f}", naive_time))
    print(row("time per pair [s]", f"{engine_s / len(pairs):.3f}", f"{naive_s / len(pairs):.3f}"))
    print(row("speed-up", f"{naive_s / engine_s:.1f}x", "1.0x"))
    print(row("peak memory", memory, "(not measured: runs after the engine)"))
    print(row("max rel. difference", f"{rel:.2e}", f"over the {len(chosen)} common pairs"))
    print()
    print(
        "peak memory: resource.getrusage(RUSAGE_SELF).ru_maxrss read before and after all_pairs "
        "(the engine runs first, so its increase is its own peak above the inputs)"
    )


if __name__ == "__main__":
    main()
