"""Fixtures for the extraction tests: synthetic images, a cat photo, saved checkpoints."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from simcons.catalog.specs import ModelSpec


@pytest.fixture(scope="session")
def images() -> list[Image.Image]:
    """Five deterministic images of different sizes and modes (RGB, grey, RGBA)."""
    rng = np.random.RandomState(0)
    sizes = [(300, 260), (224, 224), (180, 400), (256, 256), (500, 333)]
    out = []
    for i, (w, h) in enumerate(sizes):
        pixels = rng.randint(0, 256, size=(h, w, 3), dtype=np.uint8)
        img = Image.fromarray(pixels)
        out.append(img.convert("L") if i == 1 else img.convert("RGBA") if i == 2 else img)
    return out


@pytest.fixture(scope="session")
def cat_image() -> Image.Image:
    """scikit-image's `chelsea`, a photo of a cat."""
    data = pytest.importorskip("skimage.data", reason="scikit-image gives the cat photo")
    return Image.fromarray(data.chelsea())


def _save_timm_state(name: str, path: Path, seed: int = 0, prefix: str = "") -> Path:
    """Save the state dict of a seeded random-init timm model to path."""
    import timm

    torch.manual_seed(seed)
    model = timm.create_model(name, pretrained=False)
    torch.save({prefix + k: v for k, v in model.state_dict().items()}, path)
    return path


@pytest.fixture(scope="session")
def save_timm_state() -> Callable[..., Path]:
    """save_timm_state(name, path, seed=0, prefix=''): a timm model's init as a checkpoint file."""
    return _save_timm_state


@pytest.fixture(scope="session")
def resnet18_weights(tmp_path_factory) -> Path:
    """A resnet18 checkpoint (timm, random init, seed 0) as a user's downloaded file."""
    return _save_timm_state("resnet18", tmp_path_factory.mktemp("weights") / "resnet18.pth")


def _local_spec(weights: Path | str, **params) -> ModelSpec:
    """A `local`-loader spec for a timm resnet18 checkpoint."""
    return ModelSpec(
        key="resnet18-local",
        loader="local",
        model_name="resnet18",
        module_name="global_pool",
        token_rule="none",
        loader_params={"builder": "timm", "arch": "resnet18", "weights": str(weights), **params},
        embedding_dim=512,
    )


@pytest.fixture(scope="session")
def local_spec() -> Callable[..., ModelSpec]:
    """local_spec(weights, **loader_params): a `local` spec for a timm resnet18 checkpoint."""
    return _local_spec
