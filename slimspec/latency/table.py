"""Per-layer latency tables (NetAdapt, Yang et al. 2018): measured cost of a pruned network.

For every conv/linear layer of a spec, the deployed layer (conv with folded BN, plus its ReLU)
is timed alone at a grid of input x output widths (fractions of the layer's widths; a
fixed width is not varied). The widths of a layer are those of the slots it reads and
writes, so pruning slots moves each layer to another grid point; the table interpolates
bilinearly between samples. Layers with the same shape share samples. The rest of the
network (pools, adds, head, framework overhead, and layers running slower inside the network
than alone) is folded into one factor: the full network's measured latency over the sum of
its layers at full width.

Profiling runs on one thread unless told otherwise. Each sample is timed in interleaved
repeats (every width of a layer in turn, three rounds) and keeps the minimum, the least
disturbed by other processes; a profile whose repeats spread too far, or whose network time
and sum of layers part by more than a factor, is refused (:class:`ProfileError`) and never
cached: a loaded machine's table would mislead every later prune.

A table is a :class:`LatencyTable`; its file is JSON (``"format": 2``), checked key by key
when read (:meth:`LatencyTable.from_json`: finite positive times, a full grid per entry,
at least one layer and entry, every layer's entry present), with one located line per
problem. Tables are keyed by architecture sha256 + machine (CPU, cores, system, torch,
threads) + runtime + batch and cached under ``$SLIMSPEC_CACHE`` (default
``~/.cache/slimspec``)``/latency/``; :meth:`LatencyTable.differences` lists how a table's key
differs from a run's (a prune refuses a foreign table unless told to accept it).
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import platform
from bisect import bisect_right
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, NoReturn

import torch
from torch import nn

from ..errors import PathPart, format_path
from ..ir import IR
from ..ir.ops import square
from ..utils.fileio import atomic_write, sha256_bytes
from .layers import OPS, LayerShape
from .measure import check_batch_memory, prepare_runner
from .runtimes import get_runtime
from .timing import LatencyError, check_threads, time_call, torch_threads

TABLE_FORMAT = 2
FRACTIONS = (0.125, 0.25, 0.5, 0.75, 1.0)


class LatencyTableError(LatencyError):
    """A latency table that cannot be used: one line naming the file, the key and the problem."""


@dataclass(frozen=True)
class Machine:
    """What a latency measurement depends on besides the network (no host name)."""

    cpu: str
    cores: int | None
    threads: int
    system: str
    torch: str

    @classmethod
    def current(cls, threads: int | None = None) -> "Machine":
        cpu = platform.processor() or platform.machine()
        try:
            with open("/proc/cpuinfo", encoding="utf-8") as handle:
                cpu = next((line.split(":", 1)[1].strip() for line in handle if line.startswith("model name")), cpu)
        except OSError:
            pass
        return cls(cpu, os.cpu_count(), threads or torch.get_num_threads(), platform.system(), torch.__version__)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def key(self) -> str:
        """Short hash naming this machine in cache file names."""
        return sha256_bytes(json.dumps(self.as_dict(), sort_keys=True))[:12]


@dataclass(frozen=True)
class Grid:
    """One layer shape's measured times (ms) at every sampled input x output width (``ms[i][j]``)."""

    shape: LayerShape
    cin: tuple[int, ...]
    cout: tuple[int, ...]
    ms: tuple[tuple[float, ...], ...]

    def interpolate(self, cin: float, cout: float) -> float:
        """Bilinear interpolation at (cin, cout), extrapolated linearly past the ends; never below zero."""
        i0, i1, a = _interp1(self.cin, cin)
        j0, j1, b = _interp1(self.cout, cout)
        ms = self.ms
        low = ms[i0][j0] * (1 - b) + ms[i0][j1] * b
        high = ms[i1][j0] * (1 - b) + ms[i1][j1] * b
        return max(0.0, low * (1 - a) + high * a)

    def as_dict(self) -> dict[str, Any]:
        return {"sig": self.shape.as_dict(), "cin": list(self.cin), "cout": list(self.cout),
                "ms": [list(row) for row in self.ms]}


