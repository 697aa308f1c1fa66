"""Catalogs of models and datasets: specs, and readers for CSV, YAML and the built-in catalogs."""

from simcons.catalog.load import builtin_catalog, read_catalog
from simcons.catalog.specs import Catalog, CatalogError, DatasetSpec, ModelSpec

__all__ = ["Catalog", "CatalogError", "DatasetSpec", "ModelSpec", "builtin_catalog", "read_catalog"]
