"""Load a catalogued model with its weights and its own preprocessing.

`load_model(spec)` dispatches on `spec.loader`:

- ``timm``: ``timm.create_model(model_name, pretrained=..., **loader_params)``; ``seed`` seeds
  a random initialisation (controls); ``pretrained: false`` keeps it random even when weights
  are asked for.
- ``torchvision``: ``torchvision.models.get_model(model_name, weights=loader_params.weights)``.
- ``open_clip``: ``open_clip.create_model_and_transforms(variant, pretrained=dataset)``, its
  image tower.
- ``ssl``: the paper's self-supervised models (thingsvision's ``ssl`` source), see `SSL_MODELS`.
- ``hf_align``: ``transformers.AlignVisionModel`` (Kakaobrain ALIGN), ``loader_params.hub_id``.
- ``local``: a checkpoint the user downloaded: ``builder`` (timm | torchvision | python), ``arch``,
  optional ``kwargs`` (and ``args`` for python), ``weights`` (a path, or
  ``pkg:<package>/<path inside it>``),
  optional ``key_map`` {old_prefix: new_prefix} and ``strict`` (default true).
- ``onnx``: an onnxruntime session on ``weights``; the feature is the graph value named by
  ``module_name`` (exposed as an extra graph output when the file does not list it).

Every loader may override the preprocessing with loader_params ``resize``, ``crop``,
``interpolation``, ``mean``, ``std``, ``pixel_scale``, ``channel_order`` and ``layout``.
``pretrained=False`` builds the architecture only (random initialisation); inside
``with torch.device("meta"):`` and with ``device="meta"`` no memory is allocated.

Self-supervised checkpoints (``ssl``), the sources the paper's code (thingsvision 2.6) uses:

=========================  ==============================  ====================================
paper name                 architecture                    weights
=========================  ==============================  ====================================
dinov2-vit-{s,b,l,g}-p14   timm vit_*_patch14_dinov2       timm hub ``.lvd142m`` (the weights of
                           (img_size 224)                  torch.hub facebookresearch/dinov2)
dino-vit-{small,base}-p16  timm vit_*_patch16_224.dino     timm hub ``.dino`` (= dl.fbaipublicfiles
dino-vit-{small,base}-p8   timm vit_*_patch8_224.dino      .com/dino/dino_{deitsmall,vitbase}*)
mae-vit-{base,large}-p16   timm vit_*_patch16_224.mae      timm hub ``.mae`` (= dl.fbaipublicfiles
mae-vit-huge-p14           timm vit_huge_patch14_224.mae   .com/mae/pretrain/mae_pretrain_vit_*)
dino-xcit-*                timm xcit_*_224                 ``_DINO/dino_xcit_*_pretrain.pth``
simclr, mocov2, jigsaw,    torchvision resnet50,           VISSL model zoo ``_VISSL/...torch``
rotnet, swav, pirl -rn50   fc = Identity                   (trunk, ``_feature_blocks.`` stripped)
barlowtwins-rn50           torchvision resnet50            ``.../barlowtwins/ep1000_bs2048_lrw0.2
                                                           _lrb0.0048_lambd0.0051/resnet50.pth``
vicreg-rn50                torchvision resnet50            ``.../vicreg/resnet50.pth``
dino-rn50                  torchvision resnet50            ``_DINO/dino_resnet50_pretrain.pth``
=========================  ==============================  ====================================

Full URLs are in `SSL_MODELS`; ``loader_params.weights`` (a local file) replaces any of them.
"""

from __future__ import annotations

import difflib
import functools
import hashlib
import importlib
import importlib.metadata
import pickle
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import nn
from torchvision.transforms import InterpolationMode
from torchvision.transforms import functional as tf

from simcons.catalog.specs import ModelSpec
from simcons.extract.errors import ExtractionError, MissingLibraryError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

_VISSL = "https://dl.fbaipublicfiles.com/vissl/model_zoo"
_DINO = "https://dl.fbaipublicfiles.com/dino"
_FB = "https://dl.fbaipublicfiles.com"


@dataclass(frozen=True)
class SSLModel:
    """Where one of the paper's self-supervised models comes from."""

    library: str  # "timm" or "torchvision"
    arch: str
    url: str | None = None  # checkpoint URL; None: the timm hub weights of `arch`
    kwargs: dict[str, Any] = field(default_factory=dict)


