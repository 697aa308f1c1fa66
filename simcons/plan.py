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
from simcons.workflow import Context, SubsetRule, extraction_done, missing_pairs, resolve_subset

EXTRACT, SIMILARITY = "extract", "similarity"


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
    max_attempts: int = 3,
) -> PlanReport:
    """Queue extractions and similarity blocks that are neither stored nor queued yet."""
    queued: dict[str, int] = {}
    already: dict[str, int] = {}
    subsets = {d.key: resolve_subset(ctx, d, rule)[0] for d in datasets}
    extract_jobs, extract_keys = _extraction_jobs(ctx, queue, models, datasets, subsets, already)
    queued[EXTRACT] = queue.enqueue(extract_jobs, max_attempts=max_attempts)
    sim_jobs = _similarity_jobs(ctx, queue, models, datasets, metrics, subsets, extract_keys,
                                block_pairs, already)
    queued[SIMILARITY] = queue.enqueue(sim_jobs, max_attempts=max_attempts)
    return PlanReport(queued=queued, already=already)


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
            missing = missing_pairs(ctx, keys, d, metric.slug)
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
