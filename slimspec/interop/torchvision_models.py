"""Import torchvision's classification models as slimspec specs plus weights.

ResNets, VGGs and MobileNetV2 are read off the model's own structure (block types, counts and
inner widths; conv widths, pools and classifier widths) into their families' specs; every other
CNN (and these, at an input their family cannot take) is traced with torch.fx into a ``graph``
spec. Either way a torchvision model — randomly initialized, with torchvision's pretrained
weights, or loaded from a local ``.pth`` state dict — becomes a reviewable spec whose built model
computes exactly what the torchvision model computes. Vision transformers are refused in one line.
"""
from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from functools import partial
from typing import Any

import torch
from torch import nn

from ..document import Spec
from ..errors import ModelImportError, SpecError
from ..utils.names import rename_prefix

ImportFn = Callable[[nn.Module, str], tuple[dict, dict[str, str]]]


def _resnet(model: nn.Module, name: str) -> tuple[dict, dict[str, str]]:
    from torchvision.models.resnet import BasicBlock, Bottleneck

    from ..families.resnet import expand_blocks

    groups, width_per_group = int(getattr(model, "groups", 1)), int(getattr(model, "base_width", 64))
    first = model.layer1[0]
    bottleneck = isinstance(first, Bottleneck)
    stages, renames = [], {"conv1.": "stem.conv.", "bn1.": "stem.bn."}
    for s in range(1, 5):
        layer = getattr(model, f"layer{s}")
        blocks = []
        for b, block in enumerate(layer):
            if not isinstance(block, (BasicBlock, Bottleneck)):
                raise ModelImportError(f"{name}: layer{s}.{b} is a {type(block).__name__}")
            blocks.append([block.conv1.out_channels, block.conv2.out_channels] if bottleneck
                          else block.conv1.out_channels)
            if block.downsample is not None:
                renames[f"layer{s}.{b}.downsample.0."] = f"layer{s}.{b}.shortcut.conv."
                renames[f"layer{s}.{b}.downsample.1."] = f"layer{s}.{b}.shortcut.bn."
        width = (layer[0].conv3 if bottleneck else layer[0].conv2).out_channels
        stride = (layer[0].conv2 if bottleneck else layer[0].conv1).stride[0]
        default = expand_blocks({"width": width, "blocks": 1}, bottleneck, groups, width_per_group)[0]
        stage: dict[str, Any] = {"width": width, "blocks": len(blocks) if all(e == default for e in blocks) else blocks}
        if stride != 1:
            stage["stride"] = stride
        stages.append(stage)
    data = {
        "slimspec": 1, "name": name, "arch": "resnet", "input": [3, 224, 224],
        "num_classes": model.fc.out_features, "block": "bottleneck" if bottleneck else "basic",
        "stem": model.conv1.out_channels, "stem_kernel": model.conv1.kernel_size[0],
        "stem_stride": model.conv1.stride[0], "stem_pool": True, "shortcut": "B",
        **({"groups": groups} if groups != 1 else {}),
        **({"width_per_group": width_per_group} if width_per_group != 64 else {}),
        "stages": stages,
    }
    return data, renames


def _vgg(model: nn.Module, name: str) -> tuple[dict, dict[str, str]]:
    cfg: list[int | str] = []
    renames: dict[str, str] = {}
    batch_norm = any(isinstance(m, nn.BatchNorm2d) for m in model.features)
    convs = [m for m in model.features if isinstance(m, nn.Conv2d)]
    bias = all(m.bias is not None for m in convs)
    if any((m.bias is not None) != bias for m in convs):
        raise ModelImportError(f"{name}: some convolutions have a bias and some do not")
    for index, module in enumerate(model.features):
        if isinstance(module, nn.Conv2d):
            if module.kernel_size != (3, 3) or module.padding != (1, 1):
                raise ModelImportError(f"{name}: features.{index} is not a 3x3 pad-1 convolution")
            renames[f"features.{index}."] = f"features.{len(cfg)}.conv."
            cfg.append(module.out_channels)
        elif isinstance(module, nn.BatchNorm2d):
            renames[f"features.{index}."] = f"features.{len(cfg) - 1}.bn."
        elif isinstance(module, nn.MaxPool2d):
            cfg.append("M")
    linears = [(i, m) for i, m in enumerate(model.classifier) if isinstance(m, nn.Linear)]
    dropouts = [m.p for m in model.classifier if isinstance(m, nn.Dropout)]
    for j, (index, _) in enumerate(linears[:-1]):
        renames[f"classifier.{index}."] = f"classifier.{j}.linear."
    renames[f"classifier.{linears[-1][0]}."] = "fc."
    data = {
        "slimspec": 1, "name": name, "arch": "vgg", "input": [3, 224, 224],
        "num_classes": linears[-1][1].out_features, "batch_norm": batch_norm, "bias": bias, "cfg": cfg,
        "head": "flatten",
        "classifier": [m.out_features for _, m in linears[:-1]],
    }
    if dropouts and dropouts[0] > 0:
        data["dropout"] = dropouts[0]
    return data, renames