def _vissl(path: str) -> SSLModel:
    return SSLModel("torchvision", "resnet50", f"{_VISSL}/{path}")


def _dinov2(size: str) -> SSLModel:
    return SSLModel("timm", f"vit_{size}_patch14_dinov2.lvd142m", kwargs={"img_size": 224})


#: The `ssl` loader's table: paper model name -> architecture and checkpoint.
SSL_MODELS: dict[str, SSLModel] = {
    "dinov2-vit-small-p14": _dinov2("small"),
    "dinov2-vit-base-p14": _dinov2("base"),
    "dinov2-vit-large-p14": _dinov2("large"),
    "dinov2-vit-giant-p14": _dinov2("giant"),
    "dino-vit-small-p16": SSLModel("timm", "vit_small_patch16_224.dino"),
    "dino-vit-base-p16": SSLModel("timm", "vit_base_patch16_224.dino"),
    "dino-vit-small-p8": SSLModel("timm", "vit_small_patch8_224.dino"),
    "dino-vit-base-p8": SSLModel("timm", "vit_base_patch8_224.dino"),
    "mae-vit-base-p16": SSLModel("timm", "vit_base_patch16_224.mae"),
    "mae-vit-large-p16": SSLModel("timm", "vit_large_patch16_224.mae"),
    "mae-vit-huge-p14": SSLModel("timm", "vit_huge_patch14_224.mae"),
    "dino-xcit-small-12-p16": SSLModel(
        "timm", "xcit_small_12_p16_224",
        f"{_DINO}/dino_xcit_small_12_p16_pretrain/dino_xcit_small_12_p16_pretrain.pth",
    ),
    "dino-xcit-small-12-p8": SSLModel(
        "timm", "xcit_small_12_p8_224",
        f"{_DINO}/dino_xcit_small_12_p8_pretrain/dino_xcit_small_12_p8_pretrain.pth",
    ),
    "dino-xcit-medium-24-p16": SSLModel(
        "timm", "xcit_medium_24_p16_224",
        f"{_DINO}/dino_xcit_medium_24_p16_pretrain/dino_xcit_medium_24_p16_pretrain.pth",
    ),
    "dino-xcit-medium-24-p8": SSLModel(
        "timm", "xcit_medium_24_p8_224",
        f"{_DINO}/dino_xcit_medium_24_p8_pretrain/dino_xcit_medium_24_p8_pretrain.pth",
    ),
    "simclr-rn50": _vissl(
        "simclr_rn50_800ep_simclr_8node_resnet_16_07_20.7e8feed1/model_final_checkpoint_phase799.torch"
    ),
    "mocov2-rn50": _vissl(
        "moco_v2_1node_lr.03_step_b32_zero_init/model_final_checkpoint_phase199.torch"
    ),
    "jigsaw-rn50": _vissl(
        "jigsaw_rn50_in1k_ep105_perm2k_jigsaw_8gpu_resnet_17_07_20.db174a43/"
        "model_final_checkpoint_phase104.torch"
    ),
    "rotnet-rn50": _vissl(
        "rotnet_rn50_in1k_ep105_rotnet_8gpu_resnet_17_07_20.46bada9f/"
        "model_final_checkpoint_phase125.torch"
    ),
    "swav-rn50": _vissl(
        "swav_in1k_rn50_800ep_swav_8node_resnet_27_07_20.a0a6b676/"
        "model_final_checkpoint_phase799.torch"
    ),
    "pirl-rn50": _vissl(
        "pirl_jigsaw_4node_pirl_jigsaw_4node_resnet_22_07_20.34377f59/"
        "model_final_checkpoint_phase799.torch"
    ),
    "barlowtwins-rn50": SSLModel(
        "torchvision", "resnet50",
        f"{_FB}/barlowtwins/ep1000_bs2048_lrw0.2_lrb0.0048_lambd0.0051/resnet50.pth",
    ),
    "vicreg-rn50": SSLModel("torchvision", "resnet50", f"{_FB}/vicreg/resnet50.pth"),
    "dino-rn50": SSLModel(
        "torchvision", "resnet50", f"{_DINO}/dino_resnet50_pretrain/dino_resnet50_pretrain.pth"
    ),
}

#: Key prefixes stripped from downloaded checkpoints (VISSL trunks, DataParallel wrappers).
_SSL_KEY_MAP = {"_feature_blocks.": "", "module.": ""}


