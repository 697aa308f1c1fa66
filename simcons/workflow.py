"""The data flow over the store: extract features, then compute pair similarities, resumably.

Each step looks in the store first and does only the work that is not done yet. The grid
functions run everything in this process; the single-unit functions (`extract_one`,
`similarity_block`) are what queued jobs run in workers.
"""

from __future__ import annotations

import re
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from simcons.catalog import DatasetSpec, ModelSpec
from simcons.catalog.specs import model_fingerprint
from simcons.storage import (
    ExtractionInfo,
    PairValue,
    ProbeValue,
    ResultStore,
    StoreError,
    SubsetRecord,
)

FEATURES_DIR = "features"


@dataclass(frozen=True)
class SubsetRule:
    """Which samples of a split to use: the paper's 10,000 stratified with seed 42 by default."""

    split: str = "train"
    max_samples: int | None = 10_000
    per_class: int | None = None
    seed: int = 42

    @property
    def rule(self) -> str:
        """The rule's name as stored with a subset."""
        return "per_class" if self.per_class else "stratified"


@dataclass(frozen=True)
class ProbeSetup:
    """Linear probes: train on one subset, test on another, for these seeds and settings.

    `config` holds overrides of simcons.probes.ProbeConfig (empty: the paper's protocol).
    """

    train: SubsetRule = SubsetRule(split="train", max_samples=None)
    test: SubsetRule = SubsetRule(split="test", max_samples=None)
    seeds: tuple[int, ...] = (0, 1, 2)
    config: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.train.split == self.test.split:
            raise ValueError(
                f"probes train and test on the same split ({self.train.split!r}): the accuracy "
                "would be measured on training data; give another test split (--test-split)"
            )
        if not self.seeds or len(set(self.seeds)) != len(self.seeds):
            raise ValueError(f"probe seeds {self.seeds}: give one or more distinct seeds")


@dataclass(frozen=True)
class Outcome:
    """What happened to one unit of work."""

    what: str
    status: str  # done | skipped | failed
    detail: str = ""


@dataclass
class Context:
    """Where a run reads and writes: the store, the data folder, and the dataset roots."""

    store: ResultStore
    home: Path
    datasets_root: Path | None = None
    device: str = "cpu"
    progress: bool = True
    loader_workers: int = 0  # DataLoader processes decoding images during extraction


def feature_path(spec: ModelSpec, dataset: str, split: str, subset: SubsetRecord) -> Path:
    """Path of one feature file, relative to the data folder: one per model version and subset."""
    name = f"{_safe(split)}-{subset.fingerprint[:16]}-{model_fingerprint(spec)[:12]}.h5"
    return Path(FEATURES_DIR) / _safe(spec.key) / _safe(dataset) / name


