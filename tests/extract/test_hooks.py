"""Forward hooks and token rules: shapes, and errors that say which rule fits."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from simcons.catalog.specs import ModelSpec
from simcons.extract.errors import ExtractionError
from simcons.extract.hooks import apply_token_rule, embedding_dim, forward_features
from simcons.extract.loaders import load_model


def _spec(module: str, rule: str = "none", name: str = "resnet18") -> ModelSpec:
    return ModelSpec(key=f"{name}-hook", loader="timm", model_name=name, module_name=module,
                     token_rule=rule, loader_params={"pretrained": False, "seed": 0})


class _Tiny(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Conv2d(3, 4, 3)
        self.pair = nn.Identity()
        self.unused = nn.Linear(4, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.body(x)
        return self.pair(y), y


def test_token_rules_reduce_to_vectors():
    tokens = torch.arange(24.0).view(2, 3, 4)
    cls = apply_token_rule(tokens, _spec("x", "cls"))
    assert torch.equal(cls, tokens[:, 0])
    assert torch.equal(apply_token_rule(tokens, _spec("x", "avg")), tokens.mean(1))
    maps = torch.randn(2, 5, 3, 3)
    assert torch.equal(apply_token_rule(maps, _spec("x", "avg")), maps.mean((2, 3)))
    pooled = torch.randn(2, 5, 1, 1)
    assert apply_token_rule(pooled, _spec("x", "none")).shape == (2, 5)


@pytest.mark.parametrize(
    ("shape", "rule", "fix"),
    [((2, 5, 3, 3), "cls", "'avg'"), ((2, 5, 3, 3), "none", "'avg'"),
     ((2, 3, 4), "none", "'cls'"), ((2, 4), "cls", "'none'")],
)
def test_wrong_token_rule_is_explained(shape, rule, fix):
    with pytest.raises(ExtractionError) as err:
        apply_token_rule(torch.zeros(shape), _spec("layer9", rule))
    msg = str(err.value)
    assert "resnet18-hook" in msg and "layer9" in msg and str(shape) in msg and fix in msg


def test_unknown_module_suggests_close_names():
    with pytest.raises(ExtractionError) as err:
        load_model(_spec("global_poo"))
    assert "resnet18-hook" in str(err.value) and "global_pool" in str(err.value)


def test_real_layers_with_wrong_rules():
    batch = torch.zeros(1, 3, 224, 224)
    cnn = load_model(_spec("layer4", "cls")).module
    with pytest.raises(ExtractionError, match=r"\(1, 512, 7, 7\).*'avg'"):
        forward_features(cnn, _spec("layer4", "cls"), batch)
    assert forward_features(cnn, _spec("layer4", "avg"), batch).shape == (1, 512)
    vit = _spec("norm", "none", name="vit_tiny_patch16_224")
    with pytest.raises(ExtractionError, match=r"\(1, 197, 192\).*'cls'"):
        forward_features(load_model(vit).module, vit, batch)


def test_hook_is_removed_and_tuple_outputs_are_taken():
    model = _Tiny().eval()
    spec = ModelSpec(key="tiny", loader="local", model_name="tiny", module_name="body",
                     token_rule="avg")
    out = forward_features(model, spec, torch.randn(2, 3, 8, 8))
    assert out.shape == (2, 4) and not model.body._forward_hooks
    unused = ModelSpec(key="tiny", loader="local", model_name="tiny", module_name="unused")
    with pytest.raises(ExtractionError, match="not called"):
        forward_features(model, unused, torch.randn(1, 3, 8, 8))


def test_embedding_dim_on_meta_device():
    assert embedding_dim(_spec("global_pool")) == 512
    assert embedding_dim(_spec("norm", "cls", name="vit_tiny_patch16_224")) == 192
