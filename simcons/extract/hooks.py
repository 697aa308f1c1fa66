"""Read one layer's output with a forward hook and reduce it to one vector per image.

Token rules: ``cls`` takes ``output[:, 0]`` of a (batch, tokens, dim) tensor; ``avg`` averages
over all tokens of a 3-D output or over the spatial dims (2, 3) of a (batch, C, H, W) output;
``none`` uses the output as is, squeezing (batch, C, 1, 1) to (batch, C).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from simcons.catalog.specs import ModelSpec
from simcons.extract.errors import ExtractionError
from simcons.extract.loaders import find_module, load_model


def apply_token_rule(output: torch.Tensor, spec: ModelSpec) -> torch.Tensor:
    """Reduce a layer output to (batch, dim) by spec.token_rule, or explain which rule fits."""
    rule, shape = spec.token_rule, tuple(output.shape)
    reduced = None
    if rule == "cls" and output.dim() == 3:
        reduced = output[:, 0]
    elif rule == "avg" and output.dim() in (3, 4):
        reduced = output.mean(dim=1 if output.dim() == 3 else (2, 3))
    elif rule == "none" and output.dim() == 2:
        reduced = output
    elif rule == "none" and output.dim() == 4 and shape[2:] == (1, 1):
        reduced = output.flatten(1)
    if reduced is None:
        raise ExtractionError(
            f"model {spec.key!r}, layer {spec.module_name!r}: output shape {shape} with token "
            f"rule {rule!r} is not (batch, dim); {_suggest_rule(output.dim(), rule)}"
        )
    return reduced


def _suggest_rule(ndim: int, rule: str) -> str:
    """Which token rule fixes an output with ndim dimensions."""
    if ndim == 3:
        return "use token_rule 'cls' (first token) or 'avg' (mean over tokens)"
    if ndim == 4:
        return "use token_rule 'avg' (mean over the spatial dims)"
    if ndim == 2:
        return "it is already one vector per image: use token_rule 'none'"
    return f"no token rule reduces a {ndim}-D output: hook another layer (not {rule!r})"


def _first_tensor(output: Any, spec: ModelSpec) -> torch.Tensor:
    """The tensor a module returned (the first element of a tuple output)."""
    if isinstance(output, (tuple, list)) and output:
        output = output[0]
    if not isinstance(output, torch.Tensor):
        raise ExtractionError(
            f"model {spec.key!r}, layer {spec.module_name!r} returns {type(output).__name__}, "
            "not a tensor; hook a layer that outputs a tensor"
        )
    return output


def forward_features(
    module: nn.Module | Any, spec: ModelSpec, batch: torch.Tensor
) -> torch.Tensor:
    """Run a batch through the model and return the hooked layer's (batch, dim) output."""
    if not isinstance(module, nn.Module):
        with torch.inference_mode():
            return apply_token_rule(module.features(batch), spec)
    target = find_module(module, spec)
    captured: list[torch.Tensor] = []
    handle = target.register_forward_hook(
        lambda _m, _i, out: captured.append(_first_tensor(out, spec))
    )
    module.eval()
    try:
        with torch.inference_mode():
            module(batch)
    finally:
        handle.remove()
    if not captured:
        raise ExtractionError(
            f"model {spec.key!r}: layer {spec.module_name!r} was not called in the forward "
            "pass; choose a layer the model uses"
        )
    return apply_token_rule(captured[-1], spec)


def embedding_dim(spec: ModelSpec) -> int:
    """Feature dimension of spec's layer, from the architecture alone on the meta device."""
    with torch.device("meta"):
        model = load_model(spec, pretrained=False, device="meta")
        shape = model.transform.input_shape(1)
        on_cpu = not isinstance(model.module, nn.Module)
        batch = torch.zeros(shape, device="cpu" if on_cpu else "meta")
        return int(forward_features(model.module, spec, batch).shape[1])
