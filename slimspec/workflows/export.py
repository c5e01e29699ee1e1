"""``slimspec export``: a weights file -> ONNX, a torch.export program (.pt2) or TorchScript.

The model is made deployable first (plain layers, gates and masks folded, BatchNorm folded
into the conv/linear in front of it), exported with a dynamic batch axis, then loaded back
with the target runtime alone (ONNX Runtime, ``torch.export.load``, ``torch.jit.load``) and
run once: the maximum absolute difference to the PyTorch model is reported. The files
need no slimspec to load. Writes are atomic; an existing output needs ``force``.
"""
from __future__ import annotations

import os
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import torch

from ..document import Spec
from ..errors import ExportError
from ..latency.fold import fold_batchnorm
from ..latency.runtimes import dynamic_batch, onnx_export, ort_session, require
from ..nn import SpecNet
from ..utils.fileio import OutputTransaction
from ..utils.registry import Registry
from .deploy import load_deployable


@dataclass(frozen=True)
class ExportFormat:
    """How to write one format and how to run the written file without slimspec; ``own``: a format that exports
    itself (Darknet: a .cfg and its .weights, BN kept)."""

    name: str
    suffix: str
    write: Callable[[torch.nn.Module, torch.Tensor, Path], None] | None = None
    run: Callable[[Path, torch.Tensor], torch.Tensor] | None = None
    own: Callable[..., "ExportResult"] | None = None


_FORMATS: Registry[ExportFormat] = Registry("export format", ExportError)


def export_formats() -> list[str]:
    return _FORMATS.names()


def _write_onnx(model: torch.nn.Module, x: torch.Tensor, path: Path) -> None:
    onnx_export(model, x, str(path))
    onnx = require("onnx", "ONNX export")
    onnx.checker.check_model(str(path), full_check=True)


def _run_onnx(path: Path, x: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, ...]:
    session = ort_session(str(path))
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
        reference, model = load_deployable(weights, fold_bn=False, seed=seed)
        meta = read_metadata(weights) if isinstance(weights, (str, os.PathLike)) and str(weights).endswith(
            ".safetensors") else None
        cfg, _ = write_darknet(model, out, outputs, meta)
    return ExportResult(cfg, "darknet", check_darknet(reference, cfg, check_batch=check_batch, seed=seed), [],
                        check_batch)


for _fmt in (ExportFormat("onnx", ".onnx", _write_onnx, _run_onnx),
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

    def summary(self) -> dict[str, Any]:
        return {"path": str(self.path), "format": self.format, "max_abs_diff": self.max_abs_diff,
                "folded_bn": len(self.folded_bn), "batch_checked": self.batch_checked}


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
        reference, model = load_deployable(weights, fold_bn=False, seed=seed)
        folded = fold_batchnorm(model) if fold_bn else []
        shape = model.ir.input_shape
        example = torch.randn(2, *shape, generator=torch.Generator().manual_seed(seed))
        outputs.write(target, lambda tmp: fmt.write(model, example, tmp))
    x = torch.randn(check_batch, *shape, generator=torch.Generator().manual_seed(seed + 1))
    with torch.no_grad():
        expected = reference(x)
        got = fmt.run(target, x)
    return ExportResult(target, fmt.name, max_difference(got, expected), folded, check_batch)


def max_difference(got: torch.Tensor | tuple, expected: torch.Tensor | tuple) -> float:
    """The largest absolute difference between two outputs (a tensor, or a tuple of them: a spec's ``outputs``)."""
    got, expected = (t if isinstance(t, (tuple, list)) else (t,) for t in (got, expected))
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