@dataclass(frozen=True)
class TableLayer:
    """A conv/linear node of the profiled network: its grid (``entry``) and its full widths."""

    entry: str
    cin: int
    cout: int


@dataclass(frozen=True)
class LatencyTable:
    """A profiled network's per-layer latency grids, and the factor for the rest of it."""

    spec: str
    architecture_sha256: str
    runtime: str
    batch: int
    machine: Machine
    fractions: tuple[float, ...]
    total_ms: float
    scale: float
    layers: dict[str, TableLayer]
    entries: dict[str, Grid]

    def layer_ms(self, name: str, cin: int, cout: int) -> float:
        layer = self.layers.get(name)
        if layer is None:
            raise LatencyTableError(f"latency table of {self.spec}: no layer '{name}' (a table is made for one spec)")
        return self.entries[layer.entry].interpolate(cin, cout)

    def estimate(self, ir: IR) -> float:
        """Estimated latency (ms) of ``ir`` (the table's spec, or a pruned version of it)."""
        return self.scale * sum(self.layer_ms(name, layer.cin, layer.cout)
                                for name, layer in network_layers(ir).items())

    def differences(self, machine: Machine, runtime: str, batch: int) -> dict[str, dict[str, Any]]:
        """How this table's key differs from a run on ``machine`` in ``runtime`` at ``batch``:
        ``{what: {"table": value, "run": value}}`` (empty: the table was measured as the run runs)."""
        out = {name: {"table": value, "run": getattr(machine, name)}
               for name, value in self.machine.as_dict().items() if value != getattr(machine, name)}
        for name, mine, theirs in (("runtime", self.runtime, runtime), ("batch", self.batch, batch)):
            if mine != theirs:
                out[name] = {"table": mine, "run": theirs}
        return out

    @property
    def sha256(self) -> str:
        """sha256 of the table's content (recorded in a pruned spec's provenance)."""
        return sha256_bytes(json.dumps(self.as_dict(), sort_keys=True))

    # ------------------------------------------------------------ JSON
    def as_dict(self) -> dict[str, Any]:
        """The JSON document (format 2)."""
        return {"format": TABLE_FORMAT, "spec": self.spec, "architecture_sha256": self.architecture_sha256,
                "runtime": self.runtime, "batch": self.batch, "machine": self.machine.as_dict(),
                "fractions": list(self.fractions), "total_ms": self.total_ms, "scale": self.scale,
                "layers": {name: asdict(layer) for name, layer in self.layers.items()},
                "entries": {key: grid.as_dict() for key, grid in self.entries.items()}}

    def to_json(self) -> str:
        return json.dumps(self.as_dict(), indent=1, sort_keys=True) + "\n"

    @classmethod
    def from_json(cls, text: str, source: str = "<latency table>") -> "LatencyTable":
        """Parse and check a table file's text; :class:`LatencyTableError` (one located line) otherwise."""
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise LatencyTableError(f"{source}: not a latency table (JSON: {exc})") from None
        return _Reader(source).table(data)

    @classmethod
    def load(cls, path: str | os.PathLike) -> "LatencyTable":
        file = Path(path)
        try:
            text = file.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise LatencyTableError(f"{file}: no such latency table") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise LatencyTableError(f"{file}: not a latency table ({exc})") from None
        return cls.from_json(text, str(file))

    def save(self, path: str | os.PathLike, overwrite: bool = True) -> Path:
        return atomic_write(path, self.to_json(), overwrite=overwrite)


