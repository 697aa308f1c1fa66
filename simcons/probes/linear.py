"""Linear-probe accuracy of fixed features: the paper's protocol, pure numerics.

Protocol (paper Sec. "Downstream task performance"; Radford et al. 2021, appendix A.3): a single
linear layer trained with cross-entropy, AdamW, a per-step cosine learning-rate schedule without
warm-up, 20 epochs and batches of 1024. For every learning rate in {1e-1, 1e-2, 1e-3, 1e-4} the
weight decay is chosen on a stratified 20% validation split of train from 1e-6 to 1e2 in 96
log-spaced steps by a coarse-to-fine binary search; the best (learning rate, weight decay) on
validation is then retrained on all of train and evaluated on test. One call is one seed.

Replicated from the paper's public code, lciernik/similarity_consistency (read via the code
index; it builds on LAION-AI/CLIP_benchmark):

* ``benchmark/clip_benchmark/metrics/linear_probe.py`` (``tune_weight_decay``/``find_peak``):
  ``wd_list = np.logspace(-6, 2, num=97)``, i.e. 96 steps are 97 grid values (12 per decade);
  the coarse start is ``np.logspace(-6, 2, num=7)`` (every 16th grid value); then, with
  ``step_span = 8`` halved down to 1, the grid values ``peak - span`` and ``peak + span``
  (clipped to the grid) are tried and the best becomes the new peak.
* ``sim_consistency/tasks/regularization_tuner.py`` (the released version) skips re-training the
  current peak, keeps it unless a neighbour is strictly better, and breaks ties with ``<=``, so
  that among equally good coarse values or neighbours the later (larger) weight decay wins.
  Here every grid value is evaluated at most once (results are deterministic for a seed).
* ``sim_consistency/tasks/hyperparameter_tuner.py``: learning rates are tried in order and a
  later one must be strictly better to replace an earlier one.
* ``sim_consistency/tasks/linear_probe_evaluator.py``: the validation split is
  ``train_test_split(test_size=0.2, stratify=targets, random_state=seed)``; the final probe is
  retrained on all of train; ``linear_probe.py`` reseeds before every fit and applies AdamW's
  weight decay to all parameters (bias included).

Deviations, on purpose: init and shuffling use a ``torch.Generator`` (not the global RNG), so
CPU and CUDA start from identical weights; top-5 with fewer than 5 classes is top-n_classes
(always 1.0) rather than NaN; accuracies are fractions in [0, 1].
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.model_selection import train_test_split
from tqdm import tqdm


class ProbeError(ValueError):
    """Raised for inputs or settings a linear probe cannot be fitted on."""


@dataclass(frozen=True)
class ProbeConfig:
    """Settings of the probe protocol; the defaults are the paper's."""

    learning_rates: tuple[float, ...] = (1e-1, 1e-2, 1e-3, 1e-4)
    wd_min: float = 1e-6
    wd_max: float = 1e2
    wd_steps: int = 96  # log-spaced steps from wd_min to wd_max, i.e. wd_steps + 1 values
    wd_coarse: int = 7  # evenly spaced grid values the binary search starts from
    epochs: int = 20
    batch_size: int = 1024
    val_fraction: float = 0.2

    def __post_init__(self) -> None:
        """Reject settings the protocol cannot run with."""
        if not self.learning_rates or any(not lr > 0 for lr in self.learning_rates):
            raise ProbeError(f"learning_rates must be positive, got {self.learning_rates}")
        if not 0 < self.wd_min <= self.wd_max:
            raise ProbeError(f"need 0 < wd_min <= wd_max, got {self.wd_min}, {self.wd_max}")
        if self.wd_steps < 0 or (self.wd_steps == 0) != (self.wd_min == self.wd_max):
            raise ProbeError("wd_steps must be >= 1, or 0 with wd_min == wd_max (one value)")
        if self.wd_coarse < 1 or self.epochs < 1 or self.batch_size < 1:
            raise ProbeError("wd_coarse, epochs and batch_size must be >= 1")
        if not 0 < self.val_fraction < 1:
            raise ProbeError(f"val_fraction must be in (0, 1), got {self.val_fraction}")

    def weight_decay_grid(self) -> np.ndarray:
        """The wd_steps + 1 log-spaced weight decays searched over."""
        return np.logspace(
            math.log10(self.wd_min), math.log10(self.wd_max), self.wd_steps + 1
        )