def _safe(key: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", key).strip("_") or "_"


def resolve_subset(ctx: Context, spec: DatasetSpec, rule: SubsetRule):  # noqa: ANN201
    """Open the split, draw (or find) its stored subset, and return (record, subset view)."""
    from simcons.extract.datasets import open_dataset
    from simcons.extract.subsample import stratified_subset

    images = open_dataset(spec, rule.split, root=ctx.datasets_root, data_dir=ctx.home)
    indices = stratified_subset(
        images.labels, rule.max_samples, per_class=rule.per_class, seed=rule.seed
    )
    record = ctx.store.ensure_subset(
        spec.key, rule.split, [int(i) for i in indices], rule=rule.rule,
        max_samples=rule.max_samples, per_class=rule.per_class, seed=rule.seed,
    )
    return record, images.subset(indices)


def stored_subset(ctx: Context, spec: DatasetSpec, subset: SubsetRecord):  # noqa: ANN201
    """The view of a split that a stored subset names (its indices read from the store)."""
    from simcons.extract.datasets import open_dataset

    images = open_dataset(spec, subset.split, root=ctx.datasets_root, data_dir=ctx.home)
    return images.subset(np.asarray(ctx.store.subset_indices(subset.id), dtype=np.int64))


def extraction_done(ctx: Context, model: str, dataset: str, subset: SubsetRecord) -> bool:
    """True when the store records this extraction as done and its file is in place."""
    record = ctx.store.find_extraction(model, dataset, subset.split, subset.id)
    return record is not None and record.status == "done" and (ctx.home / record.path).exists()


def load_model(spec: ModelSpec, device: str):  # noqa: ANN201 - a LoadedModel
    """Build a catalogued model with its weights on the device."""
    from simcons.extract.loaders import load_model as load

    return load(spec, pretrained=True, device=device)


def extract_one(
    ctx: Context, model, spec: ModelSpec, d: DatasetSpec, subset: SubsetRecord, images,  # noqa: ANN001
    *, batch_size: int = 64,
) -> Outcome:
    """Extract one model on one subset into its HDF5 file, then record it as done.

    The file is written under a temporary name and renamed when complete; the run is recorded
    as done only after that. Errors are recorded on the run and raised.
    """
    from simcons.extract.features import write_features
    from simcons.extract.runner import extract_features

    run_id = ctx.store.start_extraction(spec.key, d.key, subset.split, subset.id)
    try:
        feats = extract_features(
            model, spec, images, batch_size=batch_size, device=ctx.device,
            progress=ctx.progress, desc=f"{spec.key} x {d.key}", num_workers=ctx.loader_workers,
        )
        rel = feature_path(spec, d.key, subset.split, subset)
        write_features(
            ctx.home / rel, feats, np.asarray(images.labels, dtype=np.int64),
            np.asarray(images.sample_ids), attrs={
                "model": spec.key, "dataset": d.key, "split": subset.split,
                "layer": spec.module_name, "token_rule": spec.token_rule,
                "subset_fingerprint": subset.fingerprint,
                "model_fingerprint": model_fingerprint(spec),
            },
        )
    except BaseException as exc:
        ctx.store.fail_extraction(run_id, "".join(traceback.format_exception(exc)))
        raise
    ctx.store.finish_extraction(run_id, ExtractionInfo(
        path=rel.as_posix(), n_samples=int(feats.shape[0]), dim=int(feats.shape[1]),
        dtype=str(feats.dtype), preprocessing=model.preprocessing,
        weights_source=model.weights_source, weights_sha256=model.weights_sha256,
        package_versions=model.package_versions,
    ))
    return Outcome(f"extract {spec.key} x {d.key}", "done", f"{feats.shape[0]} x {feats.shape[1]}")


def similarity_block(
    ctx: Context, d: DatasetSpec, metric, subset: SubsetRecord,  # noqa: ANN001 - a Metric
    pairs: Sequence[tuple[str, str]],
) -> Outcome:
    """Compute and store one block of pairs of one dataset and metric from stored features."""
    from simcons.metrics import all_pairs

    ctx.store.ensure_metric(metric.slug, metric.kind, metric.parameters())
    feats, runs = load_dataset_features(ctx, sorted({k for p in pairs for k in p}), d, subset)
    values = all_pairs(feats, metric, list(pairs), device=ctx.device, progress=ctx.progress)
    n = next(iter(feats.values())).shape[0]
    ctx.store.upsert_pairs(d.key, metric.slug, [
        PairValue(a, b, v, n_samples=n, extraction_a=runs[a], extraction_b=runs[b])
        for (a, b), v in values.items()
    ], subset_id=subset.id)
    return Outcome(f"similarity {metric.slug} on {d.key}", "done", f"{len(values)} pairs")


def all_pairs_of(models: Sequence[str]) -> list[tuple[str, str]]:
    """Every unordered pair (a < b) of these models."""
    keys = sorted(set(models))
    return [(a, b) for i, a in enumerate(keys) for b in keys[i + 1:]]


def missing_pairs(
    ctx: Context, models: Sequence[str], d: DatasetSpec, metric_slug: str, subset: SubsetRecord
) -> list[tuple[str, str]]:
    """Pairs of these models with no current value for this dataset and metric.

    A computed pair is current when it was computed from the models' present extractions of
    this subset; a pair computed from other features (another subset, or a model whose catalog
    entry changed since) is computed again. Imported pairs count as stored.
    """
    if metric_slug not in ctx.store.metric_slugs():
        return all_pairs_of(models)
    stored = ctx.store.pair_provenance(d.key, metric_slug)
    current = {}
    for m in set(models):
        record = ctx.store.find_extraction(m, d.key, subset.split, subset.id)
        current[m] = record.id if record is not None and record.status == "done" else None
    out = []
    for a, b in all_pairs_of(models):
        prov = stored.get((a, b)) or stored.get((b, a))
        if prov is None or prov[2] == "computed" and {prov[0], prov[1]} != {current[a], current[b]}:
            out.append((a, b))
    return out


def _subset_options(subset: SubsetRecord) -> str:
    """The extract options that draw this subset again."""
    options = f"--split {subset.split} --max-samples {subset.max_samples or 0} --seed {subset.seed}"
    return options + (f" --per-class {subset.per_class}" if subset.per_class else "")


def stored_features(ctx: Context, model: str, d: DatasetSpec, subset: SubsetRecord):  # noqa: ANN201
    """(FeatureFile, extraction id) of one finished extraction, read and checked."""
    from simcons.extract.features import read_features

    record = ctx.store.find_extraction(model, d.key, subset.split, subset.id)
    if record is None or record.status != "done":
        raise StoreError(
            f"no finished extraction of {model} on {d.key} [{subset.split}]; run "
            f"`simcons extract --models {model} --datasets {d.key} {_subset_options(subset)}` "
            "first"
        )
    path = ctx.home / record.path
    ff = read_features(path)
    spec = ctx.store.models([model])[0]
    expected = {"model": model, "dataset": d.key, "split": subset.split,
                "subset_fingerprint": subset.fingerprint,
                "model_fingerprint": model_fingerprint(spec)}
    wrong = {k: ff.attrs.get(k) for k, v in expected.items() if ff.attrs.get(k) != v}
    if wrong:
        raise StoreError(
            f"{path} does not hold what the store says ({model} on {d.key} [{subset.split}]): "
            + ", ".join(f"its {k} is {v!r}" for k, v in wrong.items())
            + f"; delete it and run `simcons extract --models {model} --datasets {d.key}` again"
        )
    return ff, record.id


def probe_one(
    ctx: Context, model: str, d: DatasetSpec, train: SubsetRecord, test: SubsetRecord,
    seed: int, config: dict[str, Any],
) -> Outcome:
    """Fit one linear probe (one seed) on stored train features, test it, and store the result."""
    from simcons.probes import ProbeConfig, fit_probe

    (tr, train_run), (te, test_run) = (stored_features(ctx, model, d, s) for s in (train, test))
    settings = ProbeConfig(**config)
    r = fit_probe(tr.features, tr.labels, te.features, te.labels, seed=seed, config=settings,
                  device=ctx.device)
    ctx.store.upsert_probe(ProbeValue(
        model=model, dataset=d.key, seed=seed, learning_rate=r.learning_rate,
        weight_decay=r.weight_decay, val_top1=r.val_top1, test_top1=r.test_top1,
        test_top5=r.test_top5, test_balanced_acc=r.test_balanced_acc, n_classes=r.n_classes,
        n_train=r.n_train, n_test=r.n_test, seconds=r.seconds,
        config={"settings": _jsonable(settings), "n_fits": r.n_fits, "search": r.search},
        train_extraction=train_run, test_extraction=test_run,
    ))
    return Outcome(f"probe {model} x {d.key} seed {seed}", "done", f"top-1 {r.test_top1:.4f}")


def _jsonable(config) -> dict[str, Any]:  # noqa: ANN001 - a ProbeConfig
    from dataclasses import asdict

    return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(config).items()}


