"""``slimspec export --format darknet``: a plain model out as a Darknet ``.cfg`` and its ``.weights``.

BatchNorm stays BatchNorm (Darknet's ``batch_normalize=1`` layers hold gamma, beta and the running
statistics), so nothing is folded. The ``.weights`` header is the one the model was imported with
(kept in the weights file's metadata), so an unpruned round trip gives the same bytes. The written
pair is read back (``import darknet:``) and run: the largest difference to the model is reported.
"""
from __future__ import annotations

import os
from pathlib import Path

import torch

from ..nn import SpecNet
from ..utils.fileio import OutputTransaction
from .darknet import darknet_header, export_darknet, import_darknet

__all__ = ["check_darknet", "weights_path_for", "write_darknet"]


def weights_path_for(cfg: str | os.PathLike) -> Path:
    """``pruned.cfg`` -> ``pruned.weights`` (Darknet's pair of files)."""
    return Path(cfg).with_suffix(".weights")


def _max_diff(a: torch.Tensor | tuple, b: torch.Tensor | tuple) -> float:
    pairs = zip(a, b) if isinstance(a, tuple) else [(a, b)]
    return max(float((x.float() - y.float()).abs().max()) for x, y in pairs)


def write_darknet(model: SpecNet, out: str | os.PathLike, outputs: OutputTransaction,
                  metadata: dict[str, str] | None = None) -> tuple[Path, Path]:
    """Write ``model`` (plain, BN unfolded) as ``out`` and its ``.weights`` within ``outputs``."""
    cfg_path = outputs.reserve(out)
    weights = outputs.reserve(weights_path_for(out))
    state = {key: value.detach() for key, value in model.state_dict().items()}
    cfg_text, write_weights = export_darknet(model.spec, state, darknet_header(metadata or {}), str(out))
    outputs.write(cfg_path, cfg_text)
    outputs.write(weights, write_weights)
    return cfg_path, weights


def check_darknet(reference: SpecNet, cfg: str | os.PathLike, *, check_batch: int = 3, seed: int = 0) -> float:
    """The largest difference between ``reference`` and the written cfg and ``.weights``, read back, on a random
    batch of ``check_batch``."""
    from ..model import build_from_state

    x = torch.randn(check_batch, *reference.ir.input_shape, generator=torch.Generator().manual_seed(seed + 1))
    spec, loaded, _ = import_darknet(cfg, weights=weights_path_for(cfg), input_shape=reference.ir.input_shape,
                                     name=reference.spec.name)
    back = build_from_state(spec, loaded).eval()
    with torch.no_grad():
        return _max_diff(back(x), reference(x))