# ---------------------------------------------------------------- reading a table file
class _Reader:
    """Builds a :class:`LatencyTable` from parsed JSON, refusing the first bad key by its path."""

    def __init__(self, source: str) -> None:
        self.source = source

    def fail(self, path: Sequence[PathPart], problem: str) -> NoReturn:
        raise LatencyTableError(f"{self.source}: {format_path(path)}: {problem}")

    def mapping(self, value: Any, path: tuple[PathPart, ...], required: Sequence[str] | None = None,
                optional: Sequence[str] = ()) -> Mapping[str, Any]:
        if not isinstance(value, dict):
            self.fail(path, f"expected a mapping, got {_kind(value)}")
        if required is not None:
            for key in required:
                if key not in value:
                    self.fail((*path, key), "missing")
            for key in value:
                if key not in required and key not in optional:
                    self.fail((*path, key), "unknown key")
        return value

    def nonempty(self, value: Any, path: tuple[PathPart, ...], what: str) -> Mapping[str, Any]:
        if not self.mapping(value, path):
            self.fail(path, f"expected at least one {what}, got an empty mapping")
        return value

    def text(self, value: Any, path: tuple[PathPart, ...]) -> str:
        if not isinstance(value, str) or not value:
            self.fail(path, f"expected a non-empty string, got {_kind(value)}")
        return value

    def integer(self, value: Any, path: tuple[PathPart, ...], minimum: int) -> int:
        if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
            self.fail(path, f"expected an integer >= {minimum}, got {_kind(value)}")
        return value

    def size(self, value: Any, path: tuple[PathPart, ...], minimum: int) -> int | tuple[int, int]:
        """A kernel, stride or padding: an integer, or ``[h, w]`` (a non-square one), as the IR keeps it."""
        if isinstance(value, list) and len(value) == 2:
            return square((self.integer(value[0], (*path, 0), minimum), self.integer(value[1], (*path, 1), minimum)))
        return self.integer(value, path, minimum)

    def positive(self, value: Any, path: tuple[PathPart, ...], what: str) -> float:
        if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value) or value <= 0:
            self.fail(path, f"expected {what} (a finite number > 0), got {_kind(value)}")
        return float(value)

    def widths(self, value: Any, path: tuple[PathPart, ...]) -> tuple[int, ...]:
        if not isinstance(value, list) or not value:
            self.fail(path, f"expected a non-empty list of widths, got {_kind(value)}")
        widths = tuple(self.integer(w, (*path, i), 1) for i, w in enumerate(value))
        for i in range(1, len(widths)):
            if widths[i] <= widths[i - 1]:
                self.fail((*path, i), f"widths must increase, got {widths[i]} after {widths[i - 1]}")
        return widths

    def table(self, data: Any) -> LatencyTable:
        if not isinstance(data, dict) or data.get("format") != TABLE_FORMAT:
            found = data.get("format") if isinstance(data, dict) else None
            if isinstance(found, int) and not isinstance(found, bool) and found > TABLE_FORMAT:
                raise LatencyTableError(f"{self.source}: a latency table of format {found} (a newer slimspec); "
                                        f"this version reads format {TABLE_FORMAT}")
            raise LatencyTableError(f"{self.source}: not a slimspec latency table (format {TABLE_FORMAT})")
        self.mapping(data, (), ("format", "spec", "architecture_sha256", "runtime", "batch", "machine", "fractions",
                                "total_ms", "scale", "layers", "entries"))
        m = self.mapping(data["machine"], ("machine",), ("cpu", "cores", "threads", "system", "torch"))
        cores = None if m["cores"] is None else self.integer(m["cores"], ("machine", "cores"), 1)
        machine = Machine(self.text(m["cpu"], ("machine", "cpu")), cores,
                          self.integer(m["threads"], ("machine", "threads"), 1),
                          self.text(m["system"], ("machine", "system")), self.text(m["torch"], ("machine", "torch")))
        if not isinstance(data["fractions"], list) or not data["fractions"]:
            self.fail(("fractions",), f"expected a non-empty list, got {_kind(data['fractions'])}")
        fractions = tuple(self.positive(f, ("fractions", i), "a fraction") for i, f in enumerate(data["fractions"]))
        entries = {key: self.grid(value, ("entries", key))
                   for key, value in self.nonempty(data["entries"], ("entries",), "entry").items()}
        layers = {name: self.layer(value, ("layers", name), entries)
                  for name, value in self.nonempty(data["layers"], ("layers",), "layer").items()}
        return LatencyTable(self.text(data["spec"], ("spec",)),
                            self.text(data["architecture_sha256"], ("architecture_sha256",)),
                            self.text(data["runtime"], ("runtime",)), self.integer(data["batch"], ("batch",), 1),
                            machine, fractions, self.positive(data["total_ms"], ("total_ms",), "a time in ms"),
                            self.positive(data["scale"], ("scale",), "a factor"), layers, entries)

    def layer(self, value: Any, path: tuple[PathPart, ...], entries: Mapping[str, Grid]) -> TableLayer:
        layer = self.mapping(value, path, ("entry", "cin", "cout"))
        entry = self.text(layer["entry"], (*path, "entry"))
        if entry not in entries:
            self.fail((*path, "entry"), f"no entry '{entry}' in entries")
        return TableLayer(entry, self.integer(layer["cin"], (*path, "cin"), 1),
                          self.integer(layer["cout"], (*path, "cout"), 1))

    def grid(self, value: Any, path: tuple[PathPart, ...]) -> Grid:
        entry = self.mapping(value, path, ("sig", "cin", "cout", "ms"))
        shape = self.shape(entry["sig"], (*path, "sig"))
        cin, cout = self.widths(entry["cin"], (*path, "cin")), self.widths(entry["cout"], (*path, "cout"))
        rows = entry["ms"]
        full = f"{len(cin)} rows (one per cin) of {len(cout)} times (one per cout)"
        if not isinstance(rows, list) or len(rows) != len(cin):
            self.fail((*path, "ms"), f"expected {full}, got {_kind(rows)}")
        for i, row in enumerate(rows):
            if not isinstance(row, list) or len(row) != len(cout):
                self.fail((*path, "ms", i), f"expected {len(cout)} times (one per cout), got {_kind(row)}")
        ms = tuple(tuple(self.positive(t, (*path, "ms", i, j), "a time in ms") for j, t in enumerate(row))
                   for i, row in enumerate(rows))
        return Grid(shape, cin, cout, ms)

    def shape(self, value: Any, path: tuple[PathPart, ...]) -> LayerShape:
        op = self.mapping(value, path).get("op")
        if op not in OPS:
            self.fail((*path, "op"), f"expected one of {', '.join(OPS)}, got {_kind(op)}")
        if op == "linear":
            sig = self.mapping(value, path, ("op", "relu"))
        else:
            sig = self.mapping(value, path, ("op", "relu", "kernel", "stride", "padding", "hw", "groups"))
        if not isinstance(sig["relu"], bool):
            self.fail((*path, "relu"), f"expected true or false, got {_kind(sig['relu'])}")
        if op == "linear":
            return LayerShape(op, sig["relu"])
        hw = sig["hw"]
        if not isinstance(hw, list) or len(hw) != 2:
            self.fail((*path, "hw"), f"expected [height, width], got {_kind(hw)}")
        return LayerShape(op, sig["relu"], self.size(sig["kernel"], (*path, "kernel"), 1),
                          self.size(sig["stride"], (*path, "stride"), 1),
                          self.size(sig["padding"], (*path, "padding"), 0),
                          (self.integer(hw[0], (*path, "hw", 0), 1), self.integer(hw[1], (*path, "hw", 1), 1)),
                          self.integer(sig["groups"], (*path, "groups"), 1))


