"""Tests of simcons.probes.linear: protocol, accuracy, search, determinism, input checks."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import balanced_accuracy_score, top_k_accuracy_score
from sklearn.model_selection import train_test_split
from threadpoolctl import threadpool_limits

from simcons.probes import ProbeConfig, ProbeError, fit_probe, probe_metrics, search_weight_decay

FAST = ProbeConfig(learning_rates=(1e-1,), wd_steps=8, wd_coarse=3, epochs=10, batch_size=64)
GRID = ProbeConfig().weight_decay_grid()


def normalised(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit L2 norm, float32, as the probe receives features."""
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def clusters(n: int, p: int, k: int, spread: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """n balanced samples around k orthogonal unit directions, with Gaussian spread."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % k
    return normalised(np.eye(p)[y] + spread * rng.standard_normal((n, p))), y


def peaked(peak: float) -> Callable[[float], float]:
    """Score that strictly decreases with the grid distance from peak, in exact integers."""

    def score(wd: float) -> float:
        """Minus the number of grid steps between wd and peak."""
        return -float(abs(GRID.tolist().index(wd) - GRID.tolist().index(peak)))

    return score


@pytest.fixture(autouse=True)
def one_torch_thread() -> Iterator[None]:
    """Fit with one torch and BLAS thread: on a busy 2-core machine two are many times slower."""
    saved = torch.get_num_threads()
    torch.set_num_threads(1)
    with threadpool_limits(1):
        yield
    torch.set_num_threads(saved)


@pytest.mark.slow
def test_default_protocol_separable_data_is_perfect() -> None:
    """The full default protocol on separable clusters gets 100% test accuracy."""
    train_x, train_y = clusters(150, 8, 3, 0.05, seed=1)
    test_x, test_y = clusters(60, 8, 3, 0.05, seed=2)
    result = fit_probe(train_x, train_y, test_x, test_y, seed=0)
    assert result.test_top1 == 1.0 and result.test_balanced_acc == 1.0
    assert result.test_top5 == 1.0  # 3 classes: top-5 is top-3
    assert (result.n_classes, result.n_train, result.n_test) == (3, 150, 60)
    assert result.n_fits == len(result.search) + 1
    for lr in ProbeConfig().learning_rates:
        tried = [s["weight_decay"] for s in result.search if s["learning_rate"] == lr]
        assert 11 <= len(tried) <= 15 and len(set(tried)) == len(tried)
        assert set(tried) <= set(GRID.tolist())
    assert result.weight_decay in GRID.tolist()
    assert result.val_top1 == max(s["val_top1"] for s in result.search)


def test_noise_labels_stay_at_chance() -> None:
    """Labels independent of the features give chance accuracy on a balanced test set.

    With labels independent of the features every prediction rule has expected accuracy 1/4
    on a balanced 4-class test set; with 1,000 test samples the standard deviation is
    sqrt(0.25 * 0.75 / 1000) = 0.014, so 0.06 is over 4 standard deviations.
    """
    rng = np.random.default_rng(3)
    train_x, test_x = normalised(rng.standard_normal((400, 32))), normalised(
        rng.standard_normal((1000, 32))
    )
    train_y, test_y = rng.permutation(np.arange(400) % 4), rng.permutation(np.arange(1000) % 4)
    result = fit_probe(train_x, train_y, test_x, test_y, seed=0, config=FAST)
    assert abs(result.test_top1 - 0.25) < 0.06
    assert abs(result.test_balanced_acc - 0.25) < 0.06


@pytest.mark.slow
def test_digits_matches_sklearn_logistic_regression() -> None:
    """On L2-normalised digit pixels the probe is within 2 points of tuned LogisticRegression.

    C of LogisticRegression is tuned the probe's way: on the same seed-0 stratified 20%
    validation split of train, then refitted on all of train. The probe uses batches of 64 so
    that ~1,260 training samples give enough optimiser steps (1024 would give two per epoch),
    and one learning rate and a 3-per-decade grid to stay fast.
    """
    x, y = load_digits(return_X_y=True)
    train_x, test_x, train_y, test_y = train_test_split(
        normalised(x), y, test_size=0.3, stratify=y, random_state=0
    )
    fit, val = train_test_split(np.arange(train_y.size), test_size=0.2, stratify=train_y,
                                random_state=0)

    def logreg(c: float, rows: np.ndarray) -> LogisticRegression:
        """LogisticRegression with C = c fitted on the given training rows."""
        return LogisticRegression(C=c, max_iter=5000).fit(train_x[rows], train_y[rows])

    best_c = max([1.0, 10.0, 100.0, 1000.0],
                 key=lambda c: logreg(c, fit).score(train_x[val], train_y[val]))
    sk_top1 = logreg(best_c, np.arange(train_y.size)).score(test_x, test_y)
    config = ProbeConfig(learning_rates=(1e-1,), wd_steps=24, batch_size=64)
    result = fit_probe(train_x, train_y, test_x, test_y, seed=0, config=config)
    assert abs(result.test_top1 - sk_top1) <= 0.02, (result.test_top1, sk_top1, best_c)


@pytest.mark.parametrize(
    ("peak_index", "expected"),
    [
        # Coarse values are indices 0, 16, ..., 96; refinement spans are 8, 4, 2, 1 grid steps.
        (48, 7 + 2 + 2 + 2 + 2),  # a coarse interior peak: both neighbours at every span
        (50, 7 + 2 + 2 + 2 + 2),  # 48 -> 50 at span 2 (52 ties with 48 at span 4: no move)
        (8, 7 + 2 + 2 + 2 + 2),  # 0 and 16 tie, the larger wins; 16 -> 8 at span 8
        (0, 7 + 1 + 1 + 1 + 1),  # left neighbour clipped to the peak itself at every span
        (96, 7 + 1 + 1 + 1 + 1),
        (1, 7 + 1 + 1 + 1 + 1),  # stays at 0 until span 1 (2 ties with 0 at span 2)
        (2, 7 + 1 + 1 + 1 + 2),  # 0 -> 2 at span 2, then both neighbours 1 and 3
        (94, 7 + 1 + 1 + 1 + 2),
        (3, 7 + 1 + 1 + 2 + 2),  # 0 -> 4 at span 4, then 2/6 and 3/5
    ],
)
def test_search_finds_peak_with_promised_evaluations(peak_index: int, expected: int) -> None:
    """The binary search lands on the peak with the hand-counted number of evaluations."""
    best, score, evaluations = search_weight_decay(peaked(GRID[peak_index]), GRID)
    assert best == GRID[peak_index] and score == 0.0
    assert len(evaluations) == expected
    assert evaluations[:7] == [(GRID[i], peaked(GRID[peak_index])(GRID[i])) for i in
                               range(0, 97, 16)]


def test_search_finds_every_grid_peak_in_far_fewer_evaluations() -> None:
    """Any single-peaked score is maximised with at most 7 + 2 * 4 of the 97 evaluations."""
    for peak in GRID:
        best, _, evaluations = search_weight_decay(peaked(peak), GRID)
        tried = [wd for wd, _ in evaluations]
        assert best == peak
        assert 7 + 4 <= len(tried) <= 7 + 2 * 4 and len(set(tried)) == len(tried)


def test_search_ties_go_to_larger_weight_decay() -> None:
    """A flat score keeps the largest coarse value, as the released code's <= does."""
    best, _, evaluations = search_weight_decay(lambda wd: 0.5, GRID)
    assert best == GRID[-1]
    assert [wd for wd, _ in evaluations[7:]] == [GRID[88], GRID[92], GRID[94], GRID[95]]


def test_search_on_a_single_value_grid() -> None:
    """A one-value grid is evaluated once and returned."""
    assert search_weight_decay(lambda wd: 0.3, np.array([1e-3])) == (1e-3, 0.3, [(1e-3, 0.3)])


def test_same_seed_same_result_other_seed_other_split() -> None:
    """A seed fixes everything but the timing; another seed draws another split."""
    train_x, train_y = clusters(200, 16, 4, 0.6, seed=4)
    test_x, test_y = clusters(100, 16, 4, 0.6, seed=5)
    runs = [fit_probe(train_x, train_y, test_x, test_y, seed=s, config=FAST) for s in (0, 0, 1)]
    first, again, other = (dataclasses.replace(r, seconds=0.0) for r in runs)
    assert first == again
    assert first.search != other.search


def test_labels_need_not_be_contiguous_integers() -> None:
    """String labels, and test sets lacking some train classes, are accepted."""
    train_x, train_y = clusters(120, 8, 3, 0.05, seed=6)
    test_x, test_y = clusters(40, 8, 3, 0.05, seed=7)
    names = np.array(["cat", "dog", "emu"])
    keep = test_y != 2
    result = fit_probe(train_x, names[train_y], test_x[keep], names[test_y[keep]], config=FAST)
    assert result.n_classes == 3 and result.test_top1 == 1.0


def _bad(**changes: object) -> dict:
    """Valid fit_probe arguments with some replaced."""
    train_x, train_y = clusters(100, 8, 2, 0.1, seed=8)
    test_x, test_y = clusters(20, 8, 2, 0.1, seed=9)
    args = {"train_x": train_x, "train_y": train_y, "test_x": test_x, "test_y": test_y}
    return {**args, **changes}


def _with(array: np.ndarray, row: int, value: float) -> np.ndarray:
    """A copy of array with one entry of a row replaced."""
    out = array.copy()
    out[row, 0] = value
    return out


BASE = _bad()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (_bad(train_y=np.zeros(100, dtype=int)), "single class"),
        (_bad(test_y=np.r_[BASE["test_y"][:-2], 7, 9]), r"not in train_y: \[7, 9\]"),
        (_bad(train_y=BASE["train_y"][:-1]), "99 labels but the features have 100 rows"),
        (_bad(test_y=BASE["test_y"][:-1]), "19 labels but the features have 20 rows"),
        (_bad(train_x=_with(BASE["train_x"], 3, np.nan)), r"train_x has NaN/inf in 1 rows"),
        (_bad(test_x=_with(BASE["test_x"], 5, np.inf)), r"test_x has NaN/inf .*\[5\]"),
        (_bad(test_x=BASE["test_x"][:, :4]), "train features have 8 dims, test 4"),
        (_bad(train_x=BASE["train_x"][:, 0]), "2-D"),
        (_bad(train_y=np.r_[np.zeros(96, dtype=int), 1, 1, 1, 1]), r"need >= 5 .* 1 \(4\)"),
    ],
)
def test_bad_input_raises(args: dict, message: str) -> None:
    """Each kind of bad input raises ProbeError naming the problem."""
    with pytest.raises(ProbeError, match=message):
        fit_probe(**args, config=FAST)