def _mobilenet_v2(model: nn.Module, name: str) -> tuple[dict, dict[str, str]]:
    """The inverted-residual table read off the blocks; module names are already the family's."""
    from torchvision.models.mobilenetv2 import InvertedResidual

    stem, *blocks, head = list(model.features)
    if not all(isinstance(block, InvertedResidual) for block in blocks):
        raise ModelImportError(f"{name}: features[1:-1] are not all InvertedResidual blocks")
    stages: list[dict[str, Any]] = []
    inp = stem[0].out_channels
    for block in blocks:
        expands = len(block.conv) == 4  # [expand, depthwise, project, bn]; t = 1: [depthwise, project, bn]
        dw = block.conv[1 if expands else 0][0]
        out, hidden, stride = block.out_channels, dw.out_channels, dw.stride[0]
        stage = stages[-1] if stages else None
        if stage is None or stride != 1 or out != stage["c"] or expands != (stage["t"] != 1):
            t = (hidden / inp if hidden % inp else hidden // inp) if expands else 1
            stage = {"t": t, "c": out, "n": 0, "s": stride, "expand": [], "ins": []}
            stages.append(stage)
        stage["n"] += 1
        stage["expand"].append(hidden)
        stage["ins"].append(inp)
        if block.use_res_connect != (stride == 1 and inp == out):
            raise ModelImportError(f"{name}: a block's residual add does not follow torchvision's rule")
        inp = out
    for stage in stages:  # expansion widths are written only where round(in * t) does not give them
        ins = stage.pop("ins")
        if stage["t"] == 1 or all(int(round(i * stage["t"])) == h for i, h in zip(ins, stage["expand"])):
            del stage["expand"]
    dropout = next((m.p for m in model.classifier if isinstance(m, nn.Dropout)), 0.0)
    data = {
        "slimspec": 1, "name": name, "arch": "mobilenetv2", "input": [3, 224, 224],
        "num_classes": model.classifier[-1].out_features, "stem": stem[0].out_channels,
        "stem_stride": stem[0].stride[0], "stages": stages, "last_channel": head[0].out_channels, "dropout": dropout,
    }
    return data, {}


IMPORTERS: dict[str, ImportFn] = {"resnet": _resnet, "resnext": _resnet, "wide_resnet": _resnet, "vgg": _vgg,
                                  "mobilenet_v2": _mobilenet_v2}


def _importer(name: str) -> ImportFn | None:
    """The family importer for ``name``, or None (traced into a graph spec)."""
    for prefix, fn in IMPORTERS.items():
        if name.startswith(prefix):
            return fn
    return None


def _rename(state: dict[str, torch.Tensor], renames: dict[str, str]) -> dict[str, torch.Tensor]:
    return {rename_prefix(key, renames): tensor for key, tensor in state.items()}


def replace_head(model: nn.Module, num_classes: int, name: str) -> None:
    """Swap the last ``nn.Linear`` for a freshly initialized one with ``num_classes`` outputs."""
    path = next((n for n, m in reversed(list(model.named_modules())) if isinstance(m, nn.Linear)), None)
    if path is None:
        raise ModelImportError(f"{name}: no nn.Linear classifier to give {num_classes} classes")
    old = model.get_submodule(path)
    parent, _, leaf = path.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, leaf,
            nn.Linear(old.in_features, num_classes, bias=old.bias is not None))


def _check_download(name: str, url: str) -> None:
    """Weights not in torch's cache need their host: fail in one line, before torch starts a download."""
    import socket
    import urllib.parse

    if os.path.exists(os.path.join(torch.hub.get_dir(), "checkpoints", os.path.basename(url))):
        return
    host = urllib.parse.urlparse(url).hostname or url
    try:
        socket.getaddrinfo(host, 443)
    except OSError as exc:
        raise ModelImportError(f"torchvision:{name}: cannot download its pretrained weights from {host} "
                               f"({exc.strerror or exc}); fetch {url} elsewhere and pass --state-dict FILE") from None


TRANSFORMERS = ("vit_", "swin_", "maxvit_")  # torchvision's vision transformers, by name (refused before they are made)


def refuse_transformer(model: nn.Module | None, source: str, name: str = "") -> None:
    """One line for a vision transformer (attention blocks): a spec expresses CNNs."""
    attention = name.startswith(TRANSFORMERS) or model is not None and any(
        isinstance(m, nn.MultiheadAttention) or type(m).__name__.endswith("Attention") for m in model.modules())
    if attention:
        raise ModelImportError(f"{source}: is a vision transformer (attention blocks are not expressible in a spec; "
                               "slimspec imports CNNs)")


