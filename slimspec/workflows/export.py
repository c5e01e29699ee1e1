"""``slimspec export``: a weights file -> ONNX, a torch.export program (.pt2) or TorchScript.

The model is made deployable first (plain layers, gates and masks folded, BatchNorm folded
into the conv/linear in front of it), exported with a dynamic batch axis, then loaded back
with the target runtime alone (ONNX Runtime, ``torch.export.load``, ``torch.jit.load``) and
run once: the maximum absolute difference to the PyTorch model is reported. The files
need no slimspec to load. Writes are atomic; an existing output needs ``force``.

One model at a time: the PyTorch model is run on the check batch first and only its outputs
kept; the deployable model is made after it (:func:`~slimspec.workflows.deploy.reference_then_deployable`),
let go once written, and the file is checked and run back after that.
"""
from __future__ import annotations

import gc
import os
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import torch

from ..document import Spec
from ..errors import ExportError
from ..latency.fold import fold_batchnorm
from ..latency.runtimes import dynamic_batch, onnx_export, ort_session, require
from ..nn import SpecNet
from ..utils.fileio import OutputTransaction, Writer
from ..utils.registry import Registry
from .deploy import load_deployable, reference_then_deployable


@dataclass(frozen=True)
class ExportFormat:
    """How to write one format, check the written file (``check``, run once the model is let go) and run it
    without slimspec; ``own``: a format that exports itself (Darknet: a .cfg and its .weights, BN kept)."""

    name: str
    suffix: str
    write: Callable[[torch.nn.Module, torch.Tensor, Path], None] | None = None
    run: Callable[[Path, torch.Tensor], torch.Tensor] | None = None
    own: Callable[..., "ExportResult"] | None = None
    check: Callable[[Path], None] | None = None


_FORMATS: Registry[ExportFormat] = Registry("export format", ExportError)


def export_formats() -> list[str]:
    return _FORMATS.names()


def _write_onnx(model: torch.nn.Module, x: torch.Tensor, path: Path) -> None:
    program = onnx_export(model, x)
    try:
        _save_onnx(program, path)
    finally:  # onnxscript's rewrite rules keep the last node they matched, and through it this graph, alive
        for value in program.model.graph.initializers.values():  # till the next export: let go of the weights
            value.const_value = None


ONNX_STREAMED_BYTES = 3 << 29
"""Initializers up to 1.5 GiB in all are streamed into the file; torch.onnx saves a larger model with its weights
in a file beside it (protobuf's 2 GiB limit), and so does slimspec (``ONNXProgram.save``)."""


class _Hollow:
    """An initializer's tensor that serializes without its bytes (``raw_data`` empty): they are written in place."""

    def __init__(self, tensor: Any) -> None:
        self.tensor, self.nbytes = tensor, int(tensor.nbytes)
        self.name, self.doc_string, self.dtype, self.shape = tensor.name, tensor.doc_string, tensor.dtype, tensor.shape
        self.metadata_props = tensor.metadata_props

    def tobytes(self) -> bytes:
        return b""