@dataclass(frozen=True)
class ProbeResult:
    """Outcome of one probe (one seed); accuracies are fractions in [0, 1]."""

    seed: int
    learning_rate: float
    weight_decay: float
    val_top1: float
    test_top1: float
    test_top5: float
    test_balanced_acc: float
    n_classes: int
    n_train: int
    n_test: int
    seconds: float
    n_fits: int
    search: list[dict]  # {"learning_rate", "weight_decay", "val_top1"} per fit, in order


def _coarse_indices(n_grid: int, n_coarse: int) -> list[int]:
    """Evenly spaced grid indices, both ends included, where the search starts."""
    return sorted({round(i) for i in np.linspace(0, n_grid - 1, min(n_coarse, n_grid))})


def _initial_span(gap: int) -> int:
    """Smallest power of two whose halvings (s, s/2, ..., 1) reach gap // 2 steps; 0 if none."""
    reach, span = gap // 2, 1
    if reach == 0:
        return 0
    while 2 * span - 1 < reach:
        span *= 2
    return span


def search_weight_decay(
    evaluate: Callable[[float], float], grid: np.ndarray, *, n_coarse: int = 7
) -> tuple[float, float, list[tuple[float, float]]]:
    """Coarse-to-fine binary search for the grid value maximising evaluate (Radford et al. A.3).

    Evaluates n_coarse evenly spaced grid values, then, with a span starting at the smallest
    power of two that covers half the coarse gap (8 for 97 values and 7 coarse ones, as in
    clip_benchmark) and halving down to 1, the values ``span`` grid steps either side of the
    peak. A neighbour replaces the peak only when strictly better; ties among coarse values or
    among the two neighbours go to the larger index. No grid value is evaluated twice.
    Returns (best value, best score, [(value, score), ...] in evaluation order).
    """
    grid = np.asarray(grid, dtype=float)
    if grid.ndim != 1 or grid.size == 0:
        raise ProbeError("grid must be a non-empty 1-D array")
    scores: dict[int, float] = {}
    evaluations: list[tuple[float, float]] = []

    def best_of(indices: list[int]) -> tuple[int, float]:
        """Evaluate the new indices; the last best of them wins (the released code's <=)."""
        best_idx, best = -1, -math.inf
        for idx in indices:
            if idx not in scores:
                scores[idx] = float(evaluate(float(grid[idx])))
                evaluations.append((float(grid[idx]), scores[idx]))
            if scores[idx] >= best:
                best_idx, best = idx, scores[idx]
        return best_idx, best

    start = _coarse_indices(grid.size, n_coarse)
    peak, peak_score = best_of(start)
    span = _initial_span(int(max(np.diff(start), default=0)))
    while span > 0:
        sides = [max(peak - span, 0), min(peak + span, grid.size - 1)]
        idx, score = best_of([i for i in sides if i != peak])
        if score > peak_score:
            peak, peak_score = idx, score
        span //= 2
    return float(grid[peak]), peak_score, evaluations


