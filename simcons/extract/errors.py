"""Errors raised while loading models, extracting features and reading feature files."""

from __future__ import annotations


class ExtractionError(ValueError):
    """A model, layer or feature batch cannot be used; the message names it and the fix."""


class MissingLibraryError(ExtractionError):
    """A model needs a library that is not installed; `library` names its distribution."""

    def __init__(self, library: str, model_key: str, extra: str = "") -> None:
        self.library = library
        hint = f" (pip install 'simcons[{extra}]')" if extra else f" (pip install {library})"
        super().__init__(f"model {model_key!r} needs the library {library!r}; install it{hint}")


class FeatureFileError(ValueError):
    """A feature file is missing, half-written or corrupt; the message says how to redo it."""
