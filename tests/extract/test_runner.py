"""extract_features: inputs it accepts, batching, normalisation, determinism, devices."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from simcons.catalog.specs import ModelSpec
from simcons.extract.loaders import load_model
from simcons.extract.runner import extract_features

SPEC = ModelSpec(key="vit-tiny-seed0", loader="timm", model_name="vit_tiny_patch16_224",
                 module_name="norm", token_rule="cls",
                 loader_params={"pretrained": False, "seed": 0}, embedding_dim=192)


class _Labelled:
    """A torch-Dataset-like sequence of (image, label)."""

    def __init__(self, images):
        self.images = images

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i):
        return self.images[i], i % 2


@pytest.fixture(scope="module")
def vit():
    return load_model(SPEC)


def test_unit_norm_float32_and_deterministic(vit, images):
    a = extract_features(vit, SPEC, images, batch_size=2, progress=False)
    b = extract_features(vit, SPEC, images, batch_size=2, progress=False)
    assert a.shape == (len(images), 192) and a.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(a, axis=1), 1.0, atol=1e-5)
    np.testing.assert_array_equal(a, b)


def test_accepts_images_pairs_and_datasets(vit, images):
    plain = extract_features(vit, SPEC, images, progress=False)
    pairs = extract_features(vit, SPEC, [(im, 0) for im in images], progress=False)
    dataset = extract_features(vit, SPEC, _Labelled(images), progress=False)
    np.testing.assert_array_equal(plain, pairs)
    np.testing.assert_array_equal(plain, dataset)


def test_batch_size_and_workers_do_not_change_features(vit, images):
    one = extract_features(vit, SPEC, images, batch_size=1, progress=False)
    many = extract_features(vit, SPEC, images, batch_size=4, num_workers=1, progress=False)
    np.testing.assert_allclose(one, many, atol=1e-5)


def test_empty_input_and_progress_bar(vit, images, capsys):
    assert extract_features(vit, SPEC, [], progress=False).shape == (0, 192)
    extract_features(vit, SPEC, images[:2], progress=True, desc="vit-on-demo")
    assert "vit-on-demo" in capsys.readouterr().err


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_matches_cpu(images):
    cpu = extract_features(load_model(SPEC), SPEC, images, progress=False)
    gpu_model = load_model(SPEC, device="cuda")
    assert next(gpu_model.module.parameters()).is_cuda
    gpu = extract_features(gpu_model, SPEC, images, device="cuda", progress=False)
    np.testing.assert_allclose(cpu, gpu, atol=1e-3)
