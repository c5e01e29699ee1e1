"""Weights files: safetensors with the spec text embedded in the metadata.

A weights file always knows its architecture: the spec it was made for travels in the
``slimspec.spec`` metadata field, so ``load_model(path)`` can rebuild the network and a
spec/weights mismatch is caught with a message naming the layers. No pickle anywhere.

Files are byte-deterministic: the same tensors and metadata give the same bytes in any
process (safetensors itself writes the metadata in hash-map order, which changes per
process; :func:`weights_writer` rewrites the header with the metadata keys sorted), so
``weights_sha256`` in a pruned spec's provenance is reproducible.
"""
from __future__ import annotations

import json
import os
import re
from collections import OrderedDict
from collections.abc import Mapping
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save

from .errors import WeightsError
from .utils.fileio import OutputTransaction, Writer, note_input, sha256_bytes

SPEC_KEY = "slimspec.spec"
SPEC_HASH_KEY = "slimspec.spec_sha256"
FORMAT_KEY = "slimspec.format"
FORMAT_VERSION = "1"


def _state_dict(model_or_state: torch.nn.Module | Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    state = model_or_state.state_dict() if isinstance(model_or_state, torch.nn.Module) else model_or_state
    # safetensors needs contiguous, unshared CPU tensors
    return {name: tensor.detach().to("cpu").contiguous().clone() for name, tensor in state.items()}


def _metadata(spec_text: str, metadata: Mapping[str, object] | None) -> dict[str, str]:
    meta = {FORMAT_KEY: FORMAT_VERSION, SPEC_KEY: spec_text, SPEC_HASH_KEY: sha256_bytes(spec_text)}
    for key, value in (metadata or {}).items():
        meta[key] = value if isinstance(value, str) else json.dumps(value, sort_keys=True)
    return meta


def _deterministic_header(raw: bytes) -> tuple[bytes, memoryview]:
    """Split safetensors bytes into a canonical header (metadata keys sorted) and the data."""
    size = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8 : 8 + size])
    meta = header.pop("__metadata__", None)
    canonical = ({"__metadata__": dict(sorted(meta.items()))} if meta else {}) | header
    text = json.dumps(canonical, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    text += b" " * (-len(text) % 8)  # keep the tensor data 8-byte aligned, as safetensors does
    return len(text).to_bytes(8, "little") + text, memoryview(raw)[8 + size :]


def weights_writer(model_or_state: torch.nn.Module | Mapping[str, torch.Tensor], spec_text: str,
                   metadata: Mapping[str, object] | None = None) -> Writer:
    """A ``writer(path)`` for :class:`~slimspec.utils.fileio.OutputTransaction` (byte-deterministic)."""
    tensors = _state_dict(model_or_state)
    meta = _metadata(spec_text, metadata)

    def write(path: Path) -> None:
        header, data = _deterministic_header(save(tensors, metadata=meta))
        with open(path, "xb") as handle:
            handle.write(header)
            handle.write(data)

    return write


def save_weights(
    model_or_state: torch.nn.Module | Mapping[str, torch.Tensor],
    spec_text: str,
    path: str | os.PathLike,
    *,
    overwrite: bool = True,
    metadata: Mapping[str, object] | None = None,
    transaction: OutputTransaction | None = None,
) -> Path:
    """Write a state dict as safetensors with ``spec_text`` embedded; atomic and byte-deterministic.

    With ``transaction`` the file joins that transaction (renamed when it commits);
    otherwise it is written as a one-file transaction (``overwrite`` = ``force``).
    """
    writer = weights_writer(model_or_state, spec_text, metadata)
    if transaction is not None:
        return transaction.write(path, writer)
    with OutputTransaction(force=overwrite) as tx:
        tx.write(path, writer)
    return Path(path)


def read_metadata(path: str | os.PathLike) -> dict[str, str]:
    """The metadata of a safetensors file (its header only; no tensor is read)."""
    file = Path(path)
    note_input(file)  # an input of the command: no output of it may replace this file
    if not file.is_file():
        raise WeightsError(f"{file}: no such weights file")
    try:
        with safe_open(str(file), framework="pt") as handle:
            return dict(handle.metadata() or {})
    except (SafetensorError, OSError, ValueError) as exc:
        raise WeightsError(f"{file}: not a readable safetensors file ({exc})") from None


def read_weights(path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Return ``(tensors, metadata)`` of a slimspec safetensors file."""
    metadata = read_metadata(path)
    try:
        return load_file(str(path)), metadata
    except (SafetensorError, OSError, ValueError) as exc:
        raise WeightsError(f"{path}: not a readable safetensors file ({exc})") from None


def embedded_spec_text(metadata: Mapping[str, str], path: str | os.PathLike = "<weights>") -> str:
    """The spec text stored in a weights file's metadata."""
    text = metadata.get(SPEC_KEY)
    if not text:
        raise WeightsError(f"{path}: no embedded spec (metadata '{SPEC_KEY}' missing); pass --spec")
    expected = metadata.get(SPEC_HASH_KEY)
    if expected and expected != sha256_bytes(text):
        raise WeightsError(f"{path}: the embedded spec does not match its sha256 (file corrupted or edited)")
    return text


def state_problems(expected: Mapping[str, torch.Tensor], tensors: Mapping[str, torch.Tensor],
                   label: str = "spec") -> list[str]:
    """Every missing, unexpected or mis-shaped tensor of ``tensors`` against ``expected`` (the ``label``'s),
    by name (``missing a, b``, ``unexpected c``, ``shape mismatch d (2, 3) vs spec (4, 3)``); empty if they fit."""
    problems: list[str] = []
    missing = sorted(set(expected) - set(tensors))
    unexpected = sorted(set(tensors) - set(expected))
    if missing:
        problems.append("missing " + ", ".join(missing[:6]) + (" ..." if len(missing) > 6 else ""))
    if unexpected:
        problems.append("unexpected " + ", ".join(unexpected[:6]) + (" ..." if len(unexpected) > 6 else ""))
    shaped = [
        f"{name} {tuple(tensors[name].shape)} vs {label} {tuple(expected[name].shape)}"
        for name in sorted(set(expected) & set(tensors))
        if tuple(tensors[name].shape) != tuple(expected[name].shape)
    ]
    if shaped:
        problems.append("shape mismatch " + "; ".join(shaped[:6]) + (" ..." if len(shaped) > 6 else ""))
    return problems


def check_state_matches(
    model: torch.nn.Module, tensors: Mapping[str, torch.Tensor], source: str = "<weights>"
) -> None:
    """Raise :class:`WeightsError` naming every missing, unexpected or mis-shaped tensor."""
    problems = state_problems(model.state_dict(), tensors)
    if problems:
        raise WeightsError(f"{source}: weights do not fit the spec: " + " | ".join(problems))


def nonfinite(state: Mapping[str, torch.Tensor]) -> list[str]:
    """Names of the floating-point tensors holding NaN or inf."""
    return [name for name, tensor in state.items()
            if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all())]


def load_state_into(model: torch.nn.Module, tensors: Mapping[str, torch.Tensor], source: str = "<weights>") -> None:
    """Strictly load ``tensors`` into ``model`` after checking names and shapes."""
    check_state_matches(model, tensors, source)
    model.load_state_dict(dict(tensors), strict=True)


def torch_load_reason(exc: BaseException) -> str:
    """Why ``torch.load(weights_only=True)`` refused a file, in a few words.

    torch's own message is a page of advice, styled with terminal escapes, that ends in
    re-running with ``weights_only=False`` (arbitrary code execution on an untrusted file):
    slimspec keeps the cause alone and never suggests unpickling.
    """
    text = str(exc)
    if "Weights only load failed" in text:
        detail = text.partition("WeightsUnpickler error:")[2].split("Check the documentation of torch.load")[0]
        found = re.search(r"GLOBAL (\S+) was not an allowed global", detail)
        if found:
            return (f"it holds a pickled {found.group(1)} object; slimspec reads tensors only and never "
                    "unpickles: save model.state_dict() instead")
        detail = next((line.strip() for line in detail.splitlines() if line.strip()), "")
        return f"not a tensors-only torch.save file{f' ({detail})' if detail else ''}"
    if isinstance(exc, EOFError) or not text.strip():
        return "empty or truncated file" if isinstance(exc, EOFError) else type(exc).__name__
    first = text.strip().splitlines()[0].split(". ")[0].rstrip(".")  # torch's first sentence says what failed
    return first if len(first) <= 200 else first[:200] + "..."


def read_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """A plain state dict (a fine-tuned torchvision model's, your own module's).

    ``.safetensors``, or a ``.pth`` read with ``torch.load(weights_only=True)`` (never unpickled);
    a checkpoint's ``{"state_dict": ...}`` is unwrapped and DataParallel ``module.`` prefixes dropped.
    """
    note_input(path)  # an input of the command: no output of it may replace this file
    try:
        if os.fspath(path).endswith(".safetensors"):
            return load_file(os.fspath(path))
        loaded = torch.load(os.fspath(path), map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unreadable file is an input error
        raise WeightsError(f"{path}: cannot read a state dict ({torch_load_reason(exc)})") from None
    if isinstance(loaded, dict) and isinstance(loaded.get("state_dict"), dict):
        loaded = loaded["state_dict"]  # a training checkpoint {"state_dict": ..., "epoch": ...}
    if not isinstance(loaded, dict) or not all(isinstance(v, torch.Tensor) for v in loaded.values()):
        raise WeightsError(f"{path}: not a state dict (a mapping of parameter names to tensors)")
    state: OrderedDict[str, torch.Tensor] = OrderedDict(
        (str(k).removeprefix("module."), v) for k, v in loaded.items())  # DataParallel prefixes
    metadata = getattr(loaded, "_metadata", None)
    if isinstance(metadata, dict):  # module versions (torchvision's MNASNet reads its own to load)
        state._metadata = OrderedDict(  # type: ignore[attr-defined]
            ("" if k == "module" else str(k).removeprefix("module."), v) for k, v in metadata.items())
    return state


def with_module_metadata(state: Mapping[str, torch.Tensor], module: torch.nn.Module) -> Mapping[str, torch.Tensor]:
    """``state`` as ``module.load_state_dict`` wants it: with the module versions (``_metadata``) the file
    carried, or, for a file that carries none (safetensors), the module's own."""
    if getattr(state, "_metadata", None) is not None:
        return state
    state = OrderedDict(state)
    state._metadata = getattr(module.state_dict(), "_metadata", None)  # type: ignore[attr-defined]
    return state
