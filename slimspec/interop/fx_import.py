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
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn

from ..document import Spec
from ..errors import ModelImportError
from ..weights import WeightsError, read_state_dict, state_problems, with_module_metadata
from .fx_trace import import_module

__all__ = ["import_python", "load_factory", "load_state_dict_file"]


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


MAX_INPUT_ELEMENTS = 1 << 24
"""Largest image an import is traced on, in elements (C x H x W): 16,777,216, 64 MiB of float32 per
image (3x224x224 is 150,528). Checked before the model is made, so a typo is one line, not a
failed allocation."""


def check_input_shape(input_shape: Sequence[int], source: str) -> tuple[int, int, int]:
    """``(C, H, W)`` of positive sizes within :data:`MAX_INPUT_ELEMENTS`, else one :class:`ModelImportError`."""
    shape = tuple(int(v) for v in input_shape)
    if len(shape) != 3 or min(shape) < 1:
        raise ModelImportError(f"{source}: the input must be C,H,W with positive sizes, got {tuple(input_shape)}")
    elements = shape[0] * shape[1] * shape[2]
    if elements > MAX_INPUT_ELEMENTS:
        raise ModelImportError(f"{source}: input {','.join(map(str, shape))} is {elements:,} values per image, more "
                               f"than the limit of {MAX_INPUT_ELEMENTS:,} an import traces (MAX_INPUT_ELEMENTS)")
    return shape  # type: ignore[return-value]


@contextmanager
def seeded(seed: int | None) -> Iterator[None]:
    """Random initialization inside the block drawn from ``seed`` (torch's generator is restored after);
    ``None``: torch's generator as it is."""
    if seed is None:
        yield
        return
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


def import_python(reference: str, input_shape: Sequence[int], *, name: str | None = None,
                  state_dict: str | os.PathLike | None = None,
                  seed: int | None = None) -> tuple[Spec, dict[str, torch.Tensor]]:
    """``(spec, state_dict)`` for ``PACKAGE.MODULE:FACTORY`` (what ``slimspec import python:...`` writes).

    ``state_dict``: the module's trained weights (:func:`slimspec.weights.read_state_dict`: ``.pth`` read
    with ``torch.load(weights_only=True)``, or ``.safetensors``). ``seed``: the factory's random
    initialization is drawn from it (same seed, same weights); ``name``: the spec's name (default:
    the module's file name).
    """
    shape = check_input_shape(input_shape, f"python:{reference}")
    if name is not None and not name.strip():
        raise ModelImportError(f"python:{reference}: the spec name is empty (leave it out for the module's name)")
    with seeded(seed):
        module = load_factory(reference)
    if state_dict is not None:
        load_state_dict_file(module, state_dict, type(module).__name__)
    default = re.sub(r"[^A-Za-z0-9_.-]+", "_", reference.partition(":")[0].rsplit(".", 1)[-1]).lower()
    return import_module(module, shape, name=name or default, source=f"python:{reference}")


def load_state_dict_file(module: nn.Module, path: str | os.PathLike, what: str, *, noun: str = "module",
                         hint: Callable[[Mapping[str, torch.Tensor]], str] | None = None) -> None:
    """Load a state dict file into ``module`` (``what`` it is, for messages) strictly; a misfit names its missing,
    unexpected and mis-shaped keys (``(2, 3) vs module (4, 3)``: ``noun``), then what ``hint(the file's state)`` adds.

    The file's tensors are copied into the module's and let go on return: the import goes on
    with one copy of the weights, the module's.
    """
    state = read_state_dict(path)
    try:
        module.load_state_dict(with_module_metadata(state, module))
    except (RuntimeError, TypeError, AttributeError, ValueError, KeyError) as exc:  # the module's own loading hooks too
        problems = state_problems(module.state_dict(), state, noun) or [" ".join(str(exc).split())[:300]]
        raise WeightsError(f"{path}: does not fit {what}: " + " | ".join(problems)
                           + (hint(state) if hint is not None else "")) from None
