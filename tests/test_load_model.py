"""load_model builds on the meta device and assigns the file's tensors: same model, no throwaway init."""
from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file, save_file

import slimspec
from slimspec.errors import WeightsError
from slimspec.model import build_from_state

from .conftest import randomize


@pytest.mark.parametrize("name", ["digits_vgg", "digits_resnet", "digits_preresnet", "digits_densenet"])
@pytest.mark.parametrize("mode", ["plain", "masked", "gated"])
def test_loaded_model_equals_the_saved_one_and_leaves_the_global_rng_alone(tmp_path, name, mode):
    model = randomize(slimspec.build(name, mode, seed=3), seed=3)
    path = tmp_path / "w.safetensors"
    slimspec.save_weights(model, model.spec, path)
    rng = torch.get_rng_state()
    loaded, spec = slimspec.load_model(path)
    assert torch.equal(rng, torch.get_rng_state())  # nothing was randomly initialized
    assert loaded.mode == mode and spec.text == model.spec.text
    tensors = list(loaded.parameters()) + list(loaded.buffers())
    assert not any(t.is_meta for t in tensors) and all(p.requires_grad for p in loaded.parameters())
    x = torch.randn(3, *spec.ir.input_shape)
    assert torch.equal(loaded.eval()(x), model(x))


def test_strict_checks_and_dtype_cast_are_kept(tmp_path):
    model = randomize(slimspec.build("digits_vgg", seed=0))
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    half = build_from_state("digits_vgg", {k: v.double() for k, v in state.items()})
    assert all(p.dtype == torch.float32 for p in half.parameters())  # cast like load_state_dict
    missing = dict(state)
    del missing["fc.weight"]
    with pytest.raises(WeightsError, match="weights do not fit the spec: missing fc.weight"):
        build_from_state("digits_vgg", missing, source="w")
    path = tmp_path / "w.safetensors"
    slimspec.save_weights(model, model.spec, path)
    tensors = load_file(str(path))
    tensors["features.0.conv.weight"] = torch.zeros(3, 1, 3, 3)
    bad = tmp_path / "bad.safetensors"
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as handle:
        save_file(tensors, str(bad), metadata=handle.metadata())
    with pytest.raises(WeightsError, match=r"shape mismatch features.0.conv.weight \(3, 1, 3, 3\) vs spec"):
        slimspec.load_model(bad)
