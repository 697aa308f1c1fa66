"""Read catalogs from CSV or YAML files, and the built-in `paper` and `demo` catalogs."""

from __future__ import annotations

import csv
import json
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from simcons.catalog.specs import CORE_ATTRIBUTES, Catalog, CatalogError, DatasetSpec, ModelSpec

BUILTIN = ("paper", "demo")

_MODEL_FIELDS = {
    "key",
    "loader",
    "model_name",
    "module_name",
    "token_rule",
    "loader_params",
    "embedding_dim",
    "n_params",
    "attributes",
}
_DATASET_FIELDS = {"key", "name", "category", "source", "params", "benchmark"}
_PAPER_TOKEN = {"cls_token": "cls", "avg_pool": "avg", "": "none"}


def builtin_catalog(name: str) -> Catalog:
    """Return a catalog shipped inside the package: `paper` (64 models, 23 datasets) or `demo`."""
    data = resources.files("simcons.catalog") / "data"
    if name == "paper":
        with (
            resources.as_file(data / "paper_models.csv") as m,
            resources.as_file(data / "paper_datasets.csv") as d,
        ):
            return Catalog(models=tuple(read_models_csv(m)), datasets=tuple(read_datasets_csv(d)))
    if name == "demo":
        with (
            resources.as_file(data / "demo_models.yaml") as m,
            resources.as_file(data / "demo_datasets.yaml") as d,
        ):
            return Catalog(models=read_yaml(m).models, datasets=read_yaml(d).datasets)
    raise CatalogError(f"unknown built-in catalog {name!r}; use one of {', '.join(BUILTIN)}")


def read_catalog(source: str | Path) -> Catalog:
    """Read a built-in catalog by name, or a YAML file, or a CSV of models or of datasets."""
    if str(source) in BUILTIN:
        return builtin_catalog(str(source))
    path = Path(source)
    if not path.exists():
        raise CatalogError(
            f"catalog {str(source)!r} is neither a file nor a built-in catalog "
            f"({', '.join(BUILTIN)})"
        )
    if path.suffix.lower() in (".yaml", ".yml"):
        return read_yaml(path)
    if path.suffix.lower() == ".csv":
        with path.open(newline="") as fh:
            header = next(csv.reader(fh), [])
        if "module_name" in header:
            return Catalog(models=tuple(read_models_csv(path)))
        if "category" in header:
            return Catalog(datasets=tuple(read_datasets_csv(path)))
        raise CatalogError(
            f"{path}: a models CSV needs a module_name column, a datasets CSV a category column"
        )
    raise CatalogError(f"{path}: catalogs are .yaml, .yml or .csv files")


def read_yaml(path: Path) -> Catalog:
    """Read `models:` and `datasets:` lists from a YAML file."""
    try:
        doc = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise CatalogError(f"{path}: not valid YAML ({exc})") from exc
    if not isinstance(doc, dict):
        raise CatalogError(f"{path}: expected a mapping with `models:` and/or `datasets:` lists")
    unknown = set(doc) - {"models", "datasets"}
    if unknown:
        raise CatalogError(f"{path}: unknown section(s) {', '.join(sorted(map(str, unknown)))}; "
                           "a catalog has `models:` and `datasets:`")
    models = tuple(model_from_mapping(m, where=f"{path}", strict=True)
                   for m in _entries(doc, "models", path))
    datasets = tuple(dataset_from_mapping(d, where=f"{path}")
                     for d in _entries(doc, "datasets", path))
    return Catalog(models=_unique(models, path), datasets=_unique(datasets, path))


def _entries(doc: dict, section: str, path: Path) -> list[dict]:
    """The mappings of one section, each checked to be a mapping."""
    entries = doc.get(section) or []
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        raise CatalogError(f"{path}: `{section}:` must be a list of mappings "
                           f"(`- key: ...` entries)")
    return entries


def _unique(specs: tuple, where: Path | str) -> tuple:
    """The specs, refusing a key given twice in one catalog."""
    seen: set[str] = set()
    twice = sorted({s.key for s in specs if s.key in seen or seen.add(s.key)})
    if twice:
        raise CatalogError(f"{where}: key(s) given twice: {', '.join(twice)}")
    return specs


def read_models_csv(path: Path) -> list[ModelSpec]:
    """Read models from a CSV: simcons' own columns, or the paper's (with a `source` column)."""
    rows = _csv_rows(path)
    return list(_unique(tuple(
        (_paper_model(row) if "source" in row else model_from_mapping(row, where=str(path)))
        for row in rows
    ), path))


def _csv_rows(path: Path) -> list[dict[str, str]]:
    """The rows of a UTF-8 CSV file as mappings."""
    try:
        with Path(path).open(newline="", encoding="utf-8") as fh:
            return list(csv.DictReader(fh))
    except UnicodeDecodeError as exc:
        raise CatalogError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start}); "
                           "save the CSV as UTF-8") from exc


def read_datasets_csv(path: Path) -> list[DatasetSpec]:
    """Read datasets from a CSV: simcons' own columns, or the paper's (no `source` column)."""
    return list(_unique(tuple(
        dataset_from_mapping(row if row.get("source") else _paper_dataset(row), where=str(path))
        for row in _csv_rows(path)
    ), path))


