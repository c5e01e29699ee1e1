"""One DataBundle protocol: in-memory and streamed bundles both implement it, ``limit`` included."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

import slimspec
from slimspec.cli.main import cli
from slimspec.data import DataBundle, DataError, TensorDataBundle, get_dataset
from slimspec.data.folder import FolderDataBundle
from slimspec.training import evaluate_model


@pytest.fixture
def folder(tmp_path, monkeypatch):
    monkeypatch.setenv("SLIMSPEC_WORKERS", "0")
    rng = np.random.default_rng(0)
    for split, count in (("train", 4), ("val", 5)):
        for label, color in enumerate(((220, 30, 30), (30, 30, 220))):
            target = tmp_path / "images" / split / f"class{label}"
            target.mkdir(parents=True)
            for i in range(count):
                pixels = np.clip(rng.normal(color, 20, size=(20, 20, 3)), 0, 255).astype(np.uint8)
                Image.fromarray(pixels).save(target / f"{i}.png")
    return tmp_path / "images"


def test_both_bundle_kinds_implement_the_protocol(folder):
    digits = get_dataset("digits")
    images = get_dataset("imagefolder", data_dir=folder, input_shape=(3, 16, 16))
    assert isinstance(digits, TensorDataBundle) and isinstance(images, FolderDataBundle)
    for bundle in (digits, images):
        assert isinstance(bundle, DataBundle)
        assert isinstance(bundle.limit(3), DataBundle)


def test_limit_keeps_the_first_test_examples(folder):
    digits = get_dataset("digits")
    small = digits.limit(7)
    assert small.num_examples("test") == 7 and small.num_examples("train") == digits.num_examples("train")
    assert torch.equal(small.test_y, digits.test_y[:7]) and small.test_x.data_ptr() == digits.test_x.data_ptr()
    assert digits.limit(10**9).num_examples("test") == digits.num_examples("test")

    images = get_dataset("imagefolder", data_dir=folder, input_shape=(3, 16, 16))
    assert images.num_examples("test") == 10
    few = images.limit(3)
    assert few.num_examples("test") == 3 and few.num_batches("test", 2) == 2 and few.num_examples("train") == 8
    labels = torch.cat([y for _, y in few.batches("test", 2)])
    assert labels.tolist() == [0, 0, 0]  # ImageFolder order: class0 first
    model = slimspec.build(_folder_spec(), seed=0)
    assert evaluate_model(model, few)["count"] == 3
    for bad in (0, -1, 2.5):
        with pytest.raises(DataError, match="limit"):
            digits.limit(bad)
        with pytest.raises(DataError, match="limit"):
            images.limit(bad)


def _folder_spec() -> slimspec.Spec:
    return slimspec.Spec.from_data({"slimspec": 1, "name": "tinyfolder", "arch": "vgg", "input": [3, 16, 16],
                                    "num_classes": 2, "cfg": [4, "M", 8]})


def test_sensitivity_on_an_image_folder_with_limit(folder, tmp_path):
    spec = _folder_spec()
    weights = tmp_path / "w.safetensors"
    slimspec.save_weights(slimspec.build(spec, seed=0), spec, weights)
    result = CliRunner().invoke(cli, ["sensitivity", str(weights), "--data", "imagefolder", "--data-dir", str(folder),
                                      "--limit", "3", "--ratios", "0.5", "--slot", "cfg[0]", "--json"],
                                catch_exceptions=False)
    assert result.exit_code == 0, result.output
    table = json.loads(result.output)
    assert list(table["slots"]) == ["cfg[0]"]
    # three test images: every accuracy is a multiple of 1/3
    for accuracy in [table["baseline"], table["slots"]["cfg[0]"]["0.5"]]:
        assert round(accuracy * 3 / 100, 6) == round(accuracy * 3 / 100)