def _kind(value: Any) -> str:
    """A short description of a bad value for an error line."""
    if value is None:
        return "null"
    if isinstance(value, (bool, int, float)):
        return json.dumps(value)
    if isinstance(value, str):
        return repr(value[:40])
    if isinstance(value, list):
        return f"a list of {len(value)}"
    return "a mapping" if isinstance(value, dict) else type(value).__name__


# ---------------------------------------------------------------- cache
def cache_dir() -> Path:
    root = os.environ.get("SLIMSPEC_CACHE") or Path.home() / ".cache" / "slimspec"
    return Path(root) / "latency"


def cache_path(spec_sha: str, runtime: str, batch: int, threads: int | None = None) -> Path:
    return cache_dir() / f"{spec_sha[:16]}-{Machine.current(threads).key}-{runtime}-b{batch}.json"


# ---------------------------------------------------------------- layers of a network
@dataclass(frozen=True)
class NetworkLayer:
    """A conv/linear node of a network: its shape, its widths, and which of them pruning can change."""

    shape: LayerShape
    cin: int
    cout: int
    cin_fixed: bool
    cout_fixed: bool


def _relu_follows(ir: IR, name: str) -> bool:
    readers = [n for n in ir.nodes if name in n.inputs]
    if len(readers) == 1 and readers[0].op == "bn":
        return _relu_follows(ir, readers[0].name)
    return len(readers) == 1 and readers[0].op == "relu"


