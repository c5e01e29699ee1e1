"""``slimspec import timm:NAME``: a timm CNN (Wightman, pytorch-image-models) as a ``graph`` spec plus weights.

timm is an optional extra (``pip install 'slimspec[timm]'``). The model is made offline with
``timm.create_model(name, pretrained=False)``; trained weights come only from a local state dict
(``--state-dict``, e.g. one timm saved), never from a download. The model is traced with torch.fx
(:mod:`slimspec.interop.fx_trace`) and the spec's model is checked to compute what it computes.
Vision transformers are refused in one line.
"""
from __future__ import annotations

import os
from typing import Any

import torch
from torch import nn

from ..document import Spec
from ..errors import ModelImportError

__all__ = ["import_timm"]


def _timm() -> Any:
    try:
        import timm
    except ImportError as exc:
        raise ModelImportError(f"timm: cannot import timm ({exc}); install it with pip install 'slimspec[timm]'") from None
    return timm


def _model(name: str, num_classes: int | None) -> nn.Module:
    timm = _timm()
    if not timm.is_model(name):
        raise ModelImportError(f"timm has no model '{name}' (timm.list_models() names them)")
    options = {} if num_classes is None else {"num_classes": int(num_classes)}
    try:
        return timm.create_model(name, pretrained=False, **options)
    except Exception as exc:  # noqa: BLE001 - a model timm cannot make offline or with these options
        raise ModelImportError(f"timm:{name}: timm.create_model failed: {type(exc).__name__}: "
                               f"{str(exc).splitlines()[0] if str(exc) else ''}") from None


def default_input(model: nn.Module) -> tuple[int, int, int]:
    """The input timm's model card gives (``pretrained_cfg['input_size']``), else 3x224x224."""
    size = (getattr(model, "pretrained_cfg", None) or {}).get("input_size") or (3, 224, 224)
    return tuple(int(v) for v in size)  # type: ignore[return-value]


def import_timm(name: str, *, state_dict: str | os.PathLike | None = None, num_classes: int | None = None,
                input_shape: tuple[int, int, int] | None = None, seed: int | None = None,
                spec_name: str | None = None, model: nn.Module | None = None) -> tuple[Spec, dict[str, torch.Tensor]]:
    """``(spec, state_dict)`` for timm model ``name`` (e.g. ``efficientnet_b0``, ``resnet50d``).

    ``state_dict``: the model's weights (``.pth`` read with ``torch.load(weights_only=True)``, or
    ``.safetensors``), loaded strictly; ``num_classes``: timm makes the model with that many
    classes (before the state dict is loaded); ``input_shape``: the spec's ``input`` (default:
    timm's for the model); ``seed``: random initialization is drawn from it; ``spec_name``: the
    spec's name (default ``name``); ``model``: an already made timm model (tests).
    """
    from .fx_import import check_input_shape, load_state_dict_file, seeded
    from .fx_trace import import_module
    from .torchvision_models import check_channels, refuse_transformer

    source = f"timm:{name}"
    if spec_name is not None and not spec_name.strip():
        raise ModelImportError(f"{source}: the spec name is empty (leave it out for '{name}')")
    if input_shape is not None:
        check_input_shape(input_shape, source)
    if model is None:
        with seeded(seed):
            model = _model(name, num_classes)
    shape = check_input_shape(input_shape if input_shape is not None else default_input(model), source)
    refuse_transformer(model, source)
    check_channels(model, shape, source)
    if state_dict is not None:
        load_state_dict_file(model, state_dict, f"timm's {name}")
    return import_module(model, shape, name=spec_name or name, source=source)
