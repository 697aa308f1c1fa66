"""load_model: the local and onnx loaders on real files, seeded controls, the demo models."""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from simcons.catalog.load import read_yaml
from simcons.catalog.specs import ModelSpec
from simcons.extract.errors import ExtractionError, MissingLibraryError
from simcons.extract.hooks import embedding_dim
from simcons.extract.loaders import (
    SSL_MODELS,
    ImageTransform,
    _align_transform,
    load_model,
    sha256_file,
)
from simcons.extract.runner import extract_features


def _demo_specs() -> tuple[ModelSpec, ...]:
    """The models of the packaged demo catalog."""
    data = resources.files("simcons.catalog") / "data" / "demo_models.yaml"
    with resources.as_file(data) as path:
        return read_yaml(Path(path)).models


DEMO_MODELS = _demo_specs()

CAT_CLASSES = set(range(281, 286))  # tabby, tiger cat, Persian, Siamese, Egyptian cat
FELIDS = set(range(281, 294))  # the cats above plus cougar, lynx, leopard, ..., cheetah


def _timm_spec(name: str, module: str, rule: str = "none", **params) -> ModelSpec:
    return ModelSpec(
        key=f"{name}-test", loader="timm", model_name=name, module_name=module,
        token_rule=rule, loader_params={"pretrained": False, **params},
    )


def test_local_loader_shapes_norms_and_provenance(local_spec, resnet18_weights, images):
    spec = local_spec(resnet18_weights)
    model = load_model(spec)
    feats = extract_features(model, spec, images, batch_size=2, progress=False)
    assert feats.shape == (len(images), 512) and feats.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(feats, axis=1), 1.0, atol=1e-5)
    assert model.weights_source == str(resnet18_weights)
    assert model.weights_sha256 == sha256_file(resnet18_weights)
    assert {"torch", "timm"} <= set(model.package_versions)
    assert json.loads(json.dumps(model.preprocessing))["crop"] == 224
    assert not model.module.training


def test_local_loader_is_deterministic_and_loads_the_weights(local_spec, resnet18_weights, images):
    spec = local_spec(resnet18_weights)
    first = extract_features(load_model(spec), spec, images, progress=False)
    second = extract_features(load_model(spec), spec, images, progress=False)
    np.testing.assert_array_equal(first, second)
    # The file holds timm's seed-0 initialisation: the seeded timm control gives the same.
    control = _timm_spec("resnet18", "global_pool", seed=0)
    same = extract_features(load_model(control), control, images, progress=False)
    np.testing.assert_array_equal(first, same)


def test_mismatched_weights_file_names_model_file_and_keys(local_spec, save_timm_state, tmp_path):
    other = save_timm_state("vit_tiny_patch16_224", tmp_path / "vit_tiny.pth")
    with pytest.raises(ExtractionError) as err:
        load_model(local_spec(other))
    msg = str(err.value)
    assert "resnet18-local" in msg and str(other) in msg
    assert "missing" in msg and "unexpected" in msg and "key_map" in msg


def test_key_map_renames_prefixes(local_spec, save_timm_state, tmp_path, images):
    path = save_timm_state("resnet18", tmp_path / "wrapped.pth", prefix="backbone.")
    with pytest.raises(ExtractionError, match="missing"):
        load_model(local_spec(path))
    spec = local_spec(path, key_map={"backbone.": ""})
    feats = extract_features(load_model(spec), spec, images[:2], progress=False)
    assert feats.shape == (2, 512)


def test_nested_checkpoint_is_unwrapped(local_spec, tmp_path, resnet18_weights):
    path = tmp_path / "lightning.ckpt"
    torch.save({"state_dict": torch.load(resnet18_weights, weights_only=True)}, path)
    assert load_model(local_spec(path)).weights_sha256 == sha256_file(path)


def test_missing_weights_file_and_package(local_spec, tmp_path):
    with pytest.raises(ExtractionError, match="does not exist"):
        load_model(local_spec(tmp_path / "absent.pth"))
    with pytest.raises(MissingLibraryError, match="no_such_package_xyz"):
        load_model(local_spec("pkg:no_such_package_xyz/w.pth"))


