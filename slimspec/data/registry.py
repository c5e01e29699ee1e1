"""Dataset registry: ``@register_dataset(name)`` loaders, looked up by :func:`get_dataset`.

A loader is ``fn(*, data_dir, download, seed, input_shape) -> DataBundle``. The entry
declares the dataset's native image shape (``None`` when the loader generates any shape,
like ``synthetic``) and whether it is resized to a spec's input by default (``digits``).
"""
from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from ..utils.registry import Registry
from .bundle import DataBundle
from .tensors import DataError, TensorDataBundle, adapt_input

Loader = Callable[..., DataBundle]


@dataclass(frozen=True)
class DatasetEntry:
    """A registered dataset: its loader, native input shape and default adaptation."""

    name: str
    loader: Loader
    input_shape: tuple[int, int, int] | None
    adapts: bool
    description: str


_REGISTRY: Registry[DatasetEntry] = Registry("dataset", DataError)


def register_dataset(
    name: str,
    *,
    input_shape: Sequence[int] | None = None,
    adapts: bool = False,
    description: str = "",
) -> Callable[[Loader], Loader]:
    """Decorator registering a loader under ``name`` (names are unique)."""

    def decorate(loader: Loader) -> Loader:
        shape = tuple(int(v) for v in input_shape) if input_shape is not None else None
        doc = description or ((loader.__doc__ or "").strip().splitlines() or [""])[0]
        _REGISTRY.add(name, DatasetEntry(name, loader, shape, adapts, doc))
        return loader

    return decorate


def available_datasets() -> list[str]:
    """Registered dataset names, sorted."""
    return _REGISTRY.names()


def dataset_entry(name: str) -> DatasetEntry:
    """The registry entry for ``name``; :class:`DataError` listing the choices if unknown."""
    return _REGISTRY.get(name)


def default_data_dir() -> str:
    """``$SLIMSPEC_DATA_DIR`` or ``./data``."""
    return os.environ.get("SLIMSPEC_DATA_DIR") or "data"


def get_dataset(
    name: str,
    *,
    data_dir: str | os.PathLike | None = None,
    download: bool = False,
    input_shape: Sequence[int] | None = None,
    seed: int = 0,
    adapt: bool | None = None,
) -> DataBundle:
    """Load dataset ``name`` as an in-memory bundle fitting ``input_shape`` ([C,H,W]) if given.

    A shape mismatch is resized (:func:`adapt_input`) when ``adapt`` is true, or by default for
    datasets registered with ``adapts=True`` (digits); otherwise it is a :class:`DataError`
    naming both shapes. Mismatches are reported before any file is read.
    """
    entry = dataset_entry(name)
    wanted = tuple(int(v) for v in input_shape) if input_shape is not None else None
    if wanted is not None and len(wanted) != 3:
        raise DataError(f"{name}: input shape must be [C, H, W], got {list(wanted)}")
    allow = entry.adapts if adapt is None else adapt
    if wanted is not None and entry.input_shape is not None and wanted != entry.input_shape and not allow:
        raise DataError(
            f"{name}: spec input {list(wanted)} does not match the dataset's images "
            f"{list(entry.input_shape)} (change the spec's input or ask for resizing)"
        )
    root = os.fspath(data_dir) if data_dir is not None else default_data_dir()
    bundle = entry.loader(data_dir=root, download=download, seed=seed, input_shape=wanted)
    if wanted is not None and bundle.input_shape != wanted:
        if not allow or not isinstance(bundle, TensorDataBundle):
            raise DataError(
                f"{name}: spec input {list(wanted)} does not match the dataset's images {list(bundle.input_shape)}"
            )
        bundle = adapt_input(bundle, wanted)
    return bundle
