"""Per-layer latency tables (NetAdapt, Yang et al. 2018): measured cost of a pruned network.

For every conv/linear layer of a spec, the deployed layer (conv with folded BN, plus its ReLU)
is timed alone at a grid of input x output widths (fractions of the layer's widths; a
fixed width is not varied). The widths of a layer are those of the slots it reads and
writes, so pruning slots moves each layer to another grid point; the table interpolates
bilinearly between samples. Layers with the same shape share samples. The rest of the
network (pools, adds, head, framework overhead, and layers running slower inside the network
than alone) is folded into one factor: the full network's measured latency over the sum of
its layers at full width. Timings are minima over blocks, the least disturbed by other
processes.

A table is keyed by spec sha256 + machine + runtime + batch + threads and cached under
``$SLIMSPEC_CACHE`` (default ``~/.cache/slimspec``)``/latency/``.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import platform
from bisect import bisect_right
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import PruneError
from ..ir import IR
from ..utils.fileio import atomic_write, sha256_bytes
from .measure import measure_model
from .runtimes import get_runtime
from .timing import time_call, torch_threads

TABLE_FORMAT = 2
FRACTIONS = (0.125, 0.25, 0.5, 0.75, 1.0)


def machine_info(threads: int | None = None) -> dict[str, Any]:
    """What a latency measurement depends on besides the network (no host name)."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            cpu = next((line.split(":", 1)[1].strip() for line in handle if line.startswith("model name")), cpu)
    except OSError:
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "threads": threads or torch.get_num_threads(),
            "system": platform.system(), "torch": torch.__version__}


def machine_key(info: dict[str, Any]) -> str:
    return sha256_bytes(json.dumps(info, sort_keys=True))[:12]


def cache_dir() -> Path:
    root = os.environ.get("SLIMSPEC_CACHE") or Path.home() / ".cache" / "slimspec"
    return Path(root) / "latency"


def cache_path(spec_sha: str, runtime: str, batch: int, threads: int | None = None) -> Path:
    return cache_dir() / f"{spec_sha[:16]}-{machine_key(machine_info(threads))}-{runtime}-b{batch}.json"


# ---------------------------------------------------------------- layers of a network
def _relu_follows(ir: IR, name: str) -> bool:
    readers = [n for n in ir.nodes if name in n.inputs]
    if len(readers) == 1 and readers[0].op == "bn":
        return _relu_follows(ir, readers[0].name)
    return len(readers) == 1 and readers[0].op == "relu"


def layer_signatures(ir: IR) -> dict[str, dict[str, Any]]:
    """node name -> its layer's shape signature (everything but the widths) and its widths."""
    out = {}
    for node in ir.nodes_of("conv", "linear"):
        source = ir.node(node.inputs[0])
        sig: dict[str, Any] = {"op": node.op, "relu": _relu_follows(ir, node.name)}
        if node.op == "conv":
            sig.update(kernel=node.attr("kernel"), stride=node.attr("stride"), padding=node.attr("padding"),
                       hw=list(source.shape[1:]), groups=node.attr("groups", 1))
        out[node.name] = {"sig": sig, "cin": ir.axis_size(node.in_axis), "cout": node.shape[0],
                          "cin_fixed": not _prunable(ir, node.in_axis.segments),
                          "cout_fixed": not _prunable(ir, node.axis.segments)}
    return out


def _prunable(ir: IR, segments: Sequence[str]) -> bool:
    return any(ir.slots[s].prunable for s in segments)


def _grid(full: int, fixed: bool, fractions: Sequence[float]) -> list[int]:
    return [full] if fixed else sorted({max(1, round(full * f)) for f in fractions})


def _layer_module(sig: dict[str, Any], cin: int, cout: int) -> nn.Module:
    if sig["op"] == "conv":
        # grouped/depthwise convs: the largest group count that divides both sampled widths
        groups = math.gcd(math.gcd(cin, cout), sig.get("groups", 1) or 1)
        layer: nn.Module = nn.Conv2d(cin, cout, sig["kernel"], stride=sig["stride"], padding=sig["padding"],
                                     bias=True, groups=groups)
    else:
        layer = nn.Linear(cin, cout)
    return nn.Sequential(layer, nn.ReLU()) if sig["relu"] else nn.Sequential(layer)


def _layer_input(sig: dict[str, Any], cin: int) -> tuple[int, ...]:
    return (cin, *sig["hw"]) if sig["op"] == "conv" else (cin,)


def _time_layer(sig: dict[str, Any], cin: int, cout: int, runtime: str, batch: int, threads: int | None,
                min_run_time: float) -> float:
    torch.manual_seed(0)
    module = _layer_module(sig, cin, cout).eval()
    if runtime == "onnxruntime":  # a hand-built one-node graph: fast, no exporter round trip
        from .onnx_layers import layer_session

        x = torch.randn(batch, *_layer_input(sig, cin))
        session = layer_session(module, sig, x, threads)
        feed = {"input": x.numpy()}
        return time_call(lambda: session.run(None, feed), min_run_time=min_run_time, threads=threads).min_ms
    return measure_model(module, _layer_input(sig, cin), batch_size=batch, runtime=runtime, threads=threads,
                         min_run_time=min_run_time).min_ms


