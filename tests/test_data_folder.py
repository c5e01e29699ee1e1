"""Streamed ImageFolder datasets (ImageNet layout) train through the same loop as in-memory data."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

import slimspec
from slimspec.data import DataError, get_dataset
from slimspec.training import evaluate_model


@pytest.fixture
def folder(tmp_path):
    rng = np.random.default_rng(0)
    for split, count in (("train", 12), ("val", 4)):
        for label, color in enumerate(((220, 30, 30), (30, 30, 220))):
            target = tmp_path / split / f"class{label}"
            target.mkdir(parents=True)
            for i in range(count):
                pixels = np.clip(rng.normal(color, 20, size=(40, 48, 3)), 0, 255).astype(np.uint8)
                Image.fromarray(pixels).save(target / f"{i}.png")
    return tmp_path


def test_batches_shapes_order_and_sharding(folder):
    data = get_dataset("imagefolder", data_dir=folder, input_shape=(3, 32, 32))
    assert data.input_shape == (3, 32, 32) and data.num_classes == 2 and data.num_examples("test") == 8
    first = [y for _, y in data.batches("train", 5, shuffle=True, augment=True, generator=torch.Generator().manual_seed(1))]
    again = [y for _, y in data.batches("train", 5, shuffle=True, augment=True, generator=torch.Generator().manual_seed(1))]
    assert all(torch.equal(a, b) for a, b in zip(first, again)) and sum(len(y) for y in first) == 24
    x, _ = next(iter(data.batches("test", 8)))
    assert x.shape == (8, 3, 32, 32)
    shards = [data.shard(r, 2) for r in range(2)]
    assert sum(len(y) for s in shards for _, y in s.batches("test", 3)) == 8


def test_train_on_a_folder(folder, tmp_path):
    spec = slimspec.Spec.from_data({"slimspec": 1, "name": "tiny", "arch": "vgg", "input": [3, 32, 32],
                                    "num_classes": 2, "cfg": [8, "M", 16]})
    result = slimspec.train(spec, "imagefolder", tmp_path / "run", data_dir=str(folder), epochs=3, lr=0.05,
                            batch_size=8, quiet=True)
    assert result.epochs == 3
    model, _ = slimspec.load_model(tmp_path / "run" / "last.safetensors")
    metrics = evaluate_model(model, get_dataset("imagefolder", data_dir=folder, input_shape=(3, 32, 32)))
    assert metrics["count"] == 8 and metrics["accuracy"] >= 50


def test_missing_folder_is_a_clear_error(tmp_path):
    with pytest.raises(DataError, match="not found"):
        get_dataset("imagenet", data_dir=tmp_path / "nope", input_shape=(3, 224, 224))
    (tmp_path / "train").mkdir()
    with pytest.raises(DataError, match="val"):
        get_dataset("imagenet", data_dir=tmp_path, input_shape=(3, 224, 224))