def load_dataset_features(
    ctx: Context, models: Sequence[str], d: DatasetSpec, subset: SubsetRecord
) -> tuple[dict[str, np.ndarray], dict[str, int]]:
    """Features of these models on one subset, checked to hold the same samples in one order."""
    feats, runs, ids, first = {}, {}, None, ""
    for key in models:
        ff, runs[key] = stored_features(ctx, key, d, subset)
        if ids is None:
            ids, first = ff.sample_ids, key
        elif len(ff.sample_ids) != len(ids) or not np.array_equal(ff.sample_ids, ids):
            raise StoreError(
                f"{key} and {first} have different sample ids on {d.key} "
                f"({len(ff.sample_ids)} vs {len(ids)} samples); re-extract one of them"
            )
        feats[key] = ff.features
    return feats, runs


# ---- the grid, in this process ---------------------------------------------------------------


def run_extractions(
    ctx: Context, models: Sequence[ModelSpec], datasets: Sequence[DatasetSpec], rule: SubsetRule,
    *, batch_size: int = 64, log: Callable[[str], None] = print,
) -> list[Outcome]:
    """Extract every (model, dataset) not yet done; each model is loaded once for all datasets."""
    subsets = {d.key: resolve_subset(ctx, d, rule) for d in datasets}
    outcomes = []
    for spec in models:
        pending = [d for d in datasets if not extraction_done(ctx, spec.key, d.key,
                                                              subsets[d.key][0])]
        outcomes += [Outcome(f"extract {spec.key} x {d.key}", "skipped", "already done")
                     for d in datasets if d not in pending]
        if not pending:
            continue
        try:
            model = load_model(spec, ctx.device)
        except Exception as exc:  # noqa: BLE001 - recorded per run, the grid goes on
            for d in pending:
                run = ctx.store.start_extraction(spec.key, d.key, rule.split, subsets[d.key][0].id)
                ctx.store.fail_extraction(run, "".join(traceback.format_exception(exc)))
                outcomes.append(_failed(f"extract {spec.key} x {d.key}", exc, log))
            continue
        for d in pending:
            subset, images = subsets[d.key]
            try:
                outcomes.append(extract_one(ctx, model, spec, d, subset, images,
                                            batch_size=batch_size))
            except Exception as exc:  # noqa: BLE001 - recorded on the run, the grid goes on
                outcomes.append(_failed(f"extract {spec.key} x {d.key}", exc, log))
    return outcomes