def profile(model: nn.Module, ir: IR, arch_sha: str, *, runtime: str = "eager", batch: int = 1,
            threads: int | None = None, fractions: Sequence[float] = FRACTIONS, min_run_time: float = 0.02,
            progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Measure a latency table for ``ir``; ``model`` is its deployable (BN-folded) network."""
    get_runtime(runtime)
    layers = layer_signatures(ir)
    entries: dict[str, dict[str, Any]] = {}
    keys: dict[str, str] = {}  # layer -> its entry (layers of the same shape share one)
    with torch_threads(threads):
        for name, layer in layers.items():
            cins = _grid(layer["cin"], layer["cin_fixed"], fractions)
            couts = _grid(layer["cout"], layer["cout_fixed"], fractions)
            key = keys[name] = _entry_key(layer["sig"], cins, couts)
            if key in entries:
                continue
            if progress:
                progress(f"profiling {name} ({len(cins)}x{len(couts)} widths)")
            ms = [[_time_layer(layer["sig"], ci, co, runtime, batch, threads, min_run_time) for co in couts]
                  for ci in cins]
            entries[key] = {"sig": layer["sig"], "cin": cins, "cout": couts, "ms": ms}
        total = measure_model(model, ir.input_shape, batch_size=batch, runtime=runtime, threads=threads,
                              min_run_time=max(min_run_time, 0.2)).min_ms
    table = {"format": TABLE_FORMAT, "spec": ir.name, "architecture_sha256": arch_sha, "runtime": runtime, "batch": batch,
             "machine": machine_info(threads), "fractions": list(fractions), "total_ms": total,
             "layers": {name: {"entry": keys[name], "cin": layer["cin"], "cout": layer["cout"]}
                        for name, layer in layers.items()},
             "entries": entries}
    full = sum(layer_ms(table, name, layer["cin"], layer["cout"]) for name, layer in layers.items())
    table["scale"] = total / full if full > 0 else 1.0
    return table


def _entry_key(sig: dict[str, Any], cins: list[int], couts: list[int]) -> str:
    text = json.dumps({"sig": sig, "cin": cins, "cout": couts}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


# ---------------------------------------------------------------- estimating
def _interp1(xs: Sequence[int], x: float) -> tuple[int, int, float]:
    """Segment (i, j) of ``xs`` around ``x`` and the weight of ``j`` (linear extrapolation at the ends)."""
    if len(xs) == 1:
        return 0, 0, 0.0
    i = min(max(bisect_right(xs, x) - 1, 0), len(xs) - 2)
    return i, i + 1, (x - xs[i]) / (xs[i + 1] - xs[i])


def interpolate(entry: dict[str, Any], cin: float, cout: float) -> float:
    """Bilinear interpolation of an entry's grid at (cin, cout); never below zero."""
    i0, i1, a = _interp1(entry["cin"], cin)
    j0, j1, b = _interp1(entry["cout"], cout)
    ms = entry["ms"]
    low = ms[i0][j0] * (1 - b) + ms[i0][j1] * b
    high = ms[i1][j0] * (1 - b) + ms[i1][j1] * b
    return max(0.0, low * (1 - a) + high * a)


def layer_ms(table: dict[str, Any], name: str, cin: int, cout: int) -> float:
    layer = table["layers"].get(name)
    if layer is None:
        raise PruneError(f"latency table of {table['spec']}: no layer '{name}' (a table is made for one spec)")
    return interpolate(table["entries"][layer["entry"]], cin, cout)


def estimate(table: dict[str, Any], ir: IR) -> float:
    """Estimated latency (ms) of ``ir`` (the table's spec, or a pruned version of it)."""
    layers = sum(layer_ms(table, name, layer["cin"], layer["cout"]) for name, layer in layer_signatures(ir).items())
    return table["scale"] * layers


# ---------------------------------------------------------------- files
def table_text(table: dict[str, Any]) -> str:
    return json.dumps(table, indent=1, sort_keys=True) + "\n"


def save_table(table: dict[str, Any], path: str | os.PathLike, overwrite: bool = True) -> Path:
    return atomic_write(path, table_text(table), overwrite=overwrite)


def load_table(path: str | os.PathLike) -> dict[str, Any]:
    file = Path(path)
    try:
        table = json.loads(file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise PruneError(f"{file}: no such latency table") from None
    except (OSError, ValueError) as exc:
        raise PruneError(f"{file}: not a latency table ({exc})") from None
    if not isinstance(table, dict) or table.get("format") != TABLE_FORMAT or "entries" not in table:
        raise PruneError(f"{file}: not a slimspec latency table (format {TABLE_FORMAT})")
    return table


def table_sha(table: dict[str, Any]) -> str:
    return sha256_bytes(json.dumps(table, sort_keys=True))


def architecture_sha(ir: IR) -> str:
    """sha256 of what latency depends on: the resolved spec data without name and provenance."""
    data = {k: v for k, v in ir.data.items() if k not in ("name", "pruned")}
    return sha256_bytes(json.dumps(data, sort_keys=True, default=str))


def table_for_spec(spec: Any, *, runtime: str = "eager", batch: int = 1, threads: int | None = None,
                   force: bool = False, progress: Callable[[str], None] | None = None,
                   **profile_options: Any) -> tuple[dict[str, Any], Path]:
    """The cached latency table of ``spec`` (a spec, its source, or an IR) on this machine.

    Profiled and cached when missing (or with ``force``). Keyed by the architecture (comments,
    name and provenance do not change latency), machine, runtime, batch and threads.
    """
    from ..document import Spec, load_spec
    from ..model import build
    from .fold import fold_batchnorm

    spec = Spec.from_data(dict(spec.data)) if isinstance(spec, IR) else load_spec(spec)
    arch_sha = architecture_sha(spec.ir)
    path = cache_path(arch_sha, runtime, batch, threads)
    if path.is_file() and not force:
        return load_table(path), path
    model = build(spec, "plain", seed=0).eval()  # latency depends on shapes only
    fold_batchnorm(model)
    table = profile(model, spec.ir, arch_sha, runtime=runtime, batch=batch, threads=threads,
                    progress=progress, **profile_options)
    save_table(table, path)
    return table, path