@dataclass(frozen=True)
class ImageTransform:
    """PIL image -> tensor: resize the short side, centre-crop, scale, reorder, normalise."""

    resize: int = 256
    crop: int = 224
    interpolation: str = "bilinear"
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD
    pixel_scale: float = 1.0  # 1.0: pixels in [0, 1]; 255.0: pixels in [0, 255]
    channel_order: str = "RGB"  # mean/std are given in this order
    layout: str = "NCHW"  # "NHWC" gives (H, W, C) tensors

    def __post_init__(self) -> None:
        if self.channel_order not in ("RGB", "BGR") or self.layout not in ("NCHW", "NHWC"):
            raise ExtractionError(
                f"preprocessing channel_order {self.channel_order!r} / layout {self.layout!r}: "
                "use channel_order RGB or BGR and layout NCHW or NHWC"
            )

    def __call__(self, image: Image.Image) -> torch.Tensor:
        """Transform one image."""
        img = image.convert("RGB")
        img = tf.resize(img, self.resize, interpolation=InterpolationMode(self.interpolation))
        x = tf.to_tensor(tf.center_crop(img, self.crop)) * self.pixel_scale
        if self.channel_order == "BGR":
            x = x.flip(0)
        mean = torch.tensor(self.mean, dtype=torch.float32).view(-1, 1, 1)
        std = torch.tensor(self.std, dtype=torch.float32).view(-1, 1, 1)
        x = (x - mean) / std
        return x.permute(1, 2, 0).contiguous() if self.layout == "NHWC" else x

    def input_shape(self, batch: int = 1) -> tuple[int, ...]:
        """Shape of a batch of transformed images."""
        if self.layout == "NHWC":
            return (batch, self.crop, self.crop, 3)
        return (batch, 3, self.crop, self.crop)

    def describe(self) -> dict[str, Any]:
        """JSON-able description (stored with the features)."""
        out = asdict(self)
        out["mean"], out["std"] = [float(v) for v in self.mean], [float(v) for v in self.std]
        return out


_PREP_KEYS = tuple(ImageTransform.__dataclass_fields__)


class OnnxFeatureModel:
    """An onnxruntime session that returns one named graph value for a batch."""

    def __init__(self, session: Any, input_name: str, output_name: str) -> None:
        self.session = session
        self.input_name = input_name
        self.output_name = output_name

    def features(self, batch: torch.Tensor) -> torch.Tensor:
        """Run the session on a batch and return the named output as a tensor on its device."""
        x = batch.detach().to("cpu", torch.float32).numpy()
        out = self.session.run([self.output_name], {self.input_name: x})[0]
        return torch.from_numpy(np.asarray(out)).to(batch.device)


@dataclass
class LoadedModel:
    """A model ready for extraction, with the facts needed to reproduce its features."""

    module: nn.Module | OnnxFeatureModel
    transform: ImageTransform
    weights_source: str
    weights_sha256: str | None
    package_versions: dict[str, str]
    preprocessing: dict[str, Any]


@dataclass
class _Built:
    module: nn.Module | OnnxFeatureModel
    transform: ImageTransform
    weights_source: str
    weights_file: Path | None = None
    packages: tuple[str, ...] = ("torch",)


def load_model(spec: ModelSpec, *, pretrained: bool = True, device: str = "cpu") -> LoadedModel:
    """Build the model of `spec` (with weights unless pretrained=False) in eval mode on device."""
    params = {k: v for k, v in spec.loader_params.items() if k not in _PREP_KEYS}
    built = _BUILDERS[spec.loader](spec, params, pretrained, device)
    overrides = {k: v for k, v in spec.loader_params.items() if k in _PREP_KEYS}
    for key in ("mean", "std"):
        if key in overrides:
            overrides[key] = tuple(float(v) for v in overrides[key])
    transform = replace(built.transform, **overrides)
    module = built.module
    if isinstance(module, nn.Module):
        if device != "meta":
            module = module.to(device)
        module.eval()
        find_module(module, spec)
    return LoadedModel(
        module=module,
        transform=transform,
        weights_source=built.weights_source,
        weights_sha256=sha256_file(built.weights_file) if built.weights_file else None,
        package_versions=package_versions(built.packages),
        preprocessing=transform.describe(),
    )


