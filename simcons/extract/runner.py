"""Run a loaded model over a sequence of images and return unit-norm float32 features."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from simcons.catalog.specs import ModelSpec
from simcons.extract.hooks import forward_features
from simcons.extract.loaders import LoadedModel


class TransformedImages(Dataset):
    """Items of `images` (PIL images or (image, label) pairs) as transformed tensors."""

    def __init__(self, images: Sequence[Any], transform: Callable[[Any], torch.Tensor]) -> None:
        self.images = images
        self.transform = transform

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> torch.Tensor:
        item = self.images[index]
        image = item[0] if isinstance(item, (tuple, list)) else item
        return self.transform(image)


def extract_features(
    model: LoadedModel,
    spec: ModelSpec,
    images: Sequence[Any],
    *,
    batch_size: int = 64,
    device: str = "cpu",
    progress: bool = True,
    desc: str = "",
    num_workers: int = 0,
) -> np.ndarray:
    """Features of spec's layer for every image, L2-normalised per row, float32 (n, d)."""
    module = model.module
    if isinstance(module, nn.Module):
        module = module.to(device).eval()
    loader = DataLoader(
        TransformedImages(images, model.transform),
        batch_size=batch_size,
        shuffle=False,
        num_workers=num_workers,
    )
    chunks = []
    for batch in tqdm(loader, desc=desc or spec.key, disable=not progress, unit="batch"):
        feats = forward_features(module, spec, batch.to(device)).float()
        chunks.append(F.normalize(feats, dim=1).cpu().numpy())
    if not chunks:
        return np.zeros((0, spec.embedding_dim or 0), dtype=np.float32)
    return np.ascontiguousarray(np.concatenate(chunks), dtype=np.float32)
