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
import math
import mmap
import os
import re
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save

from .errors import WeightsError
from .utils.fileio import OutputTransaction, Writer, note_input, sha256_bytes

SPEC_KEY = "slimspec.spec"
SPEC_HASH_KEY = "slimspec.spec_sha256"
FORMAT_KEY = "slimspec.format"
FORMAT_VERSION = "1"


# safetensors' dtype names (the header's "dtype"); every dtype a slimspec state holds
DTYPE_NAMES: dict[torch.dtype, str] = {
    torch.float64: "F64", torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16",
    torch.int64: "I64", torch.int32: "I32", torch.int16: "I16", torch.int8: "I8", torch.uint8: "U8",
    torch.bool: "BOOL",
}
DTYPES: dict[str, torch.dtype] = {name: dtype for dtype, name in DTYPE_NAMES.items()}


@dataclass(frozen=True)
class TensorInfo:
    """A tensor's dtype and shape: all a safetensors header says of it."""

    dtype: torch.dtype
    shape: tuple[int, ...]

    @property
    def nbytes(self) -> int:
        return math.prod(self.shape) * self.dtype.itemsize

    def meta(self) -> torch.Tensor:
        """A tensor of this dtype and shape on the meta device (no memory), for shape checks."""
        return torch.empty(self.shape, dtype=self.dtype, device="meta")


def weights_metadata(spec_text: str, metadata: Mapping[str, object] | None = None) -> dict[str, str]:
    """The metadata a weights file of ``spec_text`` carries (format, spec, its sha256, then ``metadata``)."""
    meta = {FORMAT_KEY: FORMAT_VERSION, SPEC_KEY: spec_text, SPEC_HASH_KEY: sha256_bytes(spec_text)}
    for key, value in (metadata or {}).items():
        meta[key] = value if isinstance(value, str) else json.dumps(value, sort_keys=True)
    return meta


def data_order(infos: Mapping[str, TensorInfo]) -> list[str]:
    """The order safetensors lays tensors out in (dtype, then name), asked of safetensors itself.

    It serializes empty stand-ins of the same names and dtypes, so the order is the library's
    own whatever its version: a streamed file is byte-identical to one ``save`` writes.
    """
    probe = save({name: torch.empty(0, dtype=info.dtype) for name, info in infos.items()})
    size = int.from_bytes(probe[:8], "little")
    header = json.loads(probe[8: 8 + size])
    header.pop("__metadata__", None)
    return list(header)