def find_module(model: nn.Module, spec: ModelSpec) -> nn.Module:
    """The submodule named spec.module_name, or an error suggesting close names."""
    modules = dict(model.named_modules())
    if spec.module_name in modules:
        return modules[spec.module_name]
    close = difflib.get_close_matches(spec.module_name, [n for n in modules if n], n=5, cutoff=0.5)
    hint = f"close names: {', '.join(close)}" if close else "list them with model.named_modules()"
    raise ExtractionError(
        f"model {spec.key!r} has no module {spec.module_name!r}; {hint}; "
        "fix module_name in the catalog"
    )


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def package_versions(names: Iterable[str]) -> dict[str, str]:
    """Installed versions of these distributions ('not installed' where absent)."""
    out = {}
    for name in dict.fromkeys(names):
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def _import(module: str, spec: ModelSpec, distribution: str | None = None) -> Any:
    """Import a library a loader needs, or raise naming it."""
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as exc:
        if exc.name and module.startswith(exc.name.split(".")[0]):
            raise MissingLibraryError(distribution or module.split(".")[0], spec.key) from exc
        raise


def _unknown_name(
    spec: ModelSpec, name: str, known: Iterable[str], library: str
) -> ExtractionError:
    """An unknown-model error listing close names the library knows."""
    close = difflib.get_close_matches(name, list(known), n=5, cutoff=0.6)
    hint = f"; close names: {', '.join(close)}" if close else ""
    return ExtractionError(f"model {spec.key!r}: {library} has no model {name!r}{hint}")


@contextmanager
def _seeded(seed: int | None) -> Iterator[None]:
    """Seed torch's generator for a deterministic initialisation without disturbing the caller."""
    if seed is None:
        yield
        return
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        yield


def _timm_transform(model: nn.Module, timm: Any) -> ImageTransform:
    cfg = timm.data.resolve_data_config({}, model=model)
    return ImageTransform(
        interpolation=cfg["interpolation"], mean=tuple(cfg["mean"]), std=tuple(cfg["std"])
    )


def _timm_source(model: nn.Module) -> str:
    cfg = getattr(model, "pretrained_cfg", {}) or {}
    if cfg.get("file"):
        return str(cfg["file"])
    if cfg.get("hf_hub_id"):
        return f"hf-hub:{cfg['hf_hub_id']}"
    return str(cfg.get("url") or "timm")


def _create_timm(spec: ModelSpec, name: str, **kwargs: Any) -> nn.Module:
    timm = _import("timm", spec)
    if not timm.is_model(name):
        raise _unknown_name(spec, name, timm.list_models(), "timm")
    return timm.create_model(name, **kwargs)


def _build_timm(spec: ModelSpec, params: dict, pretrained: bool, device: str) -> _Built:
    """timm.create_model, with an optional seeded random initialisation."""
    timm = _import("timm", spec)
    kwargs = dict(params)
    seed = kwargs.pop("seed", None)
    pretrained = bool(kwargs.pop("pretrained", True)) and pretrained
    with _seeded(seed):
        model = _create_timm(spec, spec.model_name, pretrained=pretrained, **kwargs)
    if pretrained:
        source = _timm_source(model)
    else:
        source = f"random-init (seed {seed})" if seed is not None else "random-init (unseeded)"
    return _Built(model, _timm_transform(model, timm), source, packages=("torch", "timm"))


def _torchvision_weights(spec: ModelSpec, name: str, choice: str) -> Any:
    models = _import("torchvision.models", spec, "torchvision")
    if name not in models.list_models():
        raise _unknown_name(spec, name, models.list_models(), "torchvision")
    enum = models.get_model_weights(name)
    try:
        return enum[choice]
    except KeyError as exc:
        raise ExtractionError(
            f"model {spec.key!r}: torchvision {name} has no weights {choice!r}; "
            f"use one of {', '.join(['DEFAULT', *enum.__members__])}"
        ) from exc


def _torchvision_transform(weights: Any) -> ImageTransform:
    preset = weights.transforms()
    return ImageTransform(
        interpolation=preset.interpolation.value, mean=tuple(preset.mean), std=tuple(preset.std)
    )


def _hub_file(url: str, file_name: str | None = None) -> Path:
    """Where torch.hub caches the download of url."""
    return Path(torch.hub.get_dir()) / "checkpoints" / (file_name or Path(url).name)


