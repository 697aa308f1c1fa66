"""The data flow over the store: extract features, then compute pair similarities, resumably.

Each step looks in the store first and does only the work that is not done yet; a failure is
recorded with its error and the other work goes on.
"""

from __future__ import annotations

import re
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from simcons.catalog import DatasetSpec, ModelSpec
from simcons.storage import ExtractionInfo, PairValue, ResultStore, StoreError, SubsetRecord

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

    def feature_path(self, model: str, dataset: str, split: str, subset: SubsetRecord) -> Path:
        """Relative path of one feature file under the data folder."""
        return (
            Path(FEATURES_DIR)
            / _safe(model)
            / _safe(dataset)
            / (f"{_safe(split)}-{subset.fingerprint[:16]}.h5")
        )


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
        spec.key,
        rule.split,
        [int(i) for i in indices],
        rule=rule.rule,
        max_samples=rule.max_samples,
        per_class=rule.per_class,
        seed=rule.seed,
    )
    return record, images.subset(indices)


def run_extractions(
    ctx: Context,
    models: Sequence[ModelSpec],
    datasets: Sequence[DatasetSpec],
    rule: SubsetRule,
    *,
    batch_size: int = 64,
    log: Callable[[str], None] = print,
) -> list[Outcome]:
    """Extract every (model, dataset) not yet done; each model is loaded once for all datasets."""
    subsets = {d.key: resolve_subset(ctx, d, rule) for d in datasets}
    outcomes = []
    for spec in models:
        pending = [d for d in datasets if not _extraction_done(ctx, spec, d, rule, subsets)]
        outcomes += [
            Outcome(f"extract {spec.key} x {d.key}", "skipped", "already done")
            for d in datasets
            if d not in pending
        ]
        if not pending:
            continue
        try:
            model = _load(spec, ctx.device)
        except Exception as exc:  # noqa: BLE001 - recorded per run, the grid goes on
            outcomes += [_fail(ctx, spec, d, rule, subsets, exc, log) for d in pending]
            continue
        for d in pending:
            outcomes.append(_extract_one(ctx, model, spec, d, rule, subsets, batch_size, log))
    return outcomes


def _load(spec: ModelSpec, device: str):  # noqa: ANN202 - a LoadedModel
    from simcons.extract.loaders import load_model

    return load_model(spec, pretrained=True, device=device)


def _extraction_done(ctx: Context, spec, d, rule, subsets) -> bool:  # noqa: ANN001
    record = ctx.store.find_extraction(spec.key, d.key, rule.split, subsets[d.key][0].id)
    return record is not None and record.status == "done" and (ctx.home / record.path).exists()


def _fail(ctx: Context, spec, d, rule, subsets, exc: Exception, log) -> Outcome:  # noqa: ANN001
    run_id = ctx.store.start_extraction(spec.key, d.key, rule.split, subsets[d.key][0].id)
    ctx.store.fail_extraction(run_id, "".join(traceback.format_exception(exc)))
    log(f"FAILED extract {spec.key} x {d.key}: {exc}")
    return Outcome(f"extract {spec.key} x {d.key}", "failed", str(exc))


def _extract_one(ctx: Context, model, spec, d, rule, subsets, batch_size, log) -> Outcome:  # noqa: ANN001
    """Extract one model on one dataset subset into its HDF5 file, then record it as done."""
    from simcons.extract.features import write_features
    from simcons.extract.runner import extract_features

    subset, images = subsets[d.key]
    what = f"extract {spec.key} x {d.key}"
    run_id = ctx.store.start_extraction(spec.key, d.key, rule.split, subset.id)
    try:
        feats = extract_features(
            model,
            spec,
            images,
            batch_size=batch_size,
            device=ctx.device,
            progress=ctx.progress,
            desc=f"{spec.key} x {d.key}",
        )
        rel = ctx.feature_path(spec.key, d.key, rule.split, subset)
        write_features(
            ctx.home / rel,
            feats,
            np.asarray(images.labels, dtype=np.int64),
            np.asarray(images.sample_ids),
            attrs={
                "model": spec.key,
                "dataset": d.key,
                "split": rule.split,
                "layer": spec.module_name,
                "token_rule": spec.token_rule,
                "subset_fingerprint": subset.fingerprint,
            },
        )
    except Exception as exc:  # noqa: BLE001 - recorded, the grid goes on
        ctx.store.fail_extraction(run_id, "".join(traceback.format_exception(exc)))
        log(f"FAILED {what}: {exc}")
        return Outcome(what, "failed", str(exc))
    ctx.store.finish_extraction(
        run_id,
        ExtractionInfo(
            path=rel.as_posix(),
            n_samples=int(feats.shape[0]),
            dim=int(feats.shape[1]),
            dtype=str(feats.dtype),
            preprocessing=model.preprocessing,
            weights_source=model.weights_source,
            weights_sha256=model.weights_sha256,
            package_versions=model.package_versions,
        ),
    )
    return Outcome(what, "done", f"{feats.shape[0]} x {feats.shape[1]}")