def _canonical(header: Mapping[str, object]) -> bytes:
    """Header JSON with the metadata keys sorted, padded to 8 bytes, length-prefixed."""
    meta = header.get("__metadata__")
    body = {k: v for k, v in header.items() if k != "__metadata__"}
    canonical = ({"__metadata__": dict(sorted(meta.items()))} if meta else {}) | body  # type: ignore[union-attr]
    text = json.dumps(canonical, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    text += b" " * (-len(text) % 8)  # keep the tensor data 8-byte aligned, as safetensors does
    return len(text).to_bytes(8, "little") + text


def safetensors_header(infos: Mapping[str, TensorInfo], metadata: Mapping[str, str]) -> tuple[bytes, list[str]]:
    """``(header bytes, tensor order)`` of the canonical file holding tensors shaped as ``infos``."""
    order = data_order(infos)
    entries: dict[str, object] = {"__metadata__": dict(metadata)} if metadata else {}
    offset = 0
    for name in order:
        info = infos[name]
        entries[name] = {"dtype": DTYPE_NAMES[info.dtype], "shape": list(info.shape),
                         "data_offsets": [offset, offset + info.nbytes]}
        offset += info.nbytes
    return _canonical(entries), order


def tensor_bytes(tensor: torch.Tensor) -> memoryview:
    """The raw little-endian bytes of a CPU tensor, without a copy when it is contiguous."""
    flat = tensor.detach().to("cpu").contiguous().reshape(-1)
    return memoryview(flat.view(torch.uint8).numpy()) if flat.numel() else memoryview(b"")


def stream_safetensors(handle: BinaryIO, infos: Mapping[str, TensorInfo], metadata: Mapping[str, str],
                       tensor_of: Callable[[str], torch.Tensor | memoryview]) -> None:
    """Write a canonical safetensors file: the header first, then each tensor as ``tensor_of(name)`` gives it.

    One tensor is asked for at a time and written at once, so the writer never holds a second
    copy of the state; a tensor whose bytes do not match its declared size is a bug and raises.
    """
    header, order = safetensors_header(infos, metadata)
    handle.write(header)
    for name in order:
        value = tensor_of(name)
        data = value if isinstance(value, memoryview) else tensor_bytes(value)
        if data.nbytes != infos[name].nbytes:
            raise WeightsError(f"{name}: {data.nbytes} bytes to write, the header says {infos[name].nbytes}")
        handle.write(data)
        del value, data


def weights_writer(model_or_state: torch.nn.Module | Mapping[str, torch.Tensor], spec_text: str,
                   metadata: Mapping[str, object] | None = None) -> Writer:
    """A ``writer(path)`` for :class:`~slimspec.utils.fileio.OutputTransaction` (byte-deterministic).

    Streams each tensor's bytes into place after the header (no cloned state, no in-memory
    file): writing needs no memory beyond the model's own tensors.
    """
    state = model_or_state.state_dict() if isinstance(model_or_state, torch.nn.Module) else model_or_state
    tensors = {name: tensor.detach() for name, tensor in state.items()}
    infos = {name: TensorInfo(t.dtype, tuple(t.shape)) for name, t in tensors.items()}
    meta = weights_metadata(spec_text, metadata)

    def write(path: Path) -> None:
        with open(path, "xb") as handle:
            stream_safetensors(handle, infos, meta, tensors.__getitem__)

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


class MappedWeights(Mapping[str, torch.Tensor]):
    """A safetensors file memory-mapped: its header parsed, each tensor read when asked for.

    ``self[name]`` is a zero-copy view of the mapped file (cast to ``dtypes[name]`` where the
    caller's network keeps another dtype); the pages of the previous tensor read are handed
    back to the page cache first (``madvise(MADV_DONTNEED)``), so walking every tensor holds
    about one of them in memory, not the file. ``renames`` maps the names a caller asks for to
    the file's (weights saved under an earlier release's module names).
    """

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        note_input(self.path)
        if not self.path.is_file():
            raise WeightsError(f"{self.path}: no such weights file")
        try:
            with open(self.path, "rb") as handle:
                size = int.from_bytes(handle.read(8), "little")
                total = os.fstat(handle.fileno()).st_size
                if size <= 0 or 8 + size > total:
                    raise ValueError(f"header length {size} does not fit a file of {total} bytes")
                header = json.loads(handle.read(size))
                self._map = mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_COPY)
        except (OSError, ValueError) as exc:
            raise WeightsError(f"{self.path}: not a readable safetensors file ({exc})") from None
        self.metadata: dict[str, str] = dict(header.pop("__metadata__", None) or {})
        self._start = 8 + size
        self._entries: dict[str, tuple[TensorInfo, int, int]] = {}
        for name, entry in header.items():
            try:
                dtype, shape = DTYPES[entry["dtype"]], tuple(int(d) for d in entry["shape"])
                begin, end = (self._start + int(o) for o in entry["data_offsets"])
            except (KeyError, TypeError, ValueError):
                raise WeightsError(f"{self.path}: not a readable safetensors file (tensor {name!r}: "
                                   f"unsupported dtype or malformed entry)") from None
            info = TensorInfo(dtype, shape)
            if end - begin != info.nbytes or end > total or begin < self._start:
                raise WeightsError(f"{self.path}: not a readable safetensors file (tensor {name!r}: offsets "
                                   f"do not match its shape or the file)")
            self._entries[name] = (info, begin, end)
        self._renames: dict[str, str] = {}
        self._dtypes: dict[str, torch.dtype] = {}
        self._touched: tuple[int, int] | None = None

    def expect(self, *, renames: Mapping[str, str] | None = None,
               dtypes: Mapping[str, torch.dtype] | None = None) -> "MappedWeights":
        """Serve the tensors under the names (``renames``: asked -> stored) and dtypes a network expects."""
        self._renames = dict(renames or {})
        self._dtypes = dict(dtypes or {})
        return self

    def _entry(self, name: str) -> tuple[TensorInfo, int, int]:
        return self._entries[self._renames.get(name, name)]

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self._renames.get(name, name) in self._entries

    def __getitem__(self, name: str) -> torch.Tensor:
        if name not in self:
            raise KeyError(name)
        tensor = self.view(name)
        dtype = self._dtypes.get(name)
        return tensor.to(dtype) if dtype is not None and dtype != tensor.dtype else tensor

    def __iter__(self) -> Iterator[str]:
        back = {old: new for new, old in self._renames.items()}
        return (back.get(name, name) for name in self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def info(self, name: str) -> TensorInfo:
        """Dtype and shape of ``name`` as stored (nothing is read)."""
        return self._entry(name)[0]

    def view(self, name: str) -> torch.Tensor:
        """The stored tensor as a zero-copy view of the mapping (releasing the previous one's pages)."""
        info, begin, end = self._entry(name)
        self.release()
        self._touched = (begin, end)
        if info.nbytes == 0:
            return torch.empty(info.shape, dtype=info.dtype)
        if begin % info.dtype.itemsize:  # unaligned (not written by safetensors): copy the bytes
            return torch.frombuffer(bytearray(self._map[begin:end]), dtype=info.dtype).reshape(info.shape)
        return torch.frombuffer(self._map, dtype=info.dtype, count=info.nbytes // info.dtype.itemsize,
                                offset=begin).reshape(info.shape)

    def raw(self, name: str) -> memoryview:
        """The stored bytes of ``name`` (a view of the mapping; its pages are released on the next read)."""
        _, begin, end = self._entry(name)
        self.release()
        self._touched = (begin, end)
        return memoryview(self._map)[begin:end]

    def release(self) -> None:
        """Give the pages of the last tensor read back to the page cache (views stay valid: they re-read)."""
        if self._touched is None:
            return
        begin, end = self._touched
        self._touched = None
        page = mmap.PAGESIZE
        start = begin - begin % page
        if end > start and hasattr(self._map, "madvise") and hasattr(mmap, "MADV_DONTNEED"):
            self._map.madvise(mmap.MADV_DONTNEED, start, min(end - start, len(self._map) - start))

    def close(self) -> None:
        self._touched = None
        try:
            self._map.close()
        except BufferError:  # a view is still alive: the mapping goes when it does
            pass

    def __enter__(self) -> "MappedWeights":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


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
    def bad(tensor: torch.Tensor) -> bool:  # a finite sum proves every element finite (NaN and inf propagate);
        return not bool(torch.isfinite(tensor.sum())) and not bool(torch.isfinite(tensor).all())  # else look

    return [name for name, tensor in state.items() if tensor.is_floating_point() and bad(tensor)]


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