def _build_torchvision(spec: ModelSpec, params: dict, pretrained: bool, device: str) -> _Built:
    """torchvision.models.get_model with the named weights (DEFAULT unless given)."""
    models = _import("torchvision.models", spec, "torchvision")
    kwargs = dict(params)
    weights = _torchvision_weights(spec, spec.model_name, str(kwargs.pop("weights", "DEFAULT")))
    model = models.get_model(spec.model_name, weights=weights if pretrained else None, **kwargs)
    cached = _hub_file(weights.url) if pretrained else None
    return _Built(
        model,
        _torchvision_transform(weights),
        weights.url if pretrained else "random-init (unseeded)",
        cached if cached and cached.is_file() else None,
        ("torch", "torchvision"),
    )


class ImageTower(nn.Module):
    """Holds a CLIP image encoder as `visual`, so the paper's layer name resolves."""

    def __init__(self, visual: nn.Module) -> None:
        super().__init__()
        self.visual = visual

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Image embeddings (before the CLIP normalisation)."""
        return self.visual(images)


def _open_clip_transform(preprocess: Any) -> ImageTransform:
    """Mean, std and interpolation of open_clip's evaluation preprocessing."""
    from torchvision import transforms as tvt

    mean, std, interpolation = IMAGENET_MEAN, IMAGENET_STD, "bicubic"
    for step in getattr(preprocess, "transforms", []):
        if isinstance(step, tvt.Normalize):
            mean, std = tuple(step.mean), tuple(step.std)
        elif isinstance(step, tvt.Resize):
            interpolation = step.interpolation.value
    return ImageTransform(interpolation=interpolation, mean=mean, std=std)


def _build_open_clip(spec: ModelSpec, params: dict, pretrained: bool, device: str) -> _Built:
    """open_clip's image tower for loader_params variant and dataset."""
    open_clip = _import("open_clip", spec, "open_clip_torch")
    variant, dataset = params.get("variant"), params.get("dataset")
    if not variant:
        raise ExtractionError(f"model {spec.key!r}: open_clip needs loader_params.variant")
    if variant not in open_clip.list_models():
        raise _unknown_name(spec, variant, open_clip.list_models(), "open_clip")
    cfg = (open_clip.get_pretrained_cfg(variant, dataset) or {}) if dataset else {}
    tag = dataset if pretrained else None
    # Without weights, still preprocess as the named pretrained weights would (offline table).
    norm = {} if tag or "mean" not in cfg else {
        "image_mean": cfg["mean"], "image_std": cfg["std"],
        "image_interpolation": cfg.get("interpolation"),
    }
    model, _, preprocess = open_clip.create_model_and_transforms(
        variant, pretrained=tag, device=device, **norm
    )
    source = "random-init (unseeded)"
    if tag:
        source = f"hf-hub:{cfg['hf_hub']}" if cfg.get("hf_hub") else str(cfg.get("url", tag))
    return _Built(
        ImageTower(model.visual),
        _open_clip_transform(preprocess),
        source,
        packages=("torch", "open_clip_torch", "timm"),
    )


def _build_ssl(spec: ModelSpec, params: dict, pretrained: bool, device: str) -> _Built:
    """The paper's self-supervised models; weights from SSL_MODELS or loader_params.weights."""
    entry = SSL_MODELS.get(spec.model_name)
    if entry is None:
        raise _unknown_name(spec, spec.model_name, SSL_MODELS, "the ssl loader")
    local = resolve_weights(params["weights"], spec) if params.get("weights") else None
    if entry.library == "timm":
        return _build_ssl_timm(spec, entry, pretrained, local)
    models = _import("torchvision.models", spec, "torchvision")
    model = models.get_model(entry.arch, weights=None)
    model.fc = nn.Identity()
    transform = ImageTransform(mean=IMAGENET_MEAN, std=IMAGENET_STD)
    if not pretrained:
        return _Built(model, transform, "random-init (unseeded)", packages=("torch", "torchvision"))
    path = local or _download(entry.url, f"{spec.model_name}-{Path(entry.url).name}")
    state = _apply_key_map(_state_dict_of(_load_checkpoint(path, spec), spec, path), _SSL_KEY_MAP)
    load_state_dict_checked(model, state, spec, path, ignore_unexpected=("fc.",))
    return _Built(model, transform, str(local or entry.url), path, ("torch", "torchvision"))


