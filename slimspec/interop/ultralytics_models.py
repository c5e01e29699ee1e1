"""``slimspec import ultralytics:MODEL.yaml``: an Ultralytics YOLO detector (YOLOv8) as a ``graph`` spec plus weights.

Ultralytics (``pip install 'slimspec[ultralytics]'``, optional, used offline) builds the model from
its own model YAML (``DetectionModel(cfg)``: ``yolov8n.yaml`` picks the ``n`` scale of
``yolov8.yaml``; a path to a user's YAML works alike). Trained weights come only from a state dict
the user extracted to safetensors (slimspec never unpickles a ``.pt``; see the README's one-liner).

Ultralytics' own forward is not fx-traceable, so :class:`TraceableDetection` replays the
DetectionModel's layers instead and is what :mod:`slimspec.interop.fx_trace` traces:

* ``DetectionModel._predict_once`` routes through ``m.f`` / ``self.save`` lists at run time: the
  replay does the same routing in plain Python (the indices are constants, the tensors fx proxies).
* ``C2f.forward`` does ``list(self.cv1(x).chunk(2, 1))``: fx proxies cannot be iterated except by
  tuple unpacking (``list()`` of a proxy raises ``TraceError: Proxy object cannot be iterated``);
  the replay writes ``a, b = cv1(x).chunk(2, 1)``. (``C2f.forward_split``, ``split((c, c), 1)`` then
  ``[y[0], y[1]]``, does trace, into the same two ``chunk`` layers, but it is not what the model runs.)
* ``Detect.forward`` decodes (``make_anchors`` from the maps' shapes, ``self.shape`` caching, the
  DFL softmax, ``dist2bbox``) and returns a dict: data-dependent Python the spec has no layer for.
  The replay returns its raw per-level maps ``cat(cv2[i](x[i]), cv3[i](x[i]))`` (box distribution
  ``4 * reg_max`` channels, then ``nc`` class logits) as a tuple: the spec's ``outputs``. The decode
  (DFL, anchors, strides) stays outside, so the spec's params are Ultralytics' count less the DFL
  conv's fixed ``reg_max`` weights (16).

Everything else (``Conv``, ``Bottleneck``, ``SPPF``'s repeated max pool, ``Concat``,
``nn.Upsample``) is traced through its own forward. Heads other than ``Detect`` (Segment, Pose, OBB,
classification, end-to-end heads) are refused in one line.
"""
from __future__ import annotations

import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..document import Spec, spec_from_text
from ..errors import ModelImportError

__all__ = ["import_ultralytics", "ultralytics_model", "TraceableDetection", "raw_outputs", "dfl_params",
           "DEFAULT_INPUT"]

DEFAULT_INPUT = (3, 640, 640)
Replay = Callable[[nn.Module, Any], Any]


def _ultralytics() -> Any:
    try:
        from ultralytics.nn import tasks
    except ImportError as exc:
        raise ModelImportError(f"ultralytics: cannot import ultralytics ({exc}); install it with "
                               "pip install 'slimspec[ultralytics]'") from None
    return tasks


