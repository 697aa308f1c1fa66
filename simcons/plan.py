"""Queue the work for chosen models, datasets and metrics: only what is neither stored nor queued.

Planning twice queues nothing new; a plan that grows (a new model, dataset or metric) queues only
the difference: the new extractions, and per dataset and metric one block of the new pairs.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass

from simcons.catalog import DatasetSpec, ModelSpec
from simcons.storage import SubsetRecord
from simcons.storage.jobs import JobQueue, NewJob
from simcons.workflow import (
    Context,
    ProbeSetup,
    SubsetRule,
    extraction_done,
    missing_pairs,
    resolve_subset,
)

EXTRACT, SIMILARITY, PROBE = "extract", "similarity", "probe"


@dataclass(frozen=True)
class PlanReport:
    """How many jobs of each kind a plan queued."""

    queued: dict[str, int]
    already: dict[str, int]

    def lines(self) -> list[str]:
        """Human-readable lines, one per kind."""
        kinds = sorted(set(self.queued) | set(self.already))
        return [f"{k}: {self.queued.get(k, 0)} queued, {self.already.get(k, 0)} already stored "
                "or queued" for k in kinds]


def extraction_key(model: str, dataset: str, subset: SubsetRecord) -> str:
    """The unique key of one extraction job."""
    return f"{EXTRACT}/{model}/{dataset}/{subset.split}/{subset.fingerprint[:16]}"


def plan(
    ctx: Context, queue: JobQueue, models: Sequence[ModelSpec], datasets: Sequence[DatasetSpec],
    metrics: Sequence, rule: SubsetRule, *, block_pairs: int | None = None,
    probes: ProbeSetup | None = None, max_attempts: int = 3,
) -> PlanReport:
    """Queue extractions, similarity blocks and probes that are neither stored nor queued."""
    queued: dict[str, int] = {}
    already: dict[str, int] = {}
    extract_jobs: list[NewJob] = []
    extract_keys: set[str] = set()
    rules = [rule] + ([probes.train, probes.test] if probes else [])
    subsets: dict[SubsetRule, dict[str, SubsetRecord]] = {}
    for r in dict.fromkeys(rules):
        subsets[r] = {d.key: resolve_subset(ctx, d, r)[0] for d in datasets}
        jobs, keys = _extraction_jobs(ctx, queue, models, datasets, subsets[r], already)
        extract_jobs += [j for j in jobs if j.key not in extract_keys]
        extract_keys |= keys
    queued[EXTRACT] = queue.enqueue(extract_jobs, max_attempts=max_attempts)
    if metrics:
        sim_jobs = _similarity_jobs(ctx, queue, models, datasets, metrics, subsets[rule],
                                    extract_keys, block_pairs, already)
        queued[SIMILARITY] = queue.enqueue(sim_jobs, max_attempts=max_attempts)
    if probes:
        probe_jobs = _probe_jobs(ctx, queue, models, datasets, probes, subsets, extract_keys,
                                 already)
        queued[PROBE] = queue.enqueue(probe_jobs, max_attempts=max_attempts)
    return PlanReport(queued=queued, already=already)


def _probe_jobs(ctx, queue, models, datasets, probes, subsets, extract_keys,  # noqa: ANN001
                already) -> list[NewJob]:  # noqa: ANN001
    """One job per (model, dataset, seed) not stored or queued, waiting for its two extractions."""
    queued_keys = queue.keys(PROBE)
    jobs = []
    for d in datasets:
        train, test = subsets[probes.train][d.key], subsets[probes.test][d.key]
        for spec in models:
            stored = set(ctx.store.probe_seeds(spec.key, d.key, train_subset=train.id,
                                               test_subset=test.id))
            for seed in probes.seeds:
                key = (f"{PROBE}/{spec.key}/{d.key}/seed{seed}/{train.fingerprint[:16]}/"
                       f"{test.fingerprint[:16]}")
                if key in queued_keys or seed in stored:
                    already[PROBE] = already.get(PROBE, 0) + 1
                    continue
                deps = tuple(k for k in (extraction_key(spec.key, d.key, s) for s in (train, test))
                             if k in extract_keys)
                jobs.append(NewJob(PROBE, key, {
                    "model": spec.key, "dataset": d.key, "seed": seed,
                    "train_subset_id": train.id, "test_subset_id": test.id,
                    "config": probes.config,
                }, depends_on=deps, priority=2))
    return jobs


def _extraction_jobs(ctx, queue, models, datasets, subsets, already):  # noqa: ANN001, ANN202
    """Jobs for extractions not done; returns them and every queued extraction key."""
    queued_keys = queue.keys(EXTRACT)
    jobs, keys = [], set()
    for spec in models:
        for d in datasets:
            subset = subsets[d.key]
            key = extraction_key(spec.key, d.key, subset)
            if key in queued_keys:
                keys.add(key)
                already[EXTRACT] = already.get(EXTRACT, 0) + 1
            elif extraction_done(ctx, spec.key, d.key, subset):
                already[EXTRACT] = already.get(EXTRACT, 0) + 1
            else:
                keys.add(key)
                jobs.append(NewJob(EXTRACT, key, {
                    "model": spec.key, "dataset": d.key, "subset_id": subset.id,
                }))
    return jobs, keys


def _similarity_jobs(ctx, queue, models, datasets, metrics, subsets, extract_keys,  # noqa: ANN001
                     block_pairs, already) -> list[NewJob]:  # noqa: ANN001
    """One job per block of pairs neither stored nor in a queued block."""
    covered: dict[tuple[str, str, int], set[tuple[str, str]]] = {}
    for _, payload in queue.payloads(SIMILARITY):
        slot = (payload["dataset"], payload["metric"], payload["subset_id"])
        covered.setdefault(slot, set()).update(tuple(p) for p in payload["pairs"])
    keys = [m.key for m in models]
    jobs = []
    for d in datasets:
        subset = subsets[d.key]
        for metric in metrics:
            done = covered.get((d.key, metric.slug, subset.id), set())
            missing = missing_pairs(ctx, keys, d, metric.slug, subset)
            todo = [p for p in missing if p not in done]
            already[SIMILARITY] = already.get(SIMILARITY, 0) + (len(missing) > len(todo))
            for block in _blocks(todo, block_pairs):
                jobs.append(_similarity_job(d, metric, subset, block, extract_keys))
    return jobs


def _blocks(pairs: list[tuple[str, str]], size: int | None) -> list[list[tuple[str, str]]]:
    if not pairs:
        return []
    size = size or len(pairs)
    return [pairs[i : i + size] for i in range(0, len(pairs), size)]


def _similarity_job(d: DatasetSpec, metric, subset: SubsetRecord,  # noqa: ANN001 - a Metric
                    block: list[tuple[str, str]], extract_keys: set[str]) -> NewJob:
    digest = hashlib.sha256(json.dumps(block).encode()).hexdigest()[:16]
    models = sorted({m for p in block for m in p})
    deps = tuple(k for k in (extraction_key(m, d.key, subset) for m in models)
                 if k in extract_keys)
    return NewJob(
        SIMILARITY,
        f"{SIMILARITY}/{metric.slug}/{d.key}/{subset.split}/{subset.fingerprint[:16]}/{digest}",
        {"dataset": d.key, "metric": metric.slug, "subset_id": subset.id,
         "pairs": [list(p) for p in block]},
        depends_on=deps,
        priority=1,
    )