def _build_ssl_timm(
    spec: ModelSpec, entry: SSLModel, pretrained: bool, local: Path | None
) -> _Built:
    """A timm architecture with its hub weights, a DINO checkpoint URL, or a local file."""
    timm = _import("timm", spec)
    kwargs: dict[str, Any] = dict(entry.kwargs)
    if pretrained and (local or entry.url):
        overlay = {"file": str(local)} if local else {"url": entry.url, "hf_hub_id": None}
        kwargs["pretrained_cfg_overlay"] = {**overlay, "num_classes": 0}
    model = _create_timm(spec, entry.arch, pretrained=pretrained, **kwargs)
    source = _timm_source(model) if pretrained else "random-init (unseeded)"
    cached = _hub_file(entry.url) if pretrained and entry.url and not local else None
    weights_file = local or (cached if cached and cached.is_file() else None)
    return _Built(model, _timm_transform(model, timm), source, weights_file, ("torch", "timm"))


def _align_transform(processor: Any) -> ImageTransform:
    """The normalisation of a transformers EfficientNet image processor, on [0, 1] pixels."""
    factor = 255.0 * (processor.rescale_factor if processor.do_rescale else 1.0 / 255.0)
    offset = 1.0 if getattr(processor, "rescale_offset", False) else 0.0
    mean = np.asarray(processor.image_mean if processor.do_normalize else [0.0] * 3, float)
    std = np.asarray(processor.image_std if processor.do_normalize else [1.0] * 3, float)
    resample = getattr(processor, "resample", None)
    if isinstance(resample, InterpolationMode):
        interpolation = resample.value
    else:
        code = Image.Resampling.BILINEAR if resample is None else int(resample)
        interpolation = Image.Resampling(code).name.lower()
    return ImageTransform(
        interpolation=interpolation,
        mean=tuple((mean + offset) / factor),
        std=tuple(std / factor),
    )


def _build_hf_align(spec: ModelSpec, params: dict, pretrained: bool, device: str) -> _Built:
    """Kakaobrain ALIGN's image tower (AlignVisionModel); `pooler` gives the 640-d embedding."""
    transformers = _import("transformers", spec)
    hub_id = params.get("hub_id", "kakaobrain/align-base")
    if pretrained:
        model = transformers.AlignVisionModel.from_pretrained(hub_id)
        transform = _align_transform(transformers.AutoImageProcessor.from_pretrained(hub_id))
        source = f"hf-hub:{hub_id}"
    else:
        # kakaobrain/align-base's vision config is AlignVisionConfig's defaults at 289 px;
        # its processor maps pixels to [-1, 1].
        model = transformers.AlignVisionModel(transformers.AlignVisionConfig(image_size=289))
        transform = ImageTransform(mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))
        source = "random-init (unseeded)"
    return _Built(model, transform, source, packages=("torch", "transformers"))


def resolve_weights(value: str, spec: ModelSpec) -> Path:
    """A weights path, or `pkg:<package>/<relative path>` inside an installed package."""
    if str(value).startswith("pkg:"):
        package, _, relative = str(value)[4:].partition("/")
        try:
            path = Path(str(resources.files(package).joinpath(relative)))
        except ModuleNotFoundError as exc:
            raise MissingLibraryError(package, spec.key) from exc
    else:
        path = Path(value).expanduser()
    if not path.is_file():
        raise ExtractionError(
            f"model {spec.key!r}: weights file {path} does not exist; "
            "download it or fix loader_params.weights"
        )
    return path


def _resolve_callable(target: str, spec: ModelSpec) -> Callable[..., nn.Module]:
    """'package.module:Class.method' -> the callable."""
    module_name, sep, attr_path = target.partition(":")
    if not sep or not attr_path:
        raise ExtractionError(
            f"model {spec.key!r}: python builder arch {target!r} must be 'module:callable'"
        )
    obj: Any = _import(module_name, spec)
    for attr in attr_path.split("."):
        if not hasattr(obj, attr):
            raise ExtractionError(f"model {spec.key!r}: {module_name} has no {attr_path!r}")
        obj = getattr(obj, attr)
    return obj


