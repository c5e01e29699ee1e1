"""Prune from the file: a data-free criterion needs no ``nn.Module`` at all.

The spec and its IR say which tensors each slot indexes, so l1, slimming, gate, random and
attention-weight score straight from the weights file, memory-mapped
(:class:`~slimspec.weights.MappedWeights`: one tensor's pages resident at a time), the policy
decides on the IR, and the new file is the old tensors indexed by the kept channels, streamed
into place one at a time after the header (:func:`~slimspec.weights.stream_safetensors`).
Neither the source model, nor the pruned one, nor a copy of the state is ever held; the
pruned model is built only when asked for (``result.model``) or for the exactness check
(:func:`slimspec.pruning.exactness.check_exact`). The bytes are those of the model path
(``prune(..., from_file=False)``): the same criteria on the same tensors, the same decision,
and each tensor made by :func:`~slimspec.pruning.transplant.transplant` itself, one key at a
time. Torch-Pruning, by contrast, builds and traces the model before it can prune anything.

``magnitude`` (unstructured masks, Han et al. 2015) prunes from the file too: a radix select
over the scores' bit patterns (:mod:`.radix`) finds the cut the model path's stable sort makes,
reading one tensor at a time, and each weight times its mask, and the mask, are made as the
new file is written (:func:`_masked_file`).
"""
from __future__ import annotations

import hashlib
import math
import os
import threading
from collections import ChainMap
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import torch

from ..document import Spec, load_spec, spec_from_text
from ..errors import WeightsError
from ..families import get_family
from ..ir import IR, count_params
from ..model import build_from_state, check_size, load_model, migrate_names, mode_of_state
from ..nn import LAYER_SETS, SpecNet
from ..nn.net import make_module
from ..weights import (MappedWeights, TensorInfo, embedded_spec_text, state_problems, stream_safetensors,
                       weights_metadata)
from .steps import check_finite, check_patterns, checked_scores, describe, ignored_notes, new_sizes
from .criteria import Criterion, ScoreContext
from .options import PruneOptions
from .report import slot_rows
from .result import Deferred, PruneResult
from .transplant import fold_gates, gate_fold_keys, transplant
from .unstructured import (StreamedMasks, WeightScorer, mask_ratio, masked_pair, masked_spec, refuse_gated,
                           scored_weights)


class _Hasher(threading.Thread):
    """The file's sha256 (for the provenance), computed beside the scoring (hashlib drops the GIL)."""

    def __init__(self, path: str | os.PathLike) -> None:
        super().__init__(daemon=True)
        self.path, self.digest, self.error = path, "", None

    def run(self) -> None:
        try:
            digest = hashlib.sha256()
            with open(self.path, "rb", buffering=0) as handle:
                buffer = bytearray(1 << 22)
                view = memoryview(buffer)
                while size := handle.readinto(buffer):
                    digest.update(view[:size])
            self.digest = digest.hexdigest()
        except OSError as exc:
            self.error = exc

    def result(self) -> str:
        self.join()
        if self.error is not None:
            raise self.error
        return self.digest


def _source_mode(spec: Spec, names: Iterable[str]) -> str:
    """The mode the weights were saved from (as :func:`slimspec.load_model` finds it)."""
    names = list(names)
    ir = spec.ir
    for name in names:
        prefix = name.rsplit(".", 1)[0]
        if name.endswith(".weight") and prefix in ir and ir.node(prefix).op == "gate":
            return "gated"
    return mode_of_state(dict.fromkeys(names))  # type: ignore[arg-type]


def open_source(weights: str | os.PathLike, spec: Spec | str | os.PathLike | None = None
                ) -> tuple[Spec, MappedWeights, str, bool]:
    """``(spec, mapped state, source mode, binary gates)``: checked against the spec as ``load_model`` checks
    the tensors (names and shapes, from the header alone), without building or loading anything."""
    mapped = MappedWeights(weights)
    metadata = mapped.metadata
    parent = load_spec(spec) if spec is not None else spec_from_text(embedded_spec_text(metadata, weights),
                                                                     f"{weights}#spec")
    renames = migrate_names(parent, {name: name for name in mapped})  # today's name -> the file's
    mode = _source_mode(parent, renames)
    binary = metadata.get("slimspec.binary_gates") == "true"
    check_size(parent)
    with torch.device("meta"):
        expected = SpecNet(parent, mode, binary_gates=binary).state_dict()
    problems = state_problems(expected, {name: mapped.info(old).meta() for name, old in renames.items()})
    if problems:
        raise WeightsError(f"{weights}: weights do not fit the spec: " + " | ".join(problems))
    mapped.expect(renames={k: v for k, v in renames.items() if k != v},
                  dtypes={name: tensor.dtype for name, tensor in expected.items()})
    return parent, mapped, mode, binary


def _fitted(name: str, value: torch.Tensor, infos: Mapping[str, TensorInfo]) -> torch.Tensor:
    """``value`` in the pruned network's dtype for ``name``, refused if its shape is not the spec's."""
    if tuple(value.shape) != infos[name].shape:
        raise WeightsError(f"transplant: weights do not fit the spec: shape mismatch {name} "
                           f"{tuple(value.shape)} vs spec {infos[name].shape}")
    return value.to(infos[name].dtype)


def _network_infos(spec: Spec, mode: str) -> dict[str, TensorInfo]:
    """The tensor names, shapes and dtypes of ``spec``'s network in ``mode``, without allocating it."""
    with torch.device("meta"):
        expected = SpecNet(spec, mode).state_dict()
    return {name: TensorInfo(tensor.dtype, tuple(tensor.shape)) for name, tensor in expected.items()}


