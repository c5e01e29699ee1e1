"""Import torchvision ResNets and VGGs as slimspec specs plus weights.

The spec is read off the model's own structure (block types, counts and inner widths; conv
widths, pools and classifier widths), so a torchvision model — randomly initialized, with
torchvision's pretrained weights, or loaded from a local ``.pth`` state dict — becomes a
reviewable spec whose built model computes exactly what the torchvision model computes.
Grouped convolutions (ResNeXt) are not expressible in spec format 1 and are refused.
"""
from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from ..document import Spec
from ..errors import ModelImportError
from ..weights import WeightsError

ImportFn = Callable[[nn.Module, str], tuple[dict, dict[str, str]]]


ImportModelError = ModelImportError  # the name this module used before errors.py


def _resnet(model: nn.Module, name: str) -> tuple[dict, dict[str, str]]:
    from torchvision.models.resnet import BasicBlock, Bottleneck

    if model.conv1.groups != 1 or any(getattr(m, "groups", 1) != 1 for m in model.modules() if isinstance(m, nn.Conv2d)):
        raise ImportModelError(f"{name}: grouped convolutions (ResNeXt) are not expressible in spec format 1")
    first = model.layer1[0]
    bottleneck = isinstance(first, Bottleneck)
    stages, renames = [], {"conv1.": "stem.conv.", "bn1.": "stem.bn."}
    for s in range(1, 5):
        layer = getattr(model, f"layer{s}")
        blocks = []
        for b, block in enumerate(layer):
            if not isinstance(block, (BasicBlock, Bottleneck)):
                raise ImportModelError(f"{name}: layer{s}.{b} is a {type(block).__name__}")
            blocks.append([block.conv1.out_channels, block.conv2.out_channels] if bottleneck
                          else block.conv1.out_channels)
            if block.downsample is not None:
                renames[f"layer{s}.{b}.downsample.0."] = f"layer{s}.{b}.shortcut.conv."
                renames[f"layer{s}.{b}.downsample.1."] = f"layer{s}.{b}.shortcut.bn."
        width = (layer[0].conv3 if bottleneck else layer[0].conv2).out_channels
        stride = (layer[0].conv2 if bottleneck else layer[0].conv1).stride[0]
        default = [width // 4, width // 4] if bottleneck else width
        stage: dict[str, Any] = {"width": width, "blocks": len(blocks) if all(e == default for e in blocks) else blocks}
        if stride != 1:
            stage["stride"] = stride
        stages.append(stage)
    data = {
        "slimspec": 1, "name": name, "arch": "resnet", "input": [3, 224, 224],
        "num_classes": model.fc.out_features, "block": "bottleneck" if bottleneck else "basic",
        "stem": model.conv1.out_channels, "stem_kernel": model.conv1.kernel_size[0],
        "stem_stride": model.conv1.stride[0], "stem_pool": True, "shortcut": "B", "stages": stages,
    }
    return data, renames


def _vgg(model: nn.Module, name: str) -> tuple[dict, dict[str, str]]:
    cfg: list[int | str] = []
    renames: dict[str, str] = {}
    batch_norm = any(isinstance(m, nn.BatchNorm2d) for m in model.features)
    convs = [m for m in model.features if isinstance(m, nn.Conv2d)]
    bias = all(m.bias is not None for m in convs)
    if any((m.bias is not None) != bias for m in convs):
        raise ImportModelError(f"{name}: some convolutions have a bias and some do not")
    for index, module in enumerate(model.features):
        if isinstance(module, nn.Conv2d):
            if module.kernel_size != (3, 3) or module.padding != (1, 1):
                raise ImportModelError(f"{name}: features.{index} is not a 3x3 pad-1 convolution")
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


IMPORTERS: dict[str, ImportFn] = {"resnet": _resnet, "resnext": _resnet, "vgg": _vgg}


def _importer(name: str) -> ImportFn:
    for prefix, fn in IMPORTERS.items():
        if name.startswith(prefix) or name.startswith(f"wide_{prefix}"):
            return fn
    raise ImportModelError(f"torchvision model '{name}' is not supported (ResNets and VGGs are)")


def _rename(state: dict[str, torch.Tensor], renames: dict[str, str]) -> dict[str, torch.Tensor]:
    out = {}
    for key, tensor in state.items():
        for old, new in sorted(renames.items(), key=lambda kv: -len(kv[0])):
            if key.startswith(old):
                key = new + key[len(old):]
                break
        out[key] = tensor
    return out


def import_torchvision(name: str, *, pretrained: bool = False, state_dict: str | os.PathLike | None = None,
                       model: nn.Module | None = None) -> tuple[Spec, dict[str, torch.Tensor]]:
    """``(spec, state_dict)`` for torchvision model ``name`` (e.g. ``resnet50``, ``vgg16_bn``).

    ``pretrained`` asks torchvision for its default weights (downloads); ``state_dict`` loads a
    local ``.pth`` of the same architecture with ``torch.load(weights_only=True)``.
    """
    import torchvision

    importer = _importer(name)
    if model is None:
        try:
            factory = getattr(torchvision.models, name)
        except AttributeError:
            raise ImportModelError(f"torchvision has no model '{name}'") from None
        model = factory(weights="DEFAULT" if pretrained else None)
    if state_dict is not None:
        try:
            loaded = torch.load(os.fspath(state_dict), map_location="cpu", weights_only=True)
        except Exception as exc:  # noqa: BLE001 - any unreadable file is an input error
            raise WeightsError(f"{state_dict}: cannot read a state dict ({exc})") from None
        try:
            model.load_state_dict(loaded)
        except RuntimeError as exc:
            raise WeightsError(f"{state_dict}: does not fit torchvision's {name}: {str(exc).splitlines()[0]}") from None
    data, renames = importer(model, name)
    spec = Spec.from_data(data, f"torchvision:{name}")
    return spec, _rename(model.state_dict(), renames)