def _local_architecture(spec: ModelSpec, params: dict) -> tuple[nn.Module, ImageTransform, str]:
    """Build loader_params.arch with loader_params.builder; returns model, transform, package."""
    builder, arch = params.get("builder"), params.get("arch")
    if not arch:
        raise ExtractionError(f"model {spec.key!r}: the local loader needs loader_params.arch")
    args, kwargs = list(params.get("args") or []), dict(params.get("kwargs") or {})
    if builder == "timm":
        timm = _import("timm", spec)
        model = _create_timm(spec, arch, pretrained=False, **kwargs)
        return model, _timm_transform(model, timm), "timm"
    if builder == "torchvision":
        models = _import("torchvision.models", spec, "torchvision")
        if arch not in models.list_models():
            raise _unknown_name(spec, arch, models.list_models(), "torchvision")
        model = models.get_model(arch, weights=None, **kwargs)
        weights = models.get_model_weights(arch).DEFAULT
        return model, _torchvision_transform(weights), "torchvision"
    if builder == "python":
        model = _resolve_callable(arch, spec)(*args, **kwargs)
        return model, ImageTransform(), arch.split(":")[0].split(".")[0]
    raise ExtractionError(
        f"model {spec.key!r}: unknown local builder {builder!r}; use timm, torchvision or python"
    )


def _build_local(spec: ModelSpec, params: dict, pretrained: bool, device: str) -> _Built:
    """A user's checkpoint file loaded into an architecture built by timm, torchvision or code."""
    model, transform, package = _local_architecture(spec, params)
    packages = ("torch", *_distributions(package), *_weights_distributions(params))
    if not pretrained:
        return _Built(model, transform, "random-init (unseeded)", packages=packages)
    if not params.get("weights"):
        raise ExtractionError(f"model {spec.key!r}: the local loader needs loader_params.weights")
    path = resolve_weights(params["weights"], spec)
    state = _state_dict_of(_load_checkpoint(path, spec), spec, path)
    state = _apply_key_map(state, params.get("key_map") or {})
    load_state_dict_checked(model, state, spec, path, strict=bool(params.get("strict", True)))
    return _Built(model, transform, str(path), path, packages)


def _distributions(package: str) -> list[str]:
    """Distribution names that provide a top-level import package."""
    return _package_map().get(package, [package])


@functools.cache
def _package_map() -> dict[str, list[str]]:
    return dict(importlib.metadata.packages_distributions())


def _weights_distributions(params: dict) -> list[str]:
    value = str(params.get("weights") or "")
    return _distributions(value[4:].partition("/")[0]) if value.startswith("pkg:") else []


def _download(url: str, file_name: str) -> Path:
    """Download url into torch.hub's checkpoint cache (once) and return the file."""
    path = _hub_file(url, file_name)
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.hub.download_url_to_file(url, str(path), progress=True)
    return path