def network_layers(ir: IR) -> dict[str, NetworkLayer]:
    """node name -> the conv/linear layer a table times for it."""
    out = {}
    for node in ir.nodes_of("conv", "linear"):
        source = ir.node(node.inputs[0])
        relu = _relu_follows(ir, node.name)
        if node.op == "conv":
            hw = tuple(source.shape[1:])
            shape = LayerShape("conv", relu, node.attr("kernel"), node.attr("stride"), node.attr("padding"),
                               (hw[0], hw[1]), node.attr("groups", 1))
        else:
            shape = LayerShape("linear", relu)
        out[node.name] = NetworkLayer(shape, ir.axis_size(node.in_axis), node.shape[0],
                                      not _prunable(ir, node.in_axis.segments), not _prunable(ir, node.axis.segments))
    return out


def _prunable(ir: IR, segments: Sequence[str]) -> bool:
    return any(ir.slots[s].prunable for s in segments)


def _grid(full: int, fixed: bool, fractions: Sequence[float]) -> tuple[int, ...]:
    return (full,) if fixed else tuple(sorted({max(1, round(full * f)) for f in fractions}))


# ---------------------------------------------------------------- profiling
REPEATS = 3  # interleaved rounds per sample; a sample's time is its minimum over them
MAX_SPREAD = 1.0  # a sample's fastest time must recur: its next fastest repeat within (1 + MAX_SPREAD) x of it
MAX_SCALE = 8.0  # refused: a network measured over MAX_SCALE x (or under 1 / MAX_SCALE x) the sum of its layers
DEFAULT_THREADS = 1  # tables are profiled (and keyed) on one thread unless told otherwise


class ProfileError(LatencyTableError):
    """A profile too disturbed to trust (a busy machine): refused, and nothing cached."""


def _layer_runner(shape: LayerShape, cin: int, cout: int, runtime: str, batch: int,
                  threads: int | None) -> Callable[[], object]:
    """One forward pass of a layer at ``cin`` x ``cout`` in ``runtime`` (through its layer hook, if any)."""
    torch.manual_seed(0)
    module = shape.module(cin, cout).eval()
    x = torch.randn(batch, *shape.input_shape(cin))
    return get_runtime(runtime).prepare_layer(module, shape, x, threads)


def _network_runner(model: nn.Module, ir: IR, runtime: str, batch: int, threads: int | None) -> Callable[[], object]:
    return prepare_runner(model, ir.input_shape, batch_size=batch, runtime=runtime, threads=threads)


def _time_once(run: Callable[[], object], min_run_time: float, threads: int | None) -> float:
    """One repeat: the minimum time (ms) over a few blocks of calls."""
    return time_call(run, min_run_time=min_run_time, threads=threads, min_blocks=4).min_ms


def _repeats(runners: Sequence[Callable[[], object]], repeats: int, min_run_time: float,
             threads: int | None) -> list[list[float]]:
    """Each runner's time (ms) in each of ``repeats`` rounds; a round times every runner in turn."""
    samples: list[list[float]] = [[] for _ in runners]
    for _ in range(repeats):
        for times, run in zip(samples, runners):
            times.append(_time_once(run, min_run_time, threads))
    return samples


def _recurs(times: Sequence[float], max_spread: float) -> bool:
    """Whether a sample's fastest time recurs: its next fastest repeat within ``1 + max_spread`` x of it."""
    ordered = sorted(times)
    low, second = ordered[0], ordered[min(1, len(ordered) - 1)]
    return math.isfinite(second) and low > 0 and second <= (1 + max_spread) * low