def run_similarities(
    ctx: Context,
    models: Sequence[ModelSpec],
    datasets: Sequence[DatasetSpec],
    metrics: Sequence,
    rule: SubsetRule,
    *,
    recompute: bool = False,
    log: Callable[[str], None] = print,
) -> list[Outcome]:
    """Compute the pairs not yet stored, per dataset and metric, from the stored features."""
    from simcons.metrics import all_pairs

    outcomes = []
    keys = sorted(m.key for m in models)
    wanted = [(a, b) for i, a in enumerate(keys) for b in keys[i + 1 :]]
    for d in datasets:
        subset, _ = resolve_subset(ctx, d, rule)
        for metric in metrics:
            what = f"similarity {metric.slug} on {d.key}"
            ctx.store.ensure_metric(metric.slug, metric.kind, metric.parameters())
            if recompute:
                ctx.store.delete_pairs(d.key, metric.slug)
            have = ctx.store.pair_values(d.key, metric.slug)
            todo = [p for p in wanted if p not in have and p[::-1] not in have]
            if not todo:
                outcomes.append(Outcome(what, "skipped", f"{len(wanted)} pairs already stored"))
                continue
            try:
                feats, runs = load_dataset_features(
                    ctx, sorted({k for p in todo for k in p}), d, rule, subset
                )
                values = all_pairs(feats, metric, todo, device=ctx.device, progress=ctx.progress)
            except Exception as exc:  # noqa: BLE001 - reported, the grid goes on
                log(f"FAILED {what}: {exc}")
                outcomes.append(Outcome(what, "failed", str(exc)))
                continue
            n = next(iter(feats.values())).shape[0]
            ctx.store.upsert_pairs(
                d.key,
                metric.slug,
                [
                    PairValue(a, b, v, n_samples=n, extraction_a=runs[a], extraction_b=runs[b])
                    for (a, b), v in values.items()
                ],
                subset_id=subset.id,
            )
            outcomes.append(Outcome(what, "done", f"{len(values)} pairs"))
    return outcomes


def load_dataset_features(
    ctx: Context, models: Sequence[str], d: DatasetSpec, rule: SubsetRule, subset: SubsetRecord
) -> tuple[dict[str, np.ndarray], dict[str, int]]:
    """Features of these models on one subset, checked to hold the same samples in one order."""
    from simcons.extract.features import read_features

    feats, runs, ids = {}, {}, None
    for key in models:
        record = ctx.store.find_extraction(key, d.key, rule.split, subset.id)
        if record is None or record.status != "done":
            raise StoreError(
                f"no finished extraction of {key} on {d.key} [{rule.split}]; run "
                f"`simcons extract --models {key} --datasets {d.key}` first"
            )
        ff = read_features(ctx.home / record.path)
        if ids is None:
            ids, first = ff.sample_ids, key
        elif len(ff.sample_ids) != len(ids) or not np.array_equal(ff.sample_ids, ids):
            raise StoreError(
                f"{key} and {first} have different sample ids on {d.key} "
                f"({len(ff.sample_ids)} vs {len(ids)} samples); re-extract one of them"
            )
        feats[key], runs[key] = ff.features, record.id
    return feats, runs
