"""Datasets: digits, batching/augmentation, torchvision on-disk formats, synthetic, errors."""
from __future__ import annotations

import hashlib
import pickle
import struct
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch

from slimspec.data import (
    DataError,
    TensorDataBundle,
    available_datasets,
    get_dataset,
    random_crop,
    random_flip,
)


# -- digits -------------------------------------------------------------------------------
def test_registry_lists_datasets():
    assert {"digits", "synthetic", "cifar10", "cifar100", "mnist", "fashion-mnist", "imagefolder", "imagenet"} <= set(
        available_datasets()
    )
    with pytest.raises(DataError, match="unknown dataset 'coco'.*digits"):
        get_dataset("coco")


def test_digits_split_sizes_stratification_range_and_determinism():
    a = get_dataset("digits")
    assert a.input_shape == (1, 8, 8) and a.num_classes == 10
    assert len(a.train_y) == 1437 and len(a.test_y) == 360  # 1797, stratified 80/20
    total = Counter(a.train_y.tolist()) + Counter(a.test_y.tolist())
    test_counts = Counter(a.test_y.tolist())
    for label, n in total.items():
        assert abs(test_counts[label] - 0.2 * n) <= 1  # each class keeps its 20%
    for x in (a.train_x, a.test_x):
        assert x.dtype == torch.float32 and float(x.min()) == 0.0 and float(x.max()) == 1.0
    b = get_dataset("digits", seed=123)  # the split is fixed, whatever the run seed
    for name in ("train_x", "train_y", "test_x", "test_y"):
        assert torch.equal(getattr(a, name), getattr(b, name))
    assert a.pad == 1 and a.flip is False  # digits are not mirror-invariant


def test_digits_adapts_to_spec_input_shape():
    bundle = get_dataset("digits", input_shape=[3, 32, 32])
    assert bundle.input_shape == (3, 32, 32)
    assert len(bundle.train_y) == 1437
    assert torch.equal(bundle.train_x[:, 0], bundle.train_x[:, 2])  # gray repeated over channels
    assert 0.0 <= float(bundle.train_x.min()) and float(bundle.train_x.max()) <= 1.0
    assert len(bundle.mean) == 3 and bundle.pad == 4  # pad 1 at 8x8 -> 4 at 32x32
    x, y = next(bundle.batches("train", 16, shuffle=True, augment=True, generator=torch.Generator().manual_seed(0)))
    assert x.shape == (16, 3, 32, 32) and y.shape == (16,)


def test_shape_mismatch_without_adaptation_names_both_shapes(tmp_path):
    with pytest.raises(DataError, match=r"mnist: spec input \[3, 32, 32\].*\[1, 28, 28\]"):
        get_dataset("mnist", data_dir=tmp_path, input_shape=[3, 32, 32])
    with pytest.raises(DataError, match=r"\[1, 16, 16\].*\[1, 8, 8\]"):
        get_dataset("digits", input_shape=[1, 16, 16], adapt=False)


# -- batches and augmentation -------------------------------------------------------------
def _bundle(n: int = 10, pad: int = 2, flip: bool = True, uint8: bool = True) -> TensorDataBundle:
    g = torch.Generator().manual_seed(1)
    x = torch.randint(0, 256, (n, 3, 6, 5), generator=g, dtype=torch.uint8)
    if not uint8:
        x = x.float() / 255
    y = torch.arange(n) % 3
    return TensorDataBundle("toy", x, y, x[:4].clone(), y[:4].clone(), 3, (0.5, 0.4, 0.3), (0.2, 0.25, 0.3), pad, flip)


def test_batches_normalize_and_cover_every_example_once():
    bundle = _bundle(uint8=True)
    xs, ys = zip(*bundle.batches("train", 4, shuffle=True, generator=torch.Generator().manual_seed(0)))
    assert [len(y) for y in ys] == [4, 4, 2]
    x = torch.cat(xs)
    assert x.dtype == torch.float32
    mean = torch.tensor(bundle.mean).view(1, 3, 1, 1)
    std = torch.tensor(bundle.std).view(1, 3, 1, 1)
    raw = (x * std + mean) * 255  # undo normalization
    assert torch.allclose(raw, raw.round(), atol=1e-3)
    assert sorted(map(tuple, raw.round().to(torch.uint8).flatten(1).tolist())) == sorted(
        map(tuple, bundle.train_x.flatten(1).tolist())
    )
    plain = torch.cat([xb for xb, _ in bundle.batches("train", 3)])
    expected = (bundle.train_x.float() / 255 - mean) / std
    assert torch.allclose(plain, expected)
    assert len(list(bundle.batches("train", 4, drop_last=True))) == 2 == bundle.num_batches("train", 4, True)