def test_unknown_model_names_suggest_close_ones():
    with pytest.raises(ExtractionError, match="resnet18"):
        load_model(_timm_spec("resnt18", "global_pool"))
    ssl = ModelSpec(key="x", loader="ssl", model_name="simclr-rn5", module_name="avgpool")
    with pytest.raises(ExtractionError, match="simclr-rn50"):
        load_model(ssl, pretrained=False)


def test_seeded_random_init_is_deterministic_and_keeps_global_rng():
    spec = _timm_spec("resnet18", "global_pool", seed=0)
    torch.manual_seed(5)
    expected = torch.rand(3)
    torch.manual_seed(5)
    a = load_model(spec).module.state_dict()
    assert torch.equal(torch.rand(3), expected)
    b = load_model(spec).module.state_dict()
    c = load_model(_timm_spec("resnet18", "global_pool", seed=1)).module.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(a["conv1.weight"], c["conv1.weight"])
    assert load_model(spec).weights_source == "random-init (seed 0)"


def test_each_loader_uses_the_models_own_normalisation():
    vit = load_model(_timm_spec("vit_tiny_patch16_224", "norm", "cls"))
    assert vit.preprocessing["mean"] == [0.5, 0.5, 0.5]
    assert vit.preprocessing["interpolation"] == "bicubic"
    tv = ModelSpec(key="r50", loader="torchvision", model_name="resnet50", module_name="avgpool")
    prep = load_model(tv, pretrained=False).preprocessing
    assert prep["mean"] == pytest.approx([0.485, 0.456, 0.406])
    assert (prep["resize"], prep["crop"]) == (256, 224)


def test_image_transform_bgr_nhwc(images):
    red = images[0].copy()
    red.paste((255, 0, 0), (0, 0, *red.size))
    bgr = ImageTransform(mean=(0, 0, 0), std=(1, 1, 1), pixel_scale=255.0,
                         channel_order="BGR", layout="NHWC")
    x = bgr(red)
    assert x.shape == (224, 224, 3)
    assert torch.allclose(x[..., 2], torch.tensor(255.0)) and float(x[..., :2].abs().max()) == 0
    with pytest.raises(ExtractionError, match="layout"):
        ImageTransform(layout="CHW")


def test_align_processor_normalisation():
    proc = SimpleNamespace(do_rescale=True, rescale_factor=1 / 127.5, rescale_offset=True,
                           do_normalize=False, image_mean=None, image_std=None, resample=2)
    t = _align_transform(proc)
    assert t.mean == pytest.approx((0.5,) * 3) and t.std == pytest.approx((0.5,) * 3)
    assert t.interpolation == "bilinear"


def test_ssl_table_covers_the_paper():
    from simcons.catalog.load import builtin_catalog

    names = {m.model_name for m in builtin_catalog("paper").models if m.loader == "ssl"}
    assert names <= set(SSL_MODELS)
    assert all(e.url or e.library == "timm" for e in SSL_MODELS.values())


@pytest.mark.parametrize("spec", DEMO_MODELS, ids=[m.key for m in DEMO_MODELS])
def test_demo_model_packaged_weights(spec, images):
    model = load_model(spec)
    feats = extract_features(model, spec, images[:3], progress=False)
    assert feats.shape == (3, spec.embedding_dim)
    np.testing.assert_allclose(np.linalg.norm(feats, axis=1), 1.0, atol=1e-5)
    assert embedding_dim(spec) == spec.embedding_dim
    if spec.attributes["objective"] != "Untrained":
        assert model.weights_sha256 and model.weights_source.endswith(
            spec.loader_params["weights"].rsplit("/", 1)[-1]
        )


def test_efficientnet_lite0_recognises_a_cat(cat_image):
    spec = next(m for m in DEMO_MODELS if m.key == "efficientnet-lite0")
    model = load_model(spec)
    with torch.inference_mode():
        logits = model.module(model.transform(cat_image)[None])
    top5 = logits[0].topk(5).indices.tolist()
    assert set(top5[:3]) <= CAT_CLASSES, top5
    assert len(set(top5) & FELIDS) >= 4, top5