def probe_metrics(logits: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """Top-1, top-5 and balanced accuracy of logits (n, k) against class indices in [0, k).

    Top-5 with fewer than 5 classes is top-k over all k classes, hence 1.0. Balanced accuracy
    is the mean recall over the classes present in labels, as sklearn's balanced_accuracy_score.
    """
    logits, labels = np.asarray(logits), np.asarray(labels)
    top = np.argsort(-logits, axis=1, kind="stable")[:, : min(5, logits.shape[1])]
    pred = top[:, 0]
    present = np.unique(labels)
    hits = np.bincount(labels[pred == labels], minlength=logits.shape[1])[present]
    return {
        "top1": float(np.mean(pred == labels)),
        "top5": float(np.mean(np.any(top == labels[:, None], axis=1))),
        "balanced_acc": float(np.mean(hits / np.bincount(labels)[present])),
    }


def _as_features(x: object, name: str) -> np.ndarray:
    """Features as a finite float32 (n, p) array, or ProbeError."""
    arr = np.asarray(x, dtype=np.float32)
    if arr.ndim != 2 or arr.shape[0] == 0 or arr.shape[1] == 0:
        raise ProbeError(f"{name} must be a non-empty 2-D (samples, dims) array, got {arr.shape}")
    if not np.isfinite(arr).all():
        bad = np.flatnonzero(~np.isfinite(arr).all(axis=1))
        raise ProbeError(f"{name} has NaN/inf in {bad.size} rows (first: {bad[:5].tolist()})")
    return arr


def _as_labels(y: object, n: int, name: str) -> np.ndarray:
    """Labels as a 1-D array of length n, or ProbeError."""
    arr = np.asarray(y)
    if arr.ndim != 1:
        raise ProbeError(f"{name} must be 1-D, got shape {arr.shape}")
    if arr.shape[0] != n:
        raise ProbeError(f"{name} has {arr.shape[0]} labels but the features have {n} rows")
    return arr


def _check_split(counts: np.ndarray, classes: np.ndarray, val_fraction: float) -> None:
    """ProbeError unless the stratified split puts every class in both parts, for every seed.

    sklearn allocates floor(count * n_part / n) or one more per class, so a class is in a part
    for sure when count * n_part / n >= 1, n_val = ceil(val_fraction * n) as sklearn computes it.
    """
    n = int(counts.sum())
    n_part = min(math.ceil(val_fraction * n), n - math.ceil(val_fraction * n))
    pairs = zip(classes.tolist(), counts.tolist(), strict=True)
    short = [(c, k) for c, k in pairs if k * n_part < n]
    if short:
        need = math.ceil(n / max(n_part, 1))
        listed = ", ".join(f"{c!r} ({k})" for c, k in short[:20])
        raise ProbeError(
            f"too few training samples for a validation split (val_fraction={val_fraction}) "
            f"that contains every class: need >= {need} samples per class, but {len(short)} "
            f"class(es) have fewer: {listed}. Add samples of these classes, drop them, or "
            "change val_fraction."
        )


def _validate(
    train_x: object, train_y: object, test_x: object, test_y: object, val_fraction: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Checked (train_x, train class index, test_x, test class index, classes), or ProbeError."""
    tr_x, te_x = _as_features(train_x, "train_x"), _as_features(test_x, "test_x")
    tr_y = _as_labels(train_y, tr_x.shape[0], "train_y")
    te_y = _as_labels(test_y, te_x.shape[0], "test_y")
    if tr_x.shape[1] != te_x.shape[1]:
        raise ProbeError(f"train features have {tr_x.shape[1]} dims, test {te_x.shape[1]}")
    classes, tr_idx, counts = np.unique(tr_y, return_inverse=True, return_counts=True)
    if classes.size < 2:
        raise ProbeError(f"train_y has a single class ({classes.tolist()}); need at least 2")
    unseen = np.setdiff1d(te_y, classes)
    if unseen.size:
        raise ProbeError(
            f"test_y has {unseen.size} class(es) not in train_y: {unseen[:20].tolist()}"
        )
    _check_split(counts, classes, val_fraction)
    return tr_x, tr_idx, te_x, np.searchsorted(classes, te_y), classes


@contextlib.contextmanager
def _exact_float32(device: torch.device) -> Iterator[None]:
    """Turn TF32 off on CUDA for the duration, restoring the previous flags."""
    if device.type != "cuda":
        yield
        return
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


def _train(
    x: torch.Tensor, y: torch.Tensor, n_classes: int, lr: float, wd: float,
    config: ProbeConfig, seed: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Weight and bias of a linear layer fitted by AdamW with a per-step cosine schedule."""
    gen = torch.Generator().manual_seed(seed)
    bound = 1.0 / math.sqrt(x.shape[1])  # torch.nn.Linear's default init
    weight = ((torch.rand(n_classes, x.shape[1], generator=gen) * 2 - 1) * bound).to(x.device)
    bias = ((torch.rand(n_classes, generator=gen) * 2 - 1) * bound).to(x.device)
    weight.requires_grad_(True)
    bias.requires_grad_(True)
    optimizer = torch.optim.AdamW([weight, bias], lr=lr, weight_decay=wd)
    n = x.shape[0]
    steps_per_epoch = math.ceil(n / config.batch_size)
    total = config.epochs * steps_per_epoch
    for epoch in range(config.epochs):
        order = torch.randperm(n, generator=gen).to(x.device)
        for i in range(steps_per_epoch):
            step = epoch * steps_per_epoch + i
            optimizer.param_groups[0]["lr"] = 0.5 * (1 + math.cos(math.pi * step / total)) * lr
            batch = order[i * config.batch_size : (i + 1) * config.batch_size]
            optimizer.zero_grad()
            F.cross_entropy(F.linear(x[batch], weight, bias), y[batch]).backward()
            optimizer.step()
    return weight.detach(), bias.detach()


def _logits(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> np.ndarray:
    """Logits of the fitted layer on x, in chunks, as a numpy array."""
    with torch.no_grad():
        return torch.cat([F.linear(c, weight, bias).cpu() for c in x.split(8192)]).numpy()


def fit_probe(
    train_x: np.ndarray,
    train_y: np.ndarray,
    test_x: np.ndarray,
    test_y: np.ndarray,
    *,
    seed: int = 0,
    config: ProbeConfig = ProbeConfig(),  # noqa: B008 - frozen, hence safe as a default
    device: str = "cpu",
    progress: bool = False,
) -> ProbeResult:
    """Select (lr, wd) on a validation split of train, retrain on all of train, score on test.

    Inputs: float32 (n, p) features (used as given, not normalised) and 1-D labels of any
    sortable type; test labels must all occur in train. Bad input raises ProbeError before any
    training. Deterministic for a seed on a device (split, init and shuffling all follow it).
    top5 with fewer than 5 classes is top-n_classes (1.0).
    """
    start = time.perf_counter()
    tr_x, tr_y, te_x, te_y, classes = _validate(
        train_x, train_y, test_x, test_y, config.val_fraction
    )
    dev = torch.device(device)
    fit_idx, val_idx = train_test_split(
        np.arange(tr_y.size), test_size=config.val_fraction, stratify=tr_y, random_state=seed
    )
    x_all = torch.from_numpy(tr_x).to(dev)
    y_all = torch.from_numpy(tr_y.astype(np.int64)).to(dev)
    fit_rows = torch.from_numpy(fit_idx).to(dev)
    x_fit, y_fit = x_all[fit_rows], y_all[fit_rows]
    x_val, y_val = x_all[torch.from_numpy(val_idx).to(dev)], tr_y[val_idx]
    k = classes.size
    search: list[dict] = []
    bar = tqdm(desc="linear probe", unit="fit", disable=not progress)

    def val_top1(lr: float, wd: float) -> float:
        """Validation top-1 of a probe fitted on the non-validation part of train."""
        weight, bias = _train(x_fit, y_fit, k, lr, wd, config, seed)
        score = float(np.mean(_logits(x_val, weight, bias).argmax(axis=1) == y_val))
        search.append({"learning_rate": lr, "weight_decay": wd, "val_top1": score})
        bar.update(1)
        bar.set_postfix(lr=lr, wd=f"{wd:.2e}", val=f"{score:.4f}")
        return score

    with _exact_float32(dev), bar:
        best_lr, best_wd, best_val = config.learning_rates[0], 0.0, -math.inf
        for lr in config.learning_rates:
            wd, score, _ = search_weight_decay(
                lambda wd, lr=lr: val_top1(lr, wd),
                config.weight_decay_grid(),
                n_coarse=config.wd_coarse,
            )
            if score > best_val:
                best_lr, best_wd, best_val = lr, wd, score
        weight, bias = _train(x_all, y_all, k, best_lr, best_wd, config, seed)
        bar.update(1)
        metrics = probe_metrics(_logits(torch.from_numpy(te_x).to(dev), weight, bias), te_y)
    return ProbeResult(
        seed=seed,
        learning_rate=best_lr,
        weight_decay=best_wd,
        val_top1=best_val,
        test_top1=metrics["top1"],
        test_top5=metrics["top5"],
        test_balanced_acc=metrics["balanced_acc"],
        n_classes=int(k),
        n_train=int(tr_y.size),
        n_test=int(te_y.size),
        seconds=time.perf_counter() - start,
        n_fits=len(search) + 1,
        search=search,
    )