def test_augmentation_keeps_shapes_is_seeded_and_changes_pixels():
    bundle = _bundle(uint8=False)

    def epoch(seed: int) -> torch.Tensor:
        gen = torch.Generator().manual_seed(seed)
        return torch.cat([x for x, _ in bundle.batches("train", 4, shuffle=True, augment=True, generator=gen)])

    a, b, c = epoch(0), epoch(0), epoch(1)
    assert a.shape == (10, 3, 6, 5)
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    gen = torch.Generator().manual_seed(0)
    order = torch.randperm(10, generator=gen)  # same draws as batches(shuffle=True) makes first
    plain = (bundle.train_x[order] - torch.tensor(bundle.mean).view(1, 3, 1, 1)) / torch.tensor(bundle.std).view(
        1, 3, 1, 1
    )
    assert not torch.equal(a, plain)


def test_random_crop_and_flip_match_a_per_image_reference():
    g = torch.Generator().manual_seed(3)
    x = torch.rand(6, 2, 5, 7, generator=g)
    pad = 2
    offsets = torch.randint(0, 2 * pad + 1, (6, 2), generator=g)
    flags = torch.tensor([True, False, True, True, False, False])
    out = random_flip(random_crop(x, pad, offsets), flags)
    for i in range(6):
        padded = torch.zeros(2, 5 + 2 * pad, 7 + 2 * pad)
        padded[:, pad : pad + 5, pad : pad + 7] = x[i]
        dy, dx = offsets[i].tolist()
        ref = padded[:, dy : dy + 5, dx : dx + 7]
        if flags[i]:
            ref = ref.flip(-1)
        assert torch.equal(out[i], ref)
    centre = torch.full((6, 2), pad)
    assert torch.equal(random_crop(x, pad, centre), x)


def test_train_sharding_like_distributed_sampler():
    bundle = _bundle(n=9)
    seen = []
    for rank in range(2):
        shard = bundle.shard(rank, 2)
        gen = torch.Generator().manual_seed(5)  # the same seed on every rank
        xs = [x for x, _ in shard.batches("train", 4, shuffle=True, generator=gen)]
        assert sum(len(x) for x in xs) == 5 == shard.num_examples("train")  # ceil(9/2), padded
        seen.append(torch.cat(xs))
    union = torch.cat(seen)
    full = torch.cat([x for x, _ in bundle.batches("train", 9)])
    assert {tuple(r.flatten().tolist()) for r in union} == {tuple(r.flatten().tolist()) for r in full}
    tests = [torch.cat([y for _, y in bundle.shard(r, 3).batches("test", 8)]) for r in range(3)]
    assert sum(len(t) for t in tests) == 4  # test split: exact, no padding


# -- synthetic ----------------------------------------------------------------------------
def test_synthetic_is_deterministic_by_seed_and_shaped():
    a = get_dataset("synthetic", seed=3, input_shape=[1, 12, 12])
    b = get_dataset("synthetic", seed=3, input_shape=[1, 12, 12])
    c = get_dataset("synthetic", seed=4, input_shape=[1, 12, 12])
    assert a.input_shape == (1, 12, 12)
    assert torch.equal(a.train_x, b.train_x) and torch.equal(a.test_y, b.test_y)
    assert not torch.equal(a.train_x, c.train_x)
    assert get_dataset("synthetic").input_shape == (3, 32, 32)
    assert sorted(Counter(a.train_y.tolist()).values()) == sorted(Counter(b.train_y.tolist()).values())


# -- torchvision formats, written small by the test ---------------------------------------
def _md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def _write_cifar10(root: Path, per_batch: int = 4) -> tuple[np.ndarray, list[int]]:
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    all_rows, all_labels = [], []
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        rows = rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8)  # R plane, G plane, B plane
        labels = [int(v) for v in rng.integers(0, 10, per_batch)]
        with open(folder / name, "wb") as handle:
            pickle.dump({"batch_label": name, "labels": labels, "data": rows, "filenames": []}, handle)
        all_rows.append(rows)
        all_labels += labels
    names = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
    with open(folder / "batches.meta", "wb") as handle:
        pickle.dump({"label_names": names, "num_cases_per_batch": per_batch, "num_vis": 3072}, handle)
    return np.concatenate(all_rows), all_labels


def _match_cifar_md5s(monkeypatch, cls, folder: Path) -> None:
    """torchvision checks the md5 of every file: point it at our small files' real sums."""
    monkeypatch.setattr(cls, "train_list", [[n, _md5(folder / n)] for n, _ in cls.train_list])
    monkeypatch.setattr(cls, "test_list", [[n, _md5(folder / n)] for n, _ in cls.test_list])
    monkeypatch.setattr(cls, "meta", {**cls.meta, "md5": _md5(folder / cls.meta["filename"])})