def _steady(runners: Sequence[Callable[[], object]], samples: list[list[float]], *, retries: int,
            min_run_time: float, threads: int | None, max_spread: float) -> list[float]:
    """Each sample's minimum, once its fastest time recurs: samples whose fastest repeat stands alone
    (a busy spell slowed the others) are timed again, up to ``retries`` more interleaved rounds.
    Returns the minima; a sample still unsteady is left to :func:`_refuse` (its minimum is NaN)."""
    for _ in range(retries):
        unsteady = [i for i, times in enumerate(samples) if not _recurs(times, max_spread)]
        if not unsteady:
            break
        for i, times in zip(unsteady, _repeats([runners[i] for i in unsteady], 1, min_run_time, threads)):
            samples[i] += times
    return [min(times) if _recurs(times, max_spread) else math.nan for times in samples]


def _refuse(spec: str, what: str, times: Sequence[float], max_spread: float) -> NoReturn:
    ordered = sorted(times)
    raise ProfileError(f"{spec}: profile refused, the machine is too busy: {what} took {ordered[0]:.4g}-"
                       f"{ordered[-1]:.4g} ms over {len(times)} repeats and its fastest time did not recur (the next "
                       f"fastest {ordered[1] / ordered[0]:.3g}x it; at most {1 + max_spread:g}x); nothing cached: "
                       f"profile on a quieter machine (one thread: --threads 1)")


def profile(model: nn.Module, ir: IR, arch_sha: str, *, runtime: str = "eager", batch: int = 1,
            threads: int | None = None, fractions: Sequence[float] = FRACTIONS, min_run_time: float = 0.02,
            repeats: int = REPEATS, max_spread: float = MAX_SPREAD, max_scale: float = MAX_SCALE,
            progress: Callable[[str], None] | None = None) -> LatencyTable:
    """Measure a latency table for ``ir``; ``model`` is its deployable (BN-folded) network.

    On ``threads`` (default one). Each layer's sampled widths are timed in ``repeats``
    interleaved rounds (so a busy spell slows all of them alike) and each keeps its minimum; the
    whole network is timed ``repeats`` times spread through the profile. A minimum must recur
    (the next fastest repeat within ``1 + max_spread`` x of it): a sample whose fastest time
    stands alone is timed again, up to ``2 x repeats`` more rounds. Refused
    (:class:`ProfileError`) when one still does not recur, or when the network's time and the
    sum of its layers part by more than ``max_scale`` x either way: what a loaded machine measures.
    """
    get_runtime(runtime)
    threads = DEFAULT_THREADS if threads is None else check_threads(threads)
    if not isinstance(repeats, int) or isinstance(repeats, bool) or repeats < 1:
        raise LatencyError(f"repeats must be an integer >= 1, got {repeats!r}")
    layers = network_layers(ir)
    entries: dict[str, Grid] = {}
    keys: dict[str, str] = {}  # layer -> its entry (layers of the same shape share one)
    todo: dict[str, tuple[str, NetworkLayer, tuple[int, ...], tuple[int, ...]]] = {}
    for name, layer in layers.items():
        cins = _grid(layer.cin, layer.cin_fixed, fractions)
        couts = _grid(layer.cout, layer.cout_fixed, fractions)
        key = keys[name] = _entry_key(layer.shape, cins, couts)
        todo.setdefault(key, (name, layer, cins, couts))
    per_repeat = min_run_time / repeats
    network_times: list[float] = []
    pending = list(todo.items())
    # the network's repeats are spread from before the first entry to after the last one
    network_at = [round(r * len(pending) / max(repeats - 1, 1)) for r in range(repeats)]
    with torch_threads(threads):
        network = _network_runner(model, ir, runtime, batch, threads)
        for index in range(len(pending) + 1):
            while network_at and network_at[0] <= index:
                network_at.pop(0)
                network_times += _repeats([network], 1, max(min_run_time, 0.2) / repeats, threads)[0]
            if index == len(pending):
                break
            key, (name, layer, cins, couts) = pending[index]
            if progress:
                progress(f"profiling {name} ({len(cins)}x{len(couts)} widths, {repeats} repeats)")
            points = [(ci, co) for ci in cins for co in couts]
            runners = [_layer_runner(layer.shape, ci, co, runtime, batch, threads) for ci, co in points]
            samples = _repeats(runners, repeats, per_repeat, threads)
            minima = _steady(runners, samples, retries=2 * repeats, min_run_time=per_repeat, threads=threads,
                             max_spread=max_spread)
            for point, low, times in zip(points, minima, samples):
                if math.isnan(low):
                    _refuse(ir.name, f"{name} at {point[0]}x{point[1]} channels", times, max_spread)
            ms = dict(zip(points, minima))
            entries[key] = Grid(layer.shape, cins, couts, tuple(tuple(ms[(ci, co)] for co in couts) for ci in cins))
        (total,) = _steady([network], [network_times], retries=2 * repeats,
                           min_run_time=max(min_run_time, 0.2) / repeats, threads=threads, max_spread=max_spread)
    if math.isnan(total):
        _refuse(ir.name, "the whole network", network_times, max_spread)
    full = sum(entries[keys[name]].interpolate(layer.cin, layer.cout) for name, layer in layers.items())
    scale = total / full if full > 0 else 1.0
    if not 1 / max_scale <= scale <= max_scale:
        raise ProfileError(f"{ir.name}: profile refused: the network measured {total:.4g} ms but its layers add up "
                           f"to {full:.4g} ms ({scale:.3g}x; at most {max_scale:g}x either way): a busy machine; "
                           f"nothing cached: profile on a quieter machine (one thread: --threads 1)")
    return LatencyTable(ir.name, arch_sha, runtime, batch, Machine.current(threads), tuple(fractions), total, scale,
                        {name: TableLayer(keys[name], layer.cin, layer.cout) for name, layer in layers.items()},
                        entries)


