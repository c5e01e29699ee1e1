"""Your own ``nn.Module`` in: ``slimspec.from_module`` and ``slimspec import python:PKG.MOD:FACTORY``.

The module is traced with torch.fx (:mod:`slimspec.interop.fx_trace`) into a ``sequential`` spec when
every layer reads the one before it, else a ``graph`` spec, with its weights renamed to the spec's modules;
the spec's model computes what the module computes (eval mode).
"""
from __future__ import annotations

import importlib
import os
import re
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn

from ..document import Spec
from ..errors import ModelImportError
from ..weights import WeightsError, read_state_dict
from .fx_trace import import_module

__all__ = ["import_python", "load_factory"]


def load_factory(reference: str) -> nn.Module:
    """``PACKAGE.MODULE:FACTORY`` -> the module the factory returns (the current directory is importable).

    ``FACTORY`` is a callable taking no arguments (a function or an ``nn.Module`` class), or
    a dotted attribute path inside the module.
    """
    module_name, _, attr = reference.partition(":")
    if not module_name or not attr:
        raise ModelImportError(f"python:{reference}: expected python:PACKAGE.MODULE:FACTORY, e.g. python:my_net:build")
    with _cwd_importable():
        return _call_factory(reference, module_name, attr)


@contextmanager
def _cwd_importable() -> Iterator[None]:
    """The current directory on ``sys.path`` while the user's module is imported and its factory runs."""
    cwd = os.getcwd()
    added = cwd not in sys.path and "" not in sys.path
    if added:
        sys.path.insert(0, cwd)
    try:
        yield
    finally:
        if added and cwd in sys.path:
            sys.path.remove(cwd)


def _call_factory(reference: str, module_name: str, attr: str) -> nn.Module:
    try:
        target: Any = importlib.import_module(module_name)
    except SystemExit as exc:  # the module's top level called sys.exit(): no model comes from it
        raise ModelImportError(f"python:{reference}: importing {module_name} called sys.exit({exc.code!r})") from None
    except ModuleNotFoundError as exc:
        raise ModelImportError(f"python:{reference}: no module named '{exc.name}' (looked on sys.path and in "
                               f"{os.getcwd()})") from None
    except Exception as exc:  # noqa: BLE001 - the user's module failed while importing
        raise ModelImportError(f"python:{reference}: importing {module_name} failed: "
                               f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}") from None
    for part in attr.split("."):
        if not hasattr(target, part):
            raise ModelImportError(f"python:{reference}: {module_name} has no attribute '{attr}'")
        target = getattr(target, part)
    if isinstance(target, nn.Module):
        return target
    if not callable(target):
        raise ModelImportError(f"python:{reference}: '{attr}' is neither a module nor a callable returning one")
    try:
        made = target()
    except SystemExit as exc:
        raise ModelImportError(f"python:{reference}: calling {attr}() called sys.exit({exc.code!r})") from None
    except Exception as exc:  # noqa: BLE001 - the user's factory failed
        raise ModelImportError(f"python:{reference}: calling {attr}() failed: "
                               f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}") from None
    if not isinstance(made, nn.Module):
        raise ModelImportError(f"python:{reference}: {attr}() returned a {type(made).__name__}, not a torch.nn.Module")
    return made


def import_python(reference: str, input_shape: Sequence[int], *, name: str | None = None,
                  state_dict: str | os.PathLike | None = None) -> tuple[Spec, dict[str, torch.Tensor]]:
    """``(spec, state_dict)`` for ``PACKAGE.MODULE:FACTORY`` (what ``slimspec import python:...`` writes).

    ``state_dict``: the module's trained weights (:func:`slimspec.weights.read_state_dict`: ``.pth`` read
    with ``torch.load(weights_only=True)``, or ``.safetensors``).
    """
    module = load_factory(reference)
    if state_dict is not None:
        _load_state_dict(module, state_dict)
    default = re.sub(r"[^A-Za-z0-9_.-]+", "_", reference.partition(":")[0].rsplit(".", 1)[-1]).lower()
    return import_module(module, input_shape, name=name or default, source=f"python:{reference}")


def _load_state_dict(module: nn.Module, path: str | os.PathLike) -> None:
    try:
        module.load_state_dict(read_state_dict(path))
    except (RuntimeError, TypeError, AttributeError) as exc:
        raise WeightsError(f"{path}: does not fit {type(module).__name__}: {str(exc).splitlines()[0]}") from None