def run_similarities(
    ctx: Context, models: Sequence[ModelSpec], datasets: Sequence[DatasetSpec], metrics: Sequence,
    rule: SubsetRule, *, recompute: bool = False, log: Callable[[str], None] = print,
) -> list[Outcome]:
    """Compute the pairs not yet stored, per dataset and metric, from the stored features."""
    if len({m.key for m in models}) < 2:
        raise StoreError("similarities are of model pairs: select at least two models")
    outcomes = []
    for d in datasets:
        subset, _ = resolve_subset(ctx, d, rule)
        for metric in metrics:
            what = f"similarity {metric.slug} on {d.key}"
            keys = [m.key for m in models]
            todo = all_pairs_of(keys) if recompute else missing_pairs(ctx, keys, d, metric.slug,
                                                                      subset)
            if not todo:
                outcomes.append(Outcome(what, "skipped", "all pairs already stored"))
                continue
            try:
                outcomes.append(similarity_block(ctx, d, metric, subset, todo))
            except Exception as exc:  # noqa: BLE001 - reported, the grid goes on
                outcomes.append(_failed(what, exc, log))
    return outcomes


def run_probes(
    ctx: Context, models: Sequence[ModelSpec], datasets: Sequence[DatasetSpec],
    setup: ProbeSetup, *, batch_size: int = 64, log: Callable[[str], None] = print,
) -> list[Outcome]:
    """Extract what the probes need (skipping what is done), then fit the probes not stored."""
    from tqdm import tqdm

    outcomes = run_extractions(ctx, models, datasets, setup.train, batch_size=batch_size, log=log)
    outcomes += run_extractions(ctx, models, datasets, setup.test, batch_size=batch_size, log=log)
    bar = tqdm(total=len(datasets) * len(models) * len(setup.seeds), desc="probes", unit="probe",
               disable=not ctx.progress)
    for d in datasets:
        train, _ = resolve_subset(ctx, d, setup.train)
        test, _ = resolve_subset(ctx, d, setup.test)
        for spec in models:
            have = set(ctx.store.probe_seeds(spec.key, d.key, train_subset=train.id,
                                             test_subset=test.id))
            for seed in setup.seeds:
                what = f"probe {spec.key} x {d.key} seed {seed}"
                bar.set_postfix_str(f"{spec.key} x {d.key} seed {seed}")
                if seed in have:
                    outcomes.append(Outcome(what, "skipped", "already stored"))
                else:
                    try:
                        outcomes.append(probe_one(ctx, spec.key, d, train, test, seed,
                                                  setup.config))
                    except Exception as exc:  # noqa: BLE001 - reported, the grid goes on
                        outcomes.append(_failed(what, exc, log))
                bar.update()
    bar.close()
    return outcomes


def _failed(what: str, exc: Exception, log: Callable[[str], None]) -> Outcome:
    log(f"FAILED {what}: {exc}")
    return Outcome(what, "failed", str(exc))