def _entry_key(shape: LayerShape, cins: Sequence[int], couts: Sequence[int]) -> str:
    """An entry's name: layers of one shape sampled at the same widths share it."""
    text = json.dumps({"sig": shape.as_dict(), "cin": list(cins), "cout": list(couts)}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


# ---------------------------------------------------------------- estimating
def _interp1(xs: Sequence[int], x: float) -> tuple[int, int, float]:
    """Segment (i, j) of ``xs`` around ``x`` and the weight of ``j`` (linear extrapolation at the ends)."""
    if len(xs) == 1:
        return 0, 0, 0.0
    i = min(max(bisect_right(xs, x) - 1, 0), len(xs) - 2)
    return i, i + 1, (x - xs[i]) / (xs[i + 1] - xs[i])


def architecture_sha(ir: IR) -> str:
    """sha256 of what latency depends on: the resolved spec data without name and provenance."""
    data = {k: v for k, v in ir.data.items() if k not in ("name", "pruned")}
    return sha256_bytes(json.dumps(data, sort_keys=True, default=str))


def table_for_spec(spec: Any, *, runtime: str = "eager", batch: int = 1, threads: int | None = None,
                   force: bool = False, progress: Callable[[str], None] | None = None,
                   **profile_options: Any) -> tuple[LatencyTable, Path]:
    """The cached latency table of ``spec`` (a spec, its source, or an IR) on this machine.

    Profiled and cached when missing (or with ``force``) on ``threads`` (default one). Keyed by
    the architecture (comments, name and provenance do not change latency), machine, runtime,
    batch and threads; a cached file that is unreadable or keyed otherwise is profiled again.
    A profile refused as disturbed (:class:`ProfileError`) leaves the cache as it was.
    """
    from ..document import Spec, load_spec
    from ..model import build
    from .fold import fold_batchnorm

    threads = DEFAULT_THREADS if threads is None else check_threads(threads)
    get_runtime(runtime)
    spec = Spec.from_data(dict(spec.data)) if isinstance(spec, IR) else load_spec(spec)
    arch_sha = architecture_sha(spec.ir)
    check_batch_memory(spec.ir, batch)
    path = cache_path(arch_sha, runtime, batch, threads)
    if path.is_file() and not force:
        try:
            cached = LatencyTable.load(path)
        except LatencyTableError:
            cached = None
        if cached is not None and cached.architecture_sha256 == arch_sha \
                and not cached.differences(Machine.current(threads), runtime, batch):
            return cached, path
    model = build(spec, "plain", seed=0).eval()  # latency depends on shapes only
    fold_batchnorm(model)
    table = profile(model, spec.ir, arch_sha, runtime=runtime, batch=batch, threads=threads,
                    progress=progress, **profile_options)
    table.save(path)
    return table, path