def model_from_mapping(row: dict[str, Any], where: str, *, strict: bool = False) -> ModelSpec:
    """Build a ModelSpec from a YAML mapping (strict: unknown fields refused) or a CSV row
    (unknown columns become attributes)."""
    key = str(row.get("key") or "").strip()
    missing = [f for f in ("key", "loader", "model_name", "module_name") if not row.get(f)]
    if missing:
        raise CatalogError(f"{where}: model {key or '?'} lacks {', '.join(missing)}")
    extra = {k: v for k, v in row.items() if k not in _MODEL_FIELDS}
    if strict and extra:
        raise CatalogError(f"{where}: model {key}: unknown field(s) {', '.join(map(str, extra))}; "
                           "put attributes under `attributes:`")
    if None in extra:
        raise CatalogError(f"{where}: model {key}: the row has more fields than the header")
    for name in ("key", "loader", "model_name", "module_name", "token_rule"):
        if row.get(name) is not None and not isinstance(row[name], str):
            raise CatalogError(f"{where}: model {key}: {name} must be text, "
                               f"not {type(row[name]).__name__}")
    if not isinstance(row.get("attributes") or {}, dict):
        raise CatalogError(f"{where}: model {key}: attributes must be a mapping name: value")
    attributes = dict(row.get("attributes") or {})
    attributes.update({k: v for k, v in extra.items() if v not in (None, "")})
    return ModelSpec(
        key=key,
        loader=str(row["loader"]),
        model_name=str(row["model_name"]),
        module_name=str(row["module_name"]),
        token_rule=str(row.get("token_rule") or "none"),
        loader_params=_json_field(row.get("loader_params"), f"{where}: model {key} loader_params"),
        attributes={str(k): str(v) for k, v in attributes.items()},
        embedding_dim=_int_or_none(row.get("embedding_dim"), f"{where}: model {key} embedding_dim"),
        n_params=_int_or_none(row.get("n_params"), f"{where}: model {key} n_params"),
    )


def dataset_from_mapping(row: dict[str, Any], where: str) -> DatasetSpec:
    """Build a DatasetSpec from a YAML mapping or CSV row."""
    key = str(row.get("key") or "").strip()
    missing = [f for f in ("key", "category", "source") if not row.get(f)]
    if missing:
        raise CatalogError(f"{where}: dataset {key or '?'} lacks {', '.join(missing)}")
    return DatasetSpec(
        key=key,
        name=str(row.get("name") or key),
        category=str(row["category"]),
        source=str(row["source"]),
        params=_json_field(row.get("params"), f"{where}: dataset {key} params"),
        benchmark=row.get("benchmark") or None,
    )


def _paper_model(row: dict[str, str]) -> ModelSpec:
    """Translate a row of the paper's model table into a ModelSpec."""
    params = _json_field(row.get("loader_params"), f"paper model {row['key']} loader_params")
    source, name = row["source"], row["model_name"]
    if source == "custom" and name == "OpenCLIP":
        loader = "open_clip"
    elif source == "custom" and name == "Kakaobrain_Align":
        loader, params = "hf_align", {"hub_id": "kakaobrain/align-base", **params}
    elif source in ("timm", "torchvision", "ssl"):
        loader = source
    else:
        raise CatalogError(f"paper model {row['key']}: unknown source {source!r}")
    return ModelSpec(
        key=row["key"],
        loader=loader,
        model_name=name,
        module_name=row["module_name"],
        token_rule=_PAPER_TOKEN.get(row.get("token_extraction") or "", "none"),
        loader_params=params,
        attributes={a: row[a] for a in CORE_ATTRIBUTES if row.get(a)},
        embedding_dim=_int_or_none(row.get("embedding_dim"), f"paper model {row['key']}"),
        n_params=_int_or_none(row.get("n_params"), f"paper model {row['key']}"),
    )


def _paper_dataset(row: dict[str, str]) -> dict[str, Any]:
    """The paper's datasets: CLIP-benchmark webdatasets, or image folders (Breeds, ImageNet)."""
    key = row["key"]
    if key.startswith("wds/"):
        # clip_benchmark names its shard folders wds_<name> with '/' turned into '-'.
        folder = "wds_" + key[len("wds/") :].replace("/", "-")
        return {**row, "source": "wds", "params": {"path": folder}}
    return {**row, "source": "imagefolder", "params": {"path": key}}


def _json_field(value: Any, what: str) -> dict[str, Any]:
    if value in (None, ""):
        return {}
    if isinstance(value, dict):
        return dict(value)
    try:
        parsed = json.loads(value)
    except (TypeError, json.JSONDecodeError) as exc:
        raise CatalogError(
            f'{what}: not valid JSON ({exc}); write it as {{"name": value}}'
        ) from exc
    if not isinstance(parsed, dict):
        raise CatalogError(f"{what}: expected a JSON object, got {type(parsed).__name__}")
    return parsed


def _int_or_none(value: Any, what: str) -> int | None:
    if value in (None, ""):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = float("nan")
    if not number.is_integer():
        raise CatalogError(f"{what}: {value!r} is not a whole number")
    return int(number)