def _torchvision_model(name: str, pretrained: bool) -> nn.Module:
    import torchvision

    if name not in torchvision.models.list_models(module=torchvision.models):
        raise ModelImportError(f"torchvision has no classification model '{name}'")
    refuse_transformer(None, f"torchvision:{name}", name)
    factory = getattr(torchvision.models, name)
    if not pretrained:
        return factory(weights=None)
    _check_download(name, torchvision.models.get_model_weights(name).DEFAULT.url)
    try:
        return factory(weights="DEFAULT")
    except Exception as exc:  # noqa: BLE001 - offline, a proxy, a damaged download: one line, no traceback
        reason = getattr(exc, "reason", None) or (str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
        raise ModelImportError(f"torchvision:{name}: cannot get torchvision's pretrained weights ({reason}); "
                               "download them elsewhere and pass --state-dict FILE") from None


def _first_conv(model: nn.Module) -> tuple[str, nn.Conv2d] | None:
    return next(((path, m) for path, m in model.named_modules() if isinstance(m, nn.Conv2d)), None)


def check_channels(model: nn.Module, shape: tuple[int, int, int], source: str) -> None:
    """The input's channels are what the model's first convolution takes, else one line saying so."""
    first = _first_conv(model)
    if first is not None and first[1].in_channels != shape[0]:
        raise ModelImportError(f"{source}: the input {','.join(map(str, shape))} has {shape[0]} channel(s), but the "
                               f"model's first convolution {first[0]} takes {first[1].in_channels} "
                               f"(e.g. {first[1].in_channels},{shape[1]},{shape[2]})")


def _head_hint(model: nn.Module, state: Mapping[str, torch.Tensor]) -> str:
    """``give --num-classes N`` when the file's classifier (the last ``nn.Linear``) has N outputs, else ``""``."""
    path = next((n for n, m in reversed(list(model.named_modules())) if isinstance(m, nn.Linear)), None)
    if path is None:
        return ""
    head, weight = model.get_submodule(path), state.get(f"{path}.weight")
    if weight is None or weight.ndim != 2 or weight.shape[1] != head.in_features or weight.shape[0] == head.out_features:
        return ""
    return f" (its classifier {path} has {weight.shape[0]} outputs, the model {head.out_features}: give --num-classes {weight.shape[0]})"


def import_torchvision(name: str, *, pretrained: bool = False, state_dict: str | os.PathLike | None = None,
                       model: nn.Module | None = None, num_classes: int | None = None,
                       input_shape: tuple[int, int, int] | None = None, seed: int | None = None,
                       spec_name: str | None = None) -> tuple[Spec, dict[str, torch.Tensor]]:
    """``(spec, state_dict)`` for torchvision model ``name`` (e.g. ``resnet50``, ``mobilenet_v2``).

    ``pretrained`` asks torchvision for its default weights (downloads); ``num_classes`` replaces
    the classifier with a new one of that many outputs (before ``state_dict`` is loaded, so a
    fine-tuned model with its new head loads as is); ``state_dict`` is a local ``.pth`` (read
    with ``torch.load(weights_only=True)``) or ``.safetensors`` of that architecture;
    ``input_shape`` is the spec's ``input`` (default 3x224x224); ``seed``: random initialization
    (the model's, a new head's) is drawn from it; ``spec_name``: the spec's name (default ``name``).
    """
    from .fx_import import check_input_shape, load_state_dict_file, seeded

    source = f"torchvision:{name}"
    shape = check_input_shape(input_shape if input_shape is not None else (3, 224, 224), source)
    if spec_name is not None and not spec_name.strip():
        raise ModelImportError(f"{source}: the spec name is empty (leave it out for '{name}')")
    with seeded(seed):
        if model is None:
            model = _torchvision_model(name, pretrained)
        if num_classes is not None:
            replace_head(model, int(num_classes), name)
    check_channels(model, shape, source)
    if state_dict is not None:  # the file's tensors are let go once loaded
        load_state_dict_file(model, state_dict, f"torchvision's {name}", noun="model",
                             hint=partial(_head_hint, model) if num_classes is None else None)
    refuse_transformer(model, source, name)
    importer = _importer(name)
    if importer is not None:
        family = _family_spec(importer, model, name, shape, spec_name, source)
        if family is not None:
            return family
    from .fx_trace import import_module

    return import_module(model, shape, name=spec_name or name, source=source)


def _family_spec(importer: ImportFn, model: nn.Module, name: str, shape: tuple[int, int, int],
                 spec_name: str | None, source: str) -> tuple[Spec, dict[str, torch.Tensor]] | None:
    """The family's spec, or None where it is not the model at this input (VGG's classifier after a 7x7
    adaptive pool of a smaller map): the model is traced instead."""
    from ..ir import count_params

    data, renames = importer(model, name)
    data["input"] = list(shape)
    if spec_name:
        data["name"] = spec_name
    try:
        spec = Spec.from_data(data, source)
    except SpecError:  # the family's spec does not fit this input: the trace says where the model does not
        return None
    if count_params(spec.ir) != sum(p.numel() for p in model.parameters()):
        return None
    return spec, _rename(model.state_dict(), renames)