def test_five_per_class_is_enough_for_the_split() -> None:
    """The smallest class size the split check admits (5 at 20%) does fit."""
    train_y = np.r_[np.zeros(95, dtype=int), np.ones(5, dtype=int)]
    result = fit_probe(**_bad(train_y=train_y), config=FAST)
    assert result.n_train == 100


def test_bad_config_raises() -> None:
    """Settings the protocol cannot run with are refused."""
    for changes in ({"learning_rates": ()}, {"wd_min": 1.0, "wd_max": 0.1},
                    {"wd_steps": 0}, {"val_fraction": 1.0}, {"epochs": 0}):
        with pytest.raises(ProbeError):
            ProbeConfig(**changes)
    assert ProbeConfig(wd_min=0.1, wd_max=0.1, wd_steps=0).weight_decay_grid().tolist() == [0.1]


@pytest.mark.filterwarnings("ignore::UserWarning")  # sklearn: absent class, k >= n_classes
@pytest.mark.parametrize("n_classes", [3, 4, 5, 12])
def test_metrics_match_sklearn(n_classes: int) -> None:
    """top-1, top-5 and balanced accuracy agree with sklearn on the same logits."""
    rng = np.random.default_rng(n_classes)
    labels = rng.integers(0, n_classes, 300)
    labels[labels == 1] = 0  # class 1 absent from the labels, as in a partial test set
    logits = rng.standard_normal((300, n_classes)) + 1.5 * np.eye(n_classes)[labels]
    got = probe_metrics(logits, labels)
    every = np.arange(n_classes)
    k = min(5, n_classes)
    assert got["top1"] == pytest.approx(np.mean(logits.argmax(axis=1) == labels))
    assert got["top5"] == pytest.approx(top_k_accuracy_score(labels, logits, k=k, labels=every))
    assert got["balanced_acc"] == pytest.approx(
        balanced_accuracy_score(labels, logits.argmax(axis=1))
    )
    if n_classes < 5:
        assert got["top5"] == 1.0


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu() -> None:
    """On CUDA (TF32 off) the probe picks the same hyperparameters and nearly the same scores."""
    train_x, train_y = clusters(300, 32, 5, 0.5, seed=10)
    test_x, test_y = clusters(200, 32, 5, 0.5, seed=11)
    cpu, gpu = (fit_probe(train_x, train_y, test_x, test_y, config=FAST, device=d)
                for d in ("cpu", "cuda"))
    assert (gpu.learning_rate, gpu.weight_decay) == (cpu.learning_rate, cpu.weight_decay)
    assert abs(gpu.test_top1 - cpu.test_top1) <= 0.01
