"""Time one linear probe (full default search, one seed) against scikit-learn's LogisticRegression.

Synthetic features: a Gaussian mixture with one mean per class, L2-normalised rows, n train
samples and a 2,000-sample test set. Not a pytest test; run it by hand:

    python benchmarks/bench_probe.py --n 10000 --p 768 --classes 10 --device cpu
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from threadpoolctl import threadpool_limits

from simcons.probes import ProbeConfig, fit_probe

N_TEST = 2000


def mixture(
    n: int, p: int, classes: int, rng: np.random.Generator, means: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """n L2-normalised float32 samples around the class means, with balanced labels."""
    y = np.arange(n) % classes
    rng.shuffle(y)
    x = means[y] + rng.standard_normal((n, p))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32), y


def parse_args() -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=10000, help="training samples")
    parser.add_argument("--p", type=int, default=768, help="feature dimensions")
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--separation", type=float, default=3.0, help="norm of class means")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--threads", type=int, default=0, help="CPU threads of torch and BLAS (0: default)"
    )
    return parser.parse_args()


def main() -> None:
    """Fit both on the same features and print time and accuracy side by side."""
    args = parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
        threadpool_limits(args.threads)
    rng = np.random.default_rng(args.seed)
    means = rng.standard_normal((args.classes, args.p))
    means *= args.separation / np.linalg.norm(means, axis=1, keepdims=True)
    train_x, train_y = mixture(args.n, args.p, args.classes, rng, means)
    test_x, test_y = mixture(N_TEST, args.p, args.classes, rng, means)
    print(f"n={args.n} p={args.p} classes={args.classes} test={N_TEST} device={args.device} "
          f"threads={torch.get_num_threads()}")

    result = fit_probe(train_x, train_y, test_x, test_y, seed=args.seed,
                       config=ProbeConfig(), device=args.device)

    start = time.perf_counter()
    logreg = LogisticRegression(max_iter=1000).fit(train_x, train_y)
    sk_seconds = time.perf_counter() - start
    sk_top1 = float(np.mean(logreg.predict(test_x) == test_y))

    print(f"{'method':<34}{'seconds':>10}{'fits':>6}{'test_top1':>11}")
    print(f"{'simcons fit_probe (full search)':<34}{result.seconds:>10.1f}{result.n_fits:>6}"
          f"{result.test_top1:>11.4f}")
    print(f"{'sklearn LogisticRegression lbfgs':<34}{sk_seconds:>10.1f}{1:>6}{sk_top1:>11.4f}")
    print(f"probe chose lr={result.learning_rate:g} wd={result.weight_decay:.3g} "
          f"(val_top1={result.val_top1:.4f}); sklearn C=1.0, "
          f"{int(np.max(logreg.n_iter_))} lbfgs iterations")


if __name__ == "__main__":
    main()