# -- the traceable replay ---------------------------------------------------------------------------
def _c2f(m: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """C2f (and YOLO11's C2f subclass C3k2) with the chunk unpacked (``list(proxy)`` does not trace)."""
    a, b = m.cv1(x).chunk(2, 1)
    y = [a, b]
    for block in m.m:
        y.append(block(y[-1]))
    return m.cv2(torch.cat(y, 1))


def _detect(m: nn.Module, x: list[torch.Tensor]) -> tuple[torch.Tensor, ...]:
    """Detect's raw per-level maps (what ``forward_head`` flattens into ``boxes`` and ``scores``)."""
    return tuple(torch.cat((m.cv2[i](x[i]), m.cv3[i](x[i])), 1) for i in range(m.nl))


def _own(m: nn.Module, x: Any) -> Any:
    return m(x)


REPLAYS: dict[str, Replay] = {"C2f": _c2f, "C3k2": _c2f, "Detect": _detect}  # by class name; others: their forward
HEADS = ("Detect",)  # the last layer's class: heads whose raw maps are the outputs


class TraceableDetection(nn.Module):
    """A DetectionModel's layers (``self.model``, so weights keep Ultralytics' ``model.N.`` names) replayed by
    their ``f`` indices as torch.fx can trace them, returning the Detect head's raw per-level maps."""

    def __init__(self, detection_model: nn.Module):
        super().__init__()
        self.model = detection_model.model

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        y: list[Any] = []
        for m in self.model:
            if m.f != -1:  # Ultralytics' routing: -1 is the previous layer, else absolute indices
                x = y[m.f] if isinstance(m.f, int) else [x if j == -1 else y[j] for j in m.f]
            x = REPLAYS.get(type(m).__name__, _own)(m, x)
            y.append(x)
        return x


def _own_activations(model: nn.Module) -> None:
    """Ultralytics' ``Conv.default_act`` is one ``nn.SiLU`` shared by every Conv: give each its own (no weights),
    so the spec's comments name each activation's own module instead of ``model.0.act``."""
    shared: dict[int, type] = {}
    for module in model.modules():
        act = getattr(module, "act", None)
        if isinstance(act, nn.Module) and not any(True for _ in act.parameters()):
            if id(act) in shared:
                module.act = type(act)()
            else:
                shared[id(act)] = type(act)


# -- the Ultralytics model --------------------------------------------------------------------------
def _resolve(cfg: str | os.PathLike) -> str:
    """``cfg`` as Ultralytics finds it: a file, or a model YAML it ships (``yolov8n.yaml`` -> ``yolov8.yaml`` at
    scale ``n``); refused in one line before Ultralytics would look further (it may try to download)."""
    text = str(cfg)
    if Path(text).is_file():
        with open(text, encoding="utf-8", errors="replace") as handle:
            if re.search(r"^slimspec:", handle.read(1 << 16), re.M):
                raise ModelImportError(f"ultralytics:{text}: {text} is a slimspec spec, not an Ultralytics model YAML "
                                       "(Ultralytics reads a file of that name before its own; give the path of the "
                                       "one you mean)")
        return text
    if not text.endswith((".yaml", ".yml")) or "/" in text or os.sep in text:
        raise ModelImportError(f"ultralytics:{text}: no such file, and not the name of a model YAML Ultralytics "
                               "ships (e.g. yolov8n.yaml)")
    import ultralytics

    root = Path(ultralytics.__file__).parent / "cfg" / "models"
    stem = re.sub(r"^(yolov[58][nslmx])6$", r"\1-p6", Path(text).stem)  # as tasks.yaml_model_load: yolov8n6 -> -p6
    unified = re.sub(r"(\d+)([nslmx])(.+)?$", r"\1\3", stem) + Path(text).suffix
    if not any(root.rglob(unified)) and not any(root.rglob(text)):
        raise ModelImportError(f"ultralytics:{text}: Ultralytics ships no model YAML of that name (see "
                               f"{root}; detection models such as yolov8n.yaml, yolov8s.yaml)")
    return text


def ultralytics_model(cfg: str | os.PathLike, *, num_classes: int | None = None, channels: int = 3,
                      seed: int | None = None) -> nn.Module:
    """Ultralytics' ``DetectionModel`` built from its model YAML ``cfg`` (randomly initialized from ``seed``)."""
    from .fx_import import seeded

    tasks = _ultralytics()
    source = f"ultralytics:{cfg}"
    path = _resolve(cfg)
    options = {} if num_classes is None else {"nc": int(num_classes)}
    with seeded(seed):
        try:
            model = tasks.DetectionModel(path, ch=int(channels), verbose=False, **options)
        except Exception as exc:  # noqa: BLE001 - a YAML Ultralytics cannot build: one line
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ModelImportError(f"{source}: Ultralytics cannot build it: {type(exc).__name__}: {first}") from None
    _check_head(model, source)
    return model.eval()


def _check_head(model: nn.Module, source: str) -> nn.Module:
    head = model.model[-1]
    kind = type(head).__name__
    if kind not in HEADS:
        raise ModelImportError(f"{source}: its head is {kind}; slimspec imports detection models whose head is "
                               f"{' or '.join(HEADS)} (their raw per-level maps are the spec's outputs)")
    if getattr(head, "one2one_cv2", None) is not None:
        raise ModelImportError(f"{source}: its Detect head is end-to-end (a second one-to-one head beside the "
                               "one-to-many one); slimspec imports one-head detectors such as YOLOv8")
    return head


def dfl_params(model: nn.Module) -> int:
    """The parameters of the Detect head's DFL conv: fixed bins, part of the decode the spec leaves outside."""
    dfl = getattr(model.model[-1], "dfl", None)
    return sum(p.numel() for p in dfl.parameters()) if isinstance(dfl, nn.Module) else 0


@torch.no_grad()
def raw_outputs(model: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """The Detect head's raw per-level maps from Ultralytics' own forward (eval mode), as the spec returns them.

    Ultralytics 8.4 returns ``(decoded, {"boxes", "scores", "feats"})`` with each level's maps flattened and
    joined; older versions ``(decoded, [map, ...])``. Either way: one ``(N, 4 * reg_max + nc, H, W)`` map a level.
    """
    was_training = model.training
    try:
        _, preds = model.eval()(x)
    finally:
        model.train(was_training)
    if isinstance(preds, (list, tuple)):
        return tuple(preds)
    feats, maps, start = preds["feats"], [], 0
    for feat in feats:
        n, _, h, w = feat.shape
        end = start + h * w
        maps.append(torch.cat((preds["boxes"][..., start:end], preds["scores"][..., start:end]), 1).reshape(n, -1, h, w))
        start = end
    return tuple(maps)


# -- the spec ---------------------------------------------------------------------------------------
def _annotated(text: str, model: nn.Module, cfg: str) -> str:
    """The traced spec with a comment block (what it is, where the decode went) and each output's level named."""
    import ultralytics

    head = model.model[-1]
    strides = [int(s) for s in head.stride.tolist()]
    box = 4 * int(head.reg_max)
    lines = [f"# Imported from Ultralytics' {Path(cfg).name} (DetectionModel, ultralytics {ultralytics.__version__});",
             "# each layer's comment names its module (model.N.*, the keys of Ultralytics' state dict).",
             f"# outputs: the Detect head's raw map per level: {box} box-distribution channels",
             f"# (4 sides x {head.reg_max} DFL bins), then {head.nc} class logits.",
             "# The decode stays outside the spec (DFL softmax, anchors, strides "
             f"{', '.join(map(str, strides))}): params = Ultralytics' count",
             f"# less the DFL conv's {dfl_params(model)} fixed weights."]
    body = text.rstrip("\n").splitlines()
    match = re.fullmatch(r"outputs: \[(.*)\]", body[-1])
    if match is not None:
        outs = [o.strip() for o in match.group(1).split(",")]
        body[-1:] = ["outputs:"] + [f"  - {o}  # P{s.bit_length() - 1}/{s}: {box} box + {head.nc} class channels"
                                    for o, s in zip(outs, strides)]
    return "\n".join(lines + body) + "\n"


def _check_input(model: nn.Module, shape: tuple[int, int, int], source: str) -> None:
    stride = int(max(model.stride.tolist()))
    if shape[1] % stride or shape[2] % stride:
        raise ModelImportError(f"{source}: the input's height and width ({shape[1]}x{shape[2]}) must be multiples of "
                               f"the model's largest stride {stride} (its upsampled maps are joined to earlier ones)")


def import_ultralytics(cfg: str | os.PathLike, *, state_dict: str | os.PathLike | None = None,
                       num_classes: int | None = None, input_shape: tuple[int, int, int] | None = None,
                       seed: int | None = None, spec_name: str | None = None,
                       model: nn.Module | None = None) -> tuple[Spec, dict[str, torch.Tensor]]:
    """``(spec, state_dict)`` for an Ultralytics detection model YAML (``yolov8n.yaml``, a path to one).

    ``state_dict``: the DetectionModel's weights as ``.safetensors`` (or a plain ``.pth`` tensor dict read
    with ``weights_only=True``), keys ``model.N...`` as ``ckpt['model'].state_dict()`` names them, loaded
    strictly; ``num_classes``: the model's ``nc`` (before the state dict is loaded); ``input_shape``: the
    spec's ``input`` (default 3x640x640, multiples of the largest stride); ``seed``: random initialization;
    ``spec_name``: default the YAML's file name; ``model``: an already built DetectionModel (tests).
    """
    from .fx_import import check_input_shape, load_state_dict_file
    from .fx_trace import import_module

    source = f"ultralytics:{cfg}"
    if spec_name is not None and not spec_name.strip():
        raise ModelImportError(f"{source}: the spec name is empty (leave it out for '{Path(cfg).stem}')")
    shape = check_input_shape(input_shape if input_shape is not None else DEFAULT_INPUT, source)
    if model is None:
        model = ultralytics_model(cfg, num_classes=num_classes, channels=shape[0], seed=seed)
    else:
        _check_head(model, source)
    _check_input(model, shape, source)
    if state_dict is not None:
        load_state_dict_file(model, state_dict, f"Ultralytics' {Path(cfg).name}")
    _own_activations(model)
    name = spec_name or re.sub(r"[^A-Za-z0-9_.-]+", "_", Path(cfg).stem) or "yolo"
    spec, state = import_module(TraceableDetection(model), shape, name=name, source=source)
    return spec_from_text(_annotated(spec.text, model, str(cfg)), source), state
