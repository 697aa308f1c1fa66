"""Bring catalogs and existing similarity results (the public code's layout) into the store."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from simcons.catalog import Catalog, read_catalog
from simcons.metrics import Metric
from simcons.storage import PairValue, ResultStore, StoreError

MATRIX_FILE = "similarity_matrix.pt"
IDS_FILE = "model_ids.txt"


@dataclass(frozen=True)
class IngestReport:
    """What one ingest call added or updated."""

    what: str
    added: int
    updated: int

    def line(self) -> str:
        """One human-readable line."""
        return f"{self.what}: {self.added} added, {self.updated} updated"


def ingest_catalog(store: ResultStore, source: str | Path) -> list[IngestReport]:
    """Upsert the models and datasets of a catalog (built-in name or file); never duplicates."""
    catalog: Catalog = read_catalog(source)
    reports = []
    if catalog.models:
        reports.append(IngestReport(f"{source} models", *store.upsert_models(catalog.models)))
    if catalog.datasets:
        reports.append(IngestReport(f"{source} datasets", *store.upsert_datasets(catalog.datasets)))
    if not reports:
        raise StoreError(f"catalog {source} holds no models and no datasets")
    return reports


def ingest_results(store: ResultStore, root: Path, *, replace: bool = False) -> list[IngestReport]:
    """Ingest every `<dataset>/<metric>/similarity_matrix.pt` + `model_ids.txt` under root.

    Every file is read and checked before anything is written. Pairs that simcons computed
    itself are kept unless `replace` is given.
    """
    root = Path(root)
    files = sorted(root.rglob(MATRIX_FILE))
    if not files:
        raise StoreError(
            f"no {MATRIX_FILE} under {root}; expected <dataset>/<metric_slug>/{MATRIX_FILE} "
            f"with {IDS_FILE} beside it"
        )
    datasets = {d.key: d for d in store.datasets()}
    by_path = {str(d.params.get("path")): d.key for d in datasets.values() if d.params.get("path")}
    known = {m.key for m in store.models()}
    batches = []
    for path in files:
        metric_dir = path.parent
        rel = metric_dir.parent.relative_to(root).as_posix()
        dataset = rel if rel in datasets else by_path.get(rel)
        if dataset is None:
            raise StoreError(
                f"{path}: dataset folder {rel!r} matches no stored dataset key or path; "
                "ingest the dataset catalog first (`simcons ingest paper`)"
            )
        pairs = read_matrix(metric_dir)
        unknown = sorted({k for p in pairs for k in (p.model_a, p.model_b)} - known)
        if unknown:
            raise StoreError(
                f"{metric_dir / IDS_FILE}: unknown model(s) {', '.join(map(repr, unknown[:5]))}; "
                "ingest their catalog first (`simcons ingest ...`)"
            )
        batches.append((path, dataset, Metric.from_slug(metric_dir.name), pairs))
    reports = []
    for path, dataset, metric, pairs in batches:
        store.ensure_metric(metric.slug, metric.kind, metric.parameters())
        before = _stored(store, dataset, metric.slug)
        computed = [p for p in pairs if before.get(frozenset((p.model_a, p.model_b))) == "computed"]
        if computed and not replace:
            raise StoreError(
                f"{path}: {len(computed)} of its pairs were computed by simcons on {dataset} "
                "and are kept; pass --replace to overwrite them with the imported values"
            )
    for path, dataset, metric, pairs in batches:
        before = _stored(store, dataset, metric.slug)
        store.upsert_pairs(dataset, metric.slug, pairs, source=f"imported:{path}")
        added = sum(frozenset((p.model_a, p.model_b)) not in before for p in pairs)
        reports.append(IngestReport(f"{dataset} {metric.slug}", added, len(pairs) - added))
    return reports


def _stored(store: ResultStore, dataset: str, metric: str) -> dict[frozenset, str]:
    """Source of each stored pair of one dataset and metric, keyed by the unordered pair."""
    return {frozenset(k): v[2] for k, v in store.pair_provenance(dataset, metric).items()}


def read_matrix(folder: Path) -> list[PairValue]:
    """The unordered pairs of one stored model-by-model matrix, validated."""
    import torch  # only this import path needs torch; the store itself never does

    ids_path = folder / IDS_FILE
    if not ids_path.exists():
        raise StoreError(f"{folder}: {IDS_FILE} is missing beside {MATRIX_FILE}")
    ids = [line.strip() for line in ids_path.read_text().splitlines() if line.strip()]
    try:
        matrix = torch.load(folder / MATRIX_FILE, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unreadable file gets the same clear message
        raise StoreError(f"{folder / MATRIX_FILE}: cannot be read as a tensor ({exc})") from exc
    if not isinstance(matrix, torch.Tensor):
        raise StoreError(
            f"{folder / MATRIX_FILE} holds a {type(matrix).__name__}, not a tensor of similarities"
        )
    values = matrix.double().numpy()
    n = len(ids)
    if values.shape != (n, n):
        raise StoreError(f"{folder}: matrix is {values.shape} but {IDS_FILE} lists {n} models")
    if len(set(ids)) != n:
        raise StoreError(f"{folder}: {IDS_FILE} lists a model twice")
    iu = np.triu_indices(n, k=1)
    upper = _one_triangle(values[iu], values.T[iu], folder)
    return [PairValue(ids[i], ids[j], float(v)) for i, j, v in zip(*iu, upper, strict=True)]


def _one_triangle(upper: np.ndarray, lower: np.ndarray, folder: Path) -> np.ndarray:
    """The pair values of a full symmetric matrix, or of the one filled triangle (other all 0)."""
    empty = [bool(np.all(t == 0)) for t in (upper, lower)]
    if empty[1] and not empty[0]:
        lower = upper
    elif empty[0] and not empty[1]:
        upper = lower
    if not np.all(np.isfinite(upper)):
        raise StoreError(f"{folder}: the matrix holds NaN or infinite similarities")
    if not np.allclose(upper, lower, rtol=0, atol=1e-6):
        raise StoreError(f"{folder}: the matrix is not symmetric; is it a similarity matrix?")
    if np.any(np.abs(upper) > 1 + 1e-9):
        raise StoreError(
            f"{folder}: similarities outside [-1, 1] (max |value| {np.abs(upper).max():.4g}); "
            "CKA and RSA values lie in [-1, 1]"
        )
    return upper