def test_cifar10_from_python_batches(tmp_path, monkeypatch):
    from torchvision.datasets import CIFAR10

    rows, labels = _write_cifar10(tmp_path)
    _match_cifar_md5s(monkeypatch, CIFAR10, tmp_path / "cifar-10-batches-py")
    bundle = get_dataset("cifar10", data_dir=tmp_path, input_shape=[3, 32, 32])
    assert bundle.train_x.shape == (20, 3, 32, 32) and bundle.test_x.shape == (4, 3, 32, 32)
    assert bundle.train_x.dtype == torch.uint8
    assert torch.equal(bundle.train_x.flatten(1), torch.from_numpy(rows[:20]))  # CHW order preserved
    assert bundle.train_y.tolist() == labels[:20] and bundle.test_y.tolist() == labels[20:]
    assert bundle.mean == (0.4914, 0.4822, 0.4465) and bundle.std == (0.2023, 0.1994, 0.2010)
    assert bundle.pad == 4 and bundle.flip and bundle.num_classes == 10 and bundle.classes[0] == "airplane"
    x, _ = next(bundle.batches("train", 8, shuffle=True, augment=True, generator=torch.Generator().manual_seed(0)))
    assert x.shape == (8, 3, 32, 32)


def test_cifar100_from_python_files(tmp_path, monkeypatch):
    from torchvision.datasets import CIFAR100

    folder = tmp_path / "cifar-100-python"
    folder.mkdir()
    rng = np.random.default_rng(1)
    for name, n in (("train", 6), ("test", 3)):
        data = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
        with open(folder / name, "wb") as handle:
            pickle.dump({"data": data, "fine_labels": list(range(n)), "coarse_labels": [0] * n}, handle)
    with open(folder / "meta", "wb") as handle:
        pickle.dump({"fine_label_names": [f"c{i}" for i in range(100)], "coarse_label_names": []}, handle)
    _match_cifar_md5s(monkeypatch, CIFAR100, folder)
    bundle = get_dataset("cifar100", data_dir=tmp_path)
    assert bundle.num_classes == 100 and bundle.train_x.shape == (6, 3, 32, 32)
    assert bundle.mean == (0.5071, 0.4865, 0.4409) and bundle.std == (0.2673, 0.2564, 0.2762)


def _write_idx(path: Path, array: np.ndarray) -> None:
    """MNIST idx format: magic (0, 0, type 0x08 = uint8, ndim), big-endian dims, data."""
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    path.write_bytes(header + array.astype(np.uint8).tobytes())


@pytest.mark.parametrize(
    "name, folder, mean", [("mnist", "MNIST", (0.1307,)), ("fashion-mnist", "FashionMNIST", (0.2860,))]
)
def test_mnist_family_from_idx_files(tmp_path, name, folder, mean):
    raw = tmp_path / folder / "raw"
    raw.mkdir(parents=True)
    rng = np.random.default_rng(2)
    images = {s: rng.integers(0, 256, (n, 28, 28), dtype=np.uint8) for s, n in (("train", 7), ("t10k", 3))}
    labels = {s: rng.integers(0, 10, len(images[s]), dtype=np.uint8) for s in images}
    for split in images:
        _write_idx(raw / f"{split}-images-idx3-ubyte", images[split])
        _write_idx(raw / f"{split}-labels-idx1-ubyte", labels[split])
    bundle = get_dataset(name, data_dir=tmp_path)
    assert bundle.train_x.shape == (7, 1, 28, 28) and bundle.test_x.shape == (3, 1, 28, 28)
    assert torch.equal(bundle.train_x[:, 0], torch.from_numpy(images["train"]))
    assert bundle.test_y.tolist() == labels["t10k"].tolist()
    assert bundle.mean == mean and bundle.pad == 0 and not bundle.flip
    resized = get_dataset(name, data_dir=tmp_path, input_shape=[3, 32, 32], adapt=True)
    assert resized.input_shape == (3, 32, 32) and resized.train_x.dtype == torch.uint8


def test_missing_dataset_is_a_clear_one_line_error(tmp_path):
    with pytest.raises(DataError) as info:
        get_dataset("cifar10", data_dir=tmp_path)
    assert str(info.value) == f"cifar10: not found under {tmp_path} (pass --download or --data-dir)"


def test_corrupted_cifar_files_are_reported(tmp_path):
    _write_cifar10(tmp_path)  # md5 sums do not match the real dataset's
    with pytest.raises(DataError, match="cifar10: files missing or corrupted under"):
        get_dataset("cifar10", data_dir=tmp_path)
