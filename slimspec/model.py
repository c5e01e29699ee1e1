"""The model layer: spec -> module, weights file <-> module (below pruning and training).

``build`` makes a :class:`~slimspec.nn.SpecNet` from a spec; the network owns its spec
(``model.spec``), so every layer above can ask a model what it is. ``load_model`` rebuilds
the network from the spec embedded in a weights file and loads it strictly.
"""
from __future__ import annotations

import contextlib
import os
from pathlib import Path

import torch

from .document import Spec, load_spec, spec_from_text
from .errors import SpecError, SpecIssue
from .families import get_family
from .ir import count_params
from .nn import LAYER_SETS, SpecNet, init_weights
from .nn.net import make_module
from .utils.names import rename_prefix
from .specio.limits import MAX_PARAMS, MAX_PARAMS_ENV
from .weights import check_state_matches, embedded_spec_text, read_weights, save_weights as _save_weights


def max_params_limit(max_params: int | None = None) -> int:
    """The parameter budget of :func:`build`: ``max_params``, else ``$SLIMSPEC_MAX_PARAMS``, else 2**31."""
    if max_params is not None:
        return int(max_params)
    text = os.environ.get(MAX_PARAMS_ENV, "").strip().replace("_", "")
    if not text:
        return MAX_PARAMS
    try:
        value = int(float(text)) if "e" in text.lower() else int(text)
    except (ValueError, OverflowError):
        value = -1
    if value <= 0:
        raise SpecError([SpecIssue("", f"expected a positive integer, got {text!r}")], MAX_PARAMS_ENV)
    return value


def check_size(spec: Spec, max_params: int | None = None) -> int:
    """Refuse (before allocating anything) a spec whose analytic parameter count is over the limit."""
    limit = max_params_limit(max_params)
    params = count_params(spec.ir)
    if params > limit:
        raise SpecError([SpecIssue("", f"{params:,} parameters is more than the limit of {limit:,} that build "
                                       f"allocates (MAX_PARAMS; raise it with --max-params or {MAX_PARAMS_ENV})")],
                        spec.source or spec.name)
    return params


def build(spec: Spec | str | os.PathLike, mode: str = "plain", *, binary_gates: bool = False,
          seed: int | None = None, max_params: int | None = None) -> SpecNet:
    """Build the spec's network as a ``torch.nn.Module`` in ``plain``, ``masked`` or ``gated`` mode.

    Specs over ``max_params`` parameters (default ``$SLIMSPEC_MAX_PARAMS`` or 2**31, counted
    analytically from the spec) are refused with a :class:`SpecError` before anything is allocated.
    """
    spec = load_spec(spec)
    check_size(spec, max_params)
    # unseeded: like any torch module, draw from (and advance) the global RNG; seeded: a private
    # RNG, so the same seed gives the same weights and the global RNG is untouched
    rng = torch.random.fork_rng(devices=[]) if seed is not None else contextlib.nullcontext()
    with rng:
        if seed is not None:
            torch.manual_seed(seed)
        model = SpecNet(spec, mode, binary_gates=binary_gates)
        init_weights(model, spec.data.get("init"))
    return model


def save_weights(model: torch.nn.Module, spec: Spec | str | os.PathLike, path: str | os.PathLike, *,
                 overwrite: bool = True, metadata: dict | None = None) -> Path:
    """Save a model's state as safetensors with the spec text embedded."""
    spec = load_spec(spec)
    return _save_weights(model, spec.text, path, overwrite=overwrite, metadata=metadata)


def mode_of_state(tensors: dict[str, torch.Tensor]) -> str:
    """The build mode a saved state dict was written from."""
    if any(name.endswith("weight_mask") or name.endswith(".mask") for name in tensors):
        return "masked"
    return "plain"


def load_model(path: str | os.PathLike, spec: Spec | str | os.PathLike | None = None, *,
               mode: str | None = None, binary_gates: bool = False) -> tuple[SpecNet, Spec]:
    """Build the model from the weights file's embedded spec (or ``spec``) and load it strictly."""
    tensors, metadata = read_weights(path)
    spec = load_spec(spec) if spec is not None else spec_from_text(embedded_spec_text(metadata, path), f"{path}#spec")
    tensors = migrate_names(spec, tensors)
    binary_gates = binary_gates or metadata.get("slimspec.binary_gates") == "true"
    if mode is None:
        gated = any(_is_gate_name(spec, name) for name in tensors)
        mode = "gated" if gated else mode_of_state(tensors)
    return build_from_state(spec, tensors, mode, binary_gates=binary_gates, source=str(path)), spec


def migrate_names(spec: Spec, tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``tensors`` under today's module names, where they were saved under an earlier release's
    (:meth:`~slimspec.families.Family.legacy_names`: a ``sequential`` spec's gated or masked
    weights from before its gates were named ``gates.<i>``)."""
    prefixes = {f"{old}.": f"{new}." for old, new in get_family(spec.arch).legacy_names(spec.ir).items()}
    if not any(name.startswith(tuple(prefixes)) for name in tensors):
        return tensors
    return {rename_prefix(name, prefixes): tensor for name, tensor in tensors.items()}


def build_from_state(spec: Spec | str | os.PathLike, tensors: dict[str, torch.Tensor], mode: str = "plain", *,
                     binary_gates: bool = False, source: str = "<weights>", max_params: int | None = None) -> SpecNet:
    """Build the spec's network around ``tensors`` (checked strictly), without a throwaway random init.

    The modules are created on the meta device (no memory, no init) and the tensors are
    assigned as their parameters and buffers (cast to the module's dtype, as ``load_state_dict``
    would). Non-persistent buffers (channel selections) are recomputed from the spec.
    """
    spec = load_spec(spec)
    check_size(spec, max_params)
    with torch.device("meta"):
        model = SpecNet(spec, mode, binary_gates=binary_gates)
    check_state_matches(model, tensors, source)
    expected = model.state_dict()
    model.load_state_dict({k: v if v.dtype == expected[k].dtype else v.to(expected[k].dtype)
                           for k, v in tensors.items()}, strict=True, assign=True)
    layers = LAYER_SETS[mode](binary_gates)
    for name, module in model.named_modules():
        meta = [key for key, buffer in module._buffers.items() if buffer is not None and buffer.is_meta]
        if meta:  # not in the state dict: rebuild this (parameter-free) module's buffers on the CPU
            node = spec.ir.node(name)
            fresh = make_module(spec.ir, node, layers)
            for key in meta:
                module._buffers[key] = fresh._buffers[key]
    return model


def _is_gate_name(spec: Spec, name: str) -> bool:
    prefix = name.rsplit(".", 1)[0]
    return name.endswith(".weight") and prefix in spec.ir and spec.ir.node(prefix).op == "gate"