def _load_checkpoint(path: Path, spec: ModelSpec) -> Any:
    """torch.load with weights_only=True; a file with other pickled objects is refused."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise ExtractionError(
            f"model {spec.key!r}: {path} holds objects besides tensors and is not loaded "
            "(weights_only); if you trust it, re-save its state dict with torch.save and pass "
            f"that file as loader_params.weights ({exc})"
        ) from exc
    except (OSError, RuntimeError, EOFError) as exc:
        raise ExtractionError(
            f"model {spec.key!r}: cannot read weights file {path} ({exc}); "
            "download it again"
        ) from exc


def _state_dict_of(checkpoint: Any, spec: ModelSpec, path: Path) -> dict[str, torch.Tensor]:
    """The tensor mapping inside a checkpoint (plain, or under a VISSL/Lightning/DDP key)."""
    node = checkpoint
    for key in ("classy_state_dict", "base_model", "model", "trunk"):
        if isinstance(node, dict) and isinstance(node.get(key), dict):
            node = node[key]
    for key in ("state_dict", "model_state_dict"):
        if isinstance(node, dict) and isinstance(node.get(key), dict):
            node = node[key]
    if not isinstance(node, dict) or not all(isinstance(v, torch.Tensor) for v in node.values()):
        raise ExtractionError(
            f"model {spec.key!r}: {path} is not a state dict (a mapping of names to tensors)"
        )
    return node


def _apply_key_map(state: dict[str, Any], key_map: dict[str, str]) -> dict[str, Any]:
    """Replace the first matching old prefix of every key by its new prefix."""
    out = {}
    for key, value in state.items():
        for old, new in key_map.items():
            if key.startswith(old):
                key = new + key[len(old):]
                break
        out[key] = value
    return out


def load_state_dict_checked(
    model: nn.Module,
    state: dict[str, torch.Tensor],
    spec: ModelSpec,
    path: Path,
    *,
    strict: bool = True,
    ignore_unexpected: tuple[str, ...] = (),
) -> None:
    """load_state_dict, or an error naming the model, the file and a few mismatching keys."""
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own and not k.startswith(ignore_unexpected)]
    reshaped = [k for k in own if k in state and tuple(state[k].shape) != tuple(own[k].shape)]
    if reshaped or (strict and (missing or unexpected)):
        parts = [
            f"{len(keys)} {what} (e.g. {', '.join(keys[:3])})"
            for what, keys in (("missing", missing), ("unexpected", unexpected),
                               ("with other shapes", reshaped))
            if keys
        ]
        raise ExtractionError(
            f"model {spec.key!r}: weights file {path} does not match the architecture: "
            f"{'; '.join(parts)}; check loader_params.arch, or rename prefixes with "
            "loader_params.key_map"
        )
    model.load_state_dict({k: v for k, v in state.items() if k in own}, strict=False)


def _build_onnx(spec: ModelSpec, params: dict, pretrained: bool, device: str) -> _Built:
    """An onnxruntime session whose output is the graph value named by module_name."""
    ort = _import("onnxruntime", spec)
    if not params.get("weights"):
        raise ExtractionError(f"model {spec.key!r}: the onnx loader needs loader_params.weights")
    path = resolve_weights(params["weights"], spec)
    data = path.read_bytes()
    cpu = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    outputs = [o.name for o in cpu.get_outputs()]
    if spec.module_name not in outputs:
        data = expose_onnx_output(data, spec.module_name)
    providers = ["CPUExecutionProvider"]
    if str(device).startswith("cuda") and "CUDAExecutionProvider" in ort.get_available_providers():
        providers.insert(0, "CUDAExecutionProvider")
    try:
        session = ort.InferenceSession(data, providers=providers)
    except Exception as exc:  # onnxruntime raises its own exception types
        raise ExtractionError(
            f"model {spec.key!r}: {path} has no graph value {spec.module_name!r} "
            f"(its outputs: {', '.join(outputs)}); fix module_name ({exc})"
        ) from exc
    input_name = params.get("input") or session.get_inputs()[0].name
    packages = ("onnxruntime", *_weights_distributions(params))
    module = OnnxFeatureModel(session, input_name, spec.module_name)
    return _Built(module, ImageTransform(), str(path), path, packages)


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        low, value = value & 0x7F, value >> 7
        out.append(low | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _read_varint(data: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return result, pos


def expose_onnx_output(model_bytes: bytes, name: str) -> bytes:
    """Append graph output `name` to a serialised ONNX ModelProto (no `onnx` package needed).

    ModelProto.graph is field 7, GraphProto.output field 12 and ValueInfoProto.name field 1;
    onnxruntime infers the type and shape of an output given by name only.
    """
    value_info = b"\x0a" + _varint(len(name.encode())) + name.encode()
    extra = b"\x62" + _varint(len(value_info)) + value_info
    out, pos = bytearray(), 0
    while pos < len(model_bytes):
        start = pos
        tag, pos = _read_varint(model_bytes, pos)
        wire = tag & 7
        if wire == 0:
            _, pos = _read_varint(model_bytes, pos)
        elif wire == 1:
            pos += 8
        elif wire == 5:
            pos += 4
        elif wire == 2:
            length, body = _read_varint(model_bytes, pos)
            pos = body + length
            if tag >> 3 == 7:
                graph = model_bytes[body:pos] + extra
                out += _varint(tag) + _varint(len(graph)) + graph
                continue
        else:
            raise ExtractionError("not an ONNX model file (unexpected protobuf wire type)")
        out += model_bytes[start:pos]
    return bytes(out)


_BUILDERS: dict[str, Callable[[ModelSpec, dict, bool, str], _Built]] = {
    "timm": _build_timm,
    "torchvision": _build_torchvision,
    "open_clip": _build_open_clip,
    "ssl": _build_ssl,
    "hf_align": _build_hf_align,
    "local": _build_local,
    "onnx": _build_onnx,
}
