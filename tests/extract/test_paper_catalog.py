"""Every paper model's architecture, built without weights, yields its catalogued dimension."""

from __future__ import annotations

import pytest

from simcons.catalog.load import builtin_catalog
from simcons.extract.errors import MissingLibraryError
from simcons.extract.hooks import embedding_dim

PAPER_MODELS = builtin_catalog("paper").models


def test_paper_catalog_has_64_models():
    assert len(PAPER_MODELS) == 64


@pytest.mark.parametrize("spec", PAPER_MODELS, ids=[m.key for m in PAPER_MODELS])
def test_layer_and_token_rule_give_catalogued_dim(spec):
    try:
        dim = embedding_dim(spec)  # meta device: no weights, no memory (EVA01-g has 1B params)
    except MissingLibraryError as exc:
        pytest.skip(f"{spec.key}: library {exc.library} is not installed")
    assert dim == spec.embedding_dim