def _fresh(ir: IR, name: str) -> torch.Tensor:
    """A buffer of the masked network that a plain source lacks (a channel mask), as a new module holds it."""
    module, _, key = name.rpartition(".")
    return make_module(ir, ir.node(module), LAYER_SETS["masked"]()).state_dict()[key]


def _streamed_result(weights: str | os.PathLike, spec: Spec | str | os.PathLike | None, new_spec: Spec,
                     mode: str, tensor: Callable[[str], torch.Tensor], infos: Mapping[str, TensorInfo],
                     **fields: Any) -> PruneResult:
    """A :class:`PruneResult` whose weights ``tensor(name)`` makes one at a time: streamed by ``save``,
    the pruned model and the source built only when read."""
    def writer():
        meta = weights_metadata(new_spec.text)

        def write(path) -> None:
            with open(path, "xb") as handle:
                stream_safetensors(handle, infos, meta, tensor)
        return write

    def pruned_model() -> torch.nn.Module:
        return build_from_state(new_spec, {name: tensor(name) for name in infos}, mode, source="transplant")

    return PruneResult(new_spec, Deferred(pruned_model), source_model=Deferred(lambda: load_model(weights, spec)[0]),
                       weights_writer=writer, **fields)


def prune_file(weights: str | os.PathLike, options: PruneOptions, criterion: Criterion, *,
               spec: Spec | str | os.PathLike | None = None) -> PruneResult:
    """:func:`slimspec.prune` for a weights file and a data-free criterion, from the file: a structured one,
    or one masking weights it scores one tensor at a time (:func:`_masked_file`)."""
    hasher = _Hasher(weights)
    parent, mapped, source_mode, binary = open_source(weights, spec)
    hasher.start()
    try:
        check_finite(mapped)
        ir = parent.ir
        check_patterns(ir, options, criterion)
        ignored = ignored_notes(options, criterion, source_mode)
        masks: StreamedMasks | None = None
        if isinstance(criterion, WeightScorer) and not criterion.structured:
            refuse_gated(source_mode)
            sizes = {name: math.prod(mapped.info(name).shape)
                     for name in scored_weights(ir, criterion.weight_names(ir), options.exclude)}
            scope = options.scope or criterion.default_scope
            ratio = mask_ratio(options, count_params(ir), sum(sizes.values()))
            masks = StreamedMasks(criterion, mapped, sizes, ratio, scope)  # a global cut reads while hashing
        else:
            scores = checked_scores(criterion, ScoreContext(ir, mapped, None, None, options.seed), options, parent)
    finally:
        weights_sha = hasher.result()
    mapped.release()
    if masks is not None:
        return _masked_file(weights, spec, parent, mapped, masks, options, weights_sha, ignored)
    new_spec, decision, params, macs, notes = describe(parent, scores, options, criterion, weights_sha, ignored)

    state: Mapping[str, torch.Tensor] = mapped
    if source_mode == "gated":  # gates folded into what they scale: only those tensors are copied
        folded = fold_gates(ir, {key: mapped[key] for key in gate_fold_keys(ir, mapped)},  # fold_gates copies
                            binary=options.binary_gates or binary)
        mapped.release()
        state = ChainMap(folded, mapped)  # type: ignore[arg-type]
    renames = get_family(parent.arch).renames(parent.data, ir, new_sizes(decision))
    mode = "masked" if source_mode == "masked" else "plain"
    infos = _network_infos(new_spec, mode)

    def tensor(name: str) -> torch.Tensor:
        """One tensor of the pruned network: transplant's own indexing, one key at a time."""
        value = transplant(ir, state, decision.kept, {name}, renames)[name]
        mapped.release()
        return _fitted(name, value, infos)

    return _streamed_result(weights, spec, new_spec, mode, tensor, infos, parent=parent,
                            report=slot_rows(ir, decision.kept), decision=decision, options=options, params=params,
                            macs=macs, notes=notes)


def _masked_file(weights: str | os.PathLike, spec: Spec | str | os.PathLike | None, parent: Spec,
                 mapped: MappedWeights, masks: StreamedMasks, options: PruneOptions, weights_sha: str,
                 ignored: list[str]) -> PruneResult:
    """Unstructured masks (Han et al. 2015's magnitude) from the file: each weight, times its mask, and the
    mask made one at a time as the new file is written (:func:`~slimspec.pruning.unstructured.prune_weights`'s
    tensors, without the source model, a second one, or a copy of the state or of the scores)."""
    new_spec, decision, rows, params, macs, notes = masked_spec(
        parent, options, masks.ratio, masks.scope, weights_sha,
        {name: (math.prod(mapped.info(name).shape), kept) for name, kept in masks.kept.items()}, mapped)
    mapped.release()
    infos = _network_infos(new_spec, "masked")
    weight_of = {f"{name}_mask": name for name in masks.kept}  # mask buffer -> its weight
    last: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}  # one weight's pair (its mask is written beside it)

    def tensor(name: str) -> torch.Tensor:
        """One tensor of the masked network: a weight times its mask, the mask, or the source's own tensor."""
        layer = weight_of.get(name, name)
        if layer in masks.kept:
            if layer not in last:
                last.clear()
                last[layer] = masked_pair(mapped[layer], masks.mask(layer))
            weight, mask = last[layer]
            value = weight if name == layer else mask
        else:
            value = mapped[name] if name in mapped else _fresh(new_spec.ir, name)
        mapped.release()
        return _fitted(name, value, infos)

    return _streamed_result(weights, spec, new_spec, "masked", tensor, infos, parent=parent, report=rows,
                            decision=decision, options=options, params=params, macs=macs, notes=ignored + notes)
