"""Model and dataset specifications: what a catalog entry says, independent of any store."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

#: Attribute names the paper groups models by; catalogs may add others.
CORE_ATTRIBUTES = (
    "objective",
    "training_data",
    "training_data_class",
    "architecture",
    "architecture_class",
    "size_class",
)

#: Loaders the extraction layer knows (see simcons.extract.loaders).
LOADERS = ("timm", "torchvision", "open_clip", "ssl", "hf_align", "local", "onnx")

#: Token rules: take the CLS token, average over tokens/positions, or use the output as is.
TOKEN_RULES = ("cls", "avg", "none")

#: Dataset sources the extraction layer knows (see simcons.extract.datasets).
DATASET_SOURCES = ("wds", "imagefolder", "demo")


class CatalogError(ValueError):
    """A catalog entry is malformed; the message names the entry and the fix."""


@dataclass(frozen=True)
class ModelSpec:
    """One model: how to load it, where to read features, and its attributes."""

    key: str
    loader: str
    model_name: str
    module_name: str
    token_rule: str = "none"
    loader_params: dict[str, Any] = field(default_factory=dict)
    attributes: dict[str, str] = field(default_factory=dict)
    embedding_dim: int | None = None
    n_params: int | None = None

    def __post_init__(self) -> None:
        if not self.key:
            raise CatalogError("a model entry has an empty key; give every model a unique key")
        if self.loader not in LOADERS:
            raise CatalogError(
                f"model {self.key!r}: unknown loader {self.loader!r}; "
                f"use one of {', '.join(LOADERS)}"
            )
        if self.token_rule not in TOKEN_RULES:
            raise CatalogError(
                f"model {self.key!r}: unknown token rule {self.token_rule!r}; "
                f"use one of {', '.join(TOKEN_RULES)}"
            )
        if not self.module_name:
            raise CatalogError(f"model {self.key!r}: module_name is empty; name the layer to hook")


def model_fingerprint(spec: ModelSpec) -> str:
    """sha256 of what determines a model's features: loader, name, layer, token rule, params."""
    ident = {
        "loader": spec.loader, "model_name": spec.model_name, "module_name": spec.module_name,
        "token_rule": spec.token_rule, "loader_params": spec.loader_params,
    }
    return hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest()


@dataclass(frozen=True)
class DatasetSpec:
    """One dataset: where its images come from and its category."""

    key: str
    name: str
    category: str
    source: str
    params: dict[str, Any] = field(default_factory=dict)
    benchmark: str | None = None

    def __post_init__(self) -> None:
        if not self.key:
            raise CatalogError("a dataset entry has an empty key; give every dataset a unique key")
        if self.source not in DATASET_SOURCES:
            raise CatalogError(
                f"dataset {self.key!r}: unknown source {self.source!r}; "
                f"use one of {', '.join(DATASET_SOURCES)}"
            )


@dataclass(frozen=True)
class Catalog:
    """A set of models and datasets, as read from a file or a built-in catalog."""

    models: tuple[ModelSpec, ...] = ()
    datasets: tuple[DatasetSpec, ...] = ()

    def model(self, key: str) -> ModelSpec:
        """Return the model with this key, or raise naming the known keys."""
        for spec in self.models:
            if spec.key == key:
                return spec
        raise CatalogError(f"unknown model {key!r}; known: {_preview(m.key for m in self.models)}")

    def dataset(self, key: str) -> DatasetSpec:
        """Return the dataset with this key, or raise naming the known keys."""
        for spec in self.datasets:
            if spec.key == key:
                return spec
        raise CatalogError(
            f"unknown dataset {key!r}; known: {_preview(d.key for d in self.datasets)}"
        )


def _preview(keys: Any, limit: int = 12) -> str:
    keys = list(keys)
    shown = ", ".join(keys[:limit])
    return shown + (f", ... ({len(keys)} in all)" if len(keys) > limit else "") if keys else "none"