def _save_onnx(program: Any, path: Path) -> None:
    """The bytes ``program.save(path)`` writes, one initializer at a time.

    The model is serialized with its initializers hollow (each ``raw_data`` empty: a few MB of
    graph), and the file is that protobuf with each tensor's bytes spliced into its empty
    ``raw_data`` and the enclosing lengths grown to match, so neither a protobuf of every weight
    nor its serialized copy is ever held beside the model.
    """
    import onnx_ir as ir

    graph = program.model.graph
    values = [value for value in graph.initializers.values() if value.const_value is not None]
    if sum(value.const_value.nbytes for value in values) > ONNX_STREAMED_BYTES:
        program.save(str(path))
        return
    whole = (ir.TensorProtoTensor, ir.ExternalTensor, ir.StringTensor)  # serialized as they are, not from bytes
    hollows = [None if isinstance(value.const_value, whole) else _Hollow(value.const_value) for value in values]
    try:
        for value, hollow in zip(values, hollows):
            if hollow is not None:
                value.const_value = hollow
        head = ir.serde.serialize_model(program.model).SerializeToString()
    finally:
        for value, hollow in zip(values, hollows):
            if hollow is not None:
                value.const_value = hollow.tensor
    pieces = _spliced(head, iter(hollows))
    with open(path, "wb") as handle:
        for piece in pieces:
            if isinstance(piece, bytes):
                handle.write(piece)
                continue
            data = piece.tensor.tobytes()  # one tensor's bytes at a time
            if len(data) != piece.nbytes:
                raise ExportError(f"ONNX export: initializer {piece.name} has {len(data)} bytes, its header says "
                                  f"{piece.nbytes}")
            handle.write(data)
            del data


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        low, value = value & 0x7F, value >> 7
        out.append(low | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _read_varint(buf: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = buf[pos]
        value, pos, shift = value | (byte & 0x7F) << shift, pos + 1, shift + 7
        if not byte & 0x80:
            return value, pos


def _fields(buf: bytes) -> list[tuple[int, int, int, int, int]]:
    """``(number, wire type, start, payload start, end)`` of each top-level field of a serialized protobuf message."""
    found, pos = [], 0
    while pos < len(buf):
        key, body = _read_varint(buf, pos)
        wire = key & 7
        if wire == 2:
            length, body = _read_varint(buf, body)
            end = body + length
        elif wire == 0:
            end = _read_varint(buf, body)[1]
        elif wire in (1, 5):
            end = body + (8 if wire == 1 else 4)
        else:
            raise ExportError(f"ONNX export: unexpected protobuf wire type {wire}")
        found.append((key >> 3, wire, pos, body, end))
        pos = end
    return found


Piece = bytes | _Hollow


def _length_delimited(number: int, pieces: list[Piece]) -> list[Piece]:
    size = sum(len(p) if isinstance(p, bytes) else p.nbytes for p in pieces)
    return [_varint(number << 3 | 2) + _varint(size), *pieces]


GRAPH, INITIALIZER, RAW_DATA = 7, 5, 9  # ModelProto.graph, GraphProto.initializer, TensorProto.raw_data


def _spliced(model: bytes, hollows: Iterator[_Hollow | None]) -> list[Piece]:
    """``model`` (a ModelProto whose hollow initializers have an empty ``raw_data``) as pieces, each hollow
    ``raw_data`` standing for its tensor's bytes, the lengths around them grown to match."""
    out: list[Piece] = []
    for number, wire, start, body, end in _fields(model):
        if (number, wire) != (GRAPH, 2):
            out.append(model[start:end])
            continue
        graph, pieces = model[body:end], []
        for g_number, g_wire, g_start, g_body, g_end in _fields(graph):
            hollow = next(hollows) if (g_number, g_wire) == (INITIALIZER, 2) else None
            if hollow is None:
                pieces.append(graph[g_start:g_end])
                continue
            tensor, inner = graph[g_body:g_end], []
            for t_number, t_wire, t_start, t_body, t_end in _fields(tensor):
                if (t_number, t_wire) == (RAW_DATA, 2) and t_body == t_end:
                    inner += [_varint(RAW_DATA << 3 | 2) + _varint(hollow.nbytes), hollow]
                else:
                    inner.append(tensor[t_start:t_end])
            if not any(piece is hollow for piece in inner):
                raise ExportError(f"ONNX export: initializer {hollow.name} was serialized without its raw_data")
            pieces += _length_delimited(INITIALIZER, inner)
        out += _length_delimited(GRAPH, pieces)
    if next(hollows, "end") != "end":
        raise ExportError("ONNX export: the serialized graph holds fewer initializers than the model")
    return out


def _check_onnx(path: Path) -> None:
    onnx = require("onnx", "ONNX export")
    onnx.checker.check_model(str(path), full_check=True)


def _run_onnx(path: Path, x: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, ...]:
    session = ort_session(str(path), threads=torch.get_num_threads())  # export --threads reaches the check
    outputs = tuple(torch.from_numpy(array) for array in session.run(None, {"input": x.numpy()}))
    return outputs[0] if len(outputs) == 1 else outputs


def _write_pt2(model: torch.nn.Module, x: torch.Tensor, path: Path) -> None:
    x, dynamic_shapes = dynamic_batch(x)
    program = torch.export.export(model, (x,), dynamic_shapes=dynamic_shapes)
    with open(path, "wb") as handle:  # a file object: the temporary name does not end in .pt2
        torch.export.save(program, handle)


def _run_pt2(path: Path, x: torch.Tensor) -> torch.Tensor:
    return torch.export.load(str(path)).module()(x)


def _write_torchscript(model: torch.nn.Module, x: torch.Tensor, path: Path) -> None:
    # SpecNet's generic executor is not scriptable; tracing records its (static) program.
    # Batch stays dynamic: no op depends on the batch size.
    with warnings.catch_warnings():  # torch.jit is deprecated upstream but still what many deployments load
        warnings.simplefilter("ignore", FutureWarning)
        traced = torch.jit.trace(model, (x,), check_trace=False)
        # torch's archive on disk beside the output's temporary (a killed run's leftover is cleaned up with it),
        # not a second in-memory copy of every weight
        raw = path.with_name(path.name + ".raw.tmp")
        try:
            torch.jit.save(traced, str(raw))
            with open(path, "wb") as handle:
                _deterministic_archive(str(raw), handle)
        finally:
            raw.unlink(missing_ok=True)


_NOT_COPIED = ("version", ".data/version", ".data/serialization_id")  # the writer writes these itself


def _deterministic_archive(source: str, handle: BinaryIO) -> None:
    """Copy a TorchScript archive without what makes two exports of one model differ.

    ``torch.jit.save`` names the archive's folder after the file (a temporary name here) and
    writes ``*.debug_pkl`` records holding the Python call stack of the trace (absolute paths of
    this checkout and of the caller); the serialization id is a checksum over those. The copy,
    written by torch's own archive writer, keeps every other record byte for byte in the same
    order: folder ``archive``, no debug records (errors inside the loaded model name no Python
    source lines), an id of the content alone. Type names stay torch's (``___torch_mangle_N`` is
    numbered per process: exports made by one process after another differ there).
    """
    reader = torch._C.PyTorchFileReader(source)  # a file name: records are read one at a time
    writer = torch._C.PyTorchFileWriter(handle)
    writer.set_min_version(int(reader.get_record("version").decode().strip()))
    for name in reader.get_all_records():
        if name in _NOT_COPIED or name.endswith(".debug_pkl"):
            continue
        data = reader.get_record(name)
        writer.write_record(name, data, len(data))
    writer.write_end_of_file()


def _run_torchscript(path: Path, x: torch.Tensor) -> torch.Tensor:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        return torch.jit.load(str(path), map_location="cpu")(x)


def _export_darknet(weights: str | os.PathLike | Spec | SpecNet, out: str | os.PathLike, *, force: bool,
                    check_batch: int, seed: int) -> ExportResult:
    """OUT (.cfg) and its .weights beside it; BatchNorm is Darknet's own layer: never folded."""
    from ..interop.darknet_export import check_darknet, write_darknet
    from ..weights import read_metadata

    with OutputTransaction(force=force) as outputs:
        if isinstance(weights, (str, os.PathLike)):
            outputs.check_inputs(weights)
        reference, model = load_deployable(weights, fold_bn=False, seed=seed, share=True)  # BN kept: nothing changes
        meta = read_metadata(weights) if isinstance(weights, (str, os.PathLike)) and str(weights).endswith(
            ".safetensors") else None
        cfg, _ = write_darknet(model, out, outputs, meta)
    return ExportResult(cfg, "darknet", check_darknet(reference, cfg, check_batch=check_batch, seed=seed), [],
                        check_batch)


for _fmt in (ExportFormat("onnx", ".onnx", _write_onnx, _run_onnx, check=_check_onnx),
             ExportFormat("pt2", ".pt2", _write_pt2, _run_pt2),
             ExportFormat("torchscript", ".pt", _write_torchscript, _run_torchscript),
             ExportFormat("darknet", ".cfg", own=_export_darknet)):
    _FORMATS.add(_fmt.name, _fmt)


@dataclass
class ExportResult:
    path: Path
    format: str
    max_abs_diff: float
    folded_bn: list[str]
    batch_checked: int
    output_scale: float | None = None  # the largest |output| of the PyTorch model on the check batch

    def summary(self) -> dict[str, Any]:
        return {"path": str(self.path), "format": self.format, "max_abs_diff": self.max_abs_diff,
                "folded_bn": len(self.folded_bn), "batch_checked": self.batch_checked,
                "output_scale": self.output_scale}

    def check_line(self) -> str:
        """``max abs diff to PyTorch: D (batch of N)``, with D relative to the largest output when that is above 1
        (a network with random weights can output 1e5, where float32 rounding alone differs by 1e-2)."""
        relative = ""
        if self.max_abs_diff and self.output_scale and self.output_scale > 1:
            relative = f"; {self.max_abs_diff / self.output_scale:.2g} of the largest output, {self.output_scale:.3g}"
        return f"max abs diff to PyTorch: {self.max_abs_diff:.3g} (batch of {self.batch_checked}{relative})"


def export(weights: str | os.PathLike | Spec | SpecNet, out: str | os.PathLike, format: str | None = None, *,
           force: bool = False, fold_bn: bool = True, check_batch: int = 3, seed: int = 0) -> ExportResult:
    """Export a weights file (or a model, or a spec with seeded random weights) to ``out``.

    ``format`` defaults from the suffix of ``out`` (.onnx, .pt2, .pt). The written file is run
    on a batch of ``check_batch`` (a batch size other than the one exported with, to exercise
    the dynamic axis) and compared with the unfolded PyTorch model.
    """
    fmt = _FORMATS.get(format or _format_for(out))
    if fmt.own is not None:
        return fmt.own(weights, out, force=force, check_batch=check_batch, seed=seed)
    assert fmt.write is not None and fmt.run is not None
    if fmt.name == "onnx":
        for module in ("onnx", "onnxscript", "onnxruntime"):
            require(module, "ONNX export")
    with OutputTransaction(force=force) as outputs:  # refused before any work if it clobbers
        if isinstance(weights, (str, os.PathLike)):
            outputs.check_inputs(weights)
        target = outputs.reserve(out)
        x, expected, model = reference_then_deployable(
            weights, lambda shape: torch.randn(check_batch, *shape, generator=torch.Generator().manual_seed(seed + 1)),
            seed=seed)
        folded = fold_batchnorm(model) if fold_bn else []
        example = torch.randn(2, *model.ir.input_shape, generator=torch.Generator().manual_seed(seed))
        owned = [model]  # the writer takes the only reference: the model is let go once written
        del model
        outputs.write(target, _writer(fmt, owned, example))
    with torch.no_grad():
        got = fmt.run(target, x)
    return ExportResult(target, fmt.name, max_difference(got, expected), folded, check_batch, largest(expected))


def largest(outputs: torch.Tensor | tuple) -> float:
    """The largest absolute value of an output (a tensor, or a tuple of them)."""
    return max(float(t.abs().max()) for t in _tensors(outputs))


def _tensors(outputs: torch.Tensor | tuple | list) -> tuple | list:
    """A model's outputs as a sequence: a spec's ``outputs`` tuple as it is, one tensor as a 1-tuple."""
    return outputs if isinstance(outputs, (tuple, list)) else (outputs,)


def _writer(fmt: ExportFormat, owned: list[torch.nn.Module], example: torch.Tensor) -> Writer:
    """Write the model ``owned`` holds (taking it: it is freed once written), then check the file (``fmt.check``)."""
    assert fmt.write is not None

    def write(path: Path) -> None:
        fmt.write(owned.pop(), example, path)  # type: ignore[misc]
        gc.collect()  # torch.export's program holds the model in reference cycles: free it before the check and run
        if fmt.check is not None:
            fmt.check(path)

    return write


def max_difference(got: torch.Tensor | tuple, expected: torch.Tensor | tuple) -> float:
    """The largest absolute difference between two outputs (a tensor, or a tuple of them: a spec's ``outputs``)."""
    got, expected = _tensors(got), _tensors(expected)
    if len(got) != len(expected):
        raise ExportError(f"the exported model returns {len(got)} tensors, the model {len(expected)}")
    return max(float((a.float() - b).abs().max()) for a, b in zip(got, expected))


def _format_for(out: str | os.PathLike) -> str:
    suffix = Path(out).suffix.lower()
    for name, fmt in _FORMATS.items().items():
        if fmt.suffix == suffix:
            return name
    raise ExportError(f"{out}: cannot tell the format from the suffix '{suffix}' (give --format: "
                      f"{', '.join(export_formats())})")
