"""A straightforward PyTorch Darknet, written for the tests: the reference slimspec's import is compared with.

Modelled on the PyTorch ports everyone starts from (eriklindernoren/PyTorch-YOLOv3 ``models.py``,
which Lam1360/YOLOv3-model-pruning builds on): the cfg is read into a list of dicts, each layer is an
``nn.Sequential`` in an ``nn.ModuleList``, the forward keeps every layer's output for routes and
shortcuts, and ``.weights`` are read with numpy in the order Darknet writes them. It shares no code
with slimspec. The [yolo] layers return their input (the raw head map): the decode is not compared.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn


def parse_model_config(path: str) -> list[dict[str, str]]:
    """The cfg as a list of ``{"type": ..., key: value}`` (``[net]`` first)."""
    defs: list[dict[str, str]] = []
    for line in open(path, encoding="utf-8").read().split("\n"):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("["):
            defs.append({"type": line[1:-1].strip()})
            if defs[-1]["type"] == "convolutional":
                defs[-1]["batch_normalize"] = "0"
        else:
            key, value = line.split("=")
            defs[-1][key.strip()] = value.strip()
    return defs


class Darknet(nn.Module):
    def __init__(self, cfg_path: str):
        super().__init__()
        defs = parse_model_config(cfg_path)
        self.hyperparams, self.module_defs = defs[0], defs[1:]
        self.module_list = nn.ModuleList()
        output_filters = [int(self.hyperparams.get("channels", 3))]
        for d in self.module_defs:
            modules = nn.Sequential()
            if d["type"] == "convolutional":
                bn = int(d["batch_normalize"])
                filters, size, stride = int(d["filters"]), int(d["size"]), int(d.get("stride", 1))
                pad = (size - 1) // 2 if int(d.get("pad", 0)) else 0
                modules.add_module("conv", nn.Conv2d(output_filters[-1], filters, size, stride, pad, bias=not bn))
                if bn:
                    modules.add_module("batch_norm", nn.BatchNorm2d(filters, momentum=0.9, eps=1e-5))
                if d["activation"] == "leaky":
                    modules.add_module("leaky", nn.LeakyReLU(0.1))
            elif d["type"] == "maxpool":
                size, stride = int(d["size"]), int(d["stride"])
                if size == 2 and stride == 1:
                    modules.add_module("_debug_padding", nn.ZeroPad2d((0, 1, 0, 1)))
                modules.add_module("maxpool", nn.MaxPool2d(size, stride, padding=(size - 1) // 2))
            elif d["type"] == "upsample":
                modules.add_module("upsample", nn.Upsample(scale_factor=int(d["stride"]), mode="nearest"))
            elif d["type"] == "route":  # AlexeyAB's groups/group_id: part group_id of each input's groups parts
                filters = sum(output_filters[1:][int(i)] for i in d["layers"].split(",")) // int(d.get("groups", 1))
            elif d["type"] == "shortcut":
                filters = output_filters[1:][int(d["from"])]
            elif d["type"] == "yolo":
                pass
            else:
                raise ValueError(f"reference Darknet: no layer {d['type']}")
            self.module_list.append(modules)
            output_filters.append(filters)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        layer_outputs: list[torch.Tensor] = []
        heads = []
        for d, module in zip(self.module_defs, self.module_list):
            if d["type"] in ("convolutional", "upsample", "maxpool"):
                x = module(x)
            elif d["type"] == "route":
                groups, group_id = int(d.get("groups", 1)), int(d.get("group_id", 0))
                x = torch.cat([layer_outputs[int(i)].chunk(groups, 1)[group_id] for i in d["layers"].split(",")], 1)
            elif d["type"] == "shortcut":
                x = layer_outputs[-1] + layer_outputs[int(d["from"])]
            elif d["type"] == "yolo":
                heads.append(x)
            layer_outputs.append(x)
        return tuple(heads)

    def conv_layers(self):
        """``(conv, batch norm or None)`` of every [convolutional], in order."""
        for d, module in zip(self.module_defs, self.module_list):
            if d["type"] == "convolutional":
                yield module.conv, (module.batch_norm if int(d["batch_normalize"]) else None)

    def load_darknet_weights(self, path: str) -> tuple[int, int, int, int]:
        """Read a ``.weights`` file (as eriklindernoren's ``load_darknet_weights``); returns its header."""
        with open(path, "rb") as f:
            major, minor, revision = (int(v) for v in np.fromfile(f, dtype=np.int32, count=3))
            wide = major * 10 + minor >= 2 and major < 1000 and minor < 1000
            seen = int(np.fromfile(f, dtype=np.int64 if wide else np.int32, count=1)[0])
            weights = np.fromfile(f, dtype=np.float32)
        ptr = 0

        def take(tensor: torch.Tensor) -> None:
            nonlocal ptr
            n = tensor.numel()
            tensor.data.copy_(torch.from_numpy(weights[ptr:ptr + n]).view_as(tensor))
            ptr += n

        for conv, bn in self.conv_layers():
            if bn is not None:
                for tensor in (bn.bias, bn.weight, bn.running_mean, bn.running_var):
                    take(tensor)
            else:
                take(conv.bias)
            take(conv.weight)
        assert ptr == len(weights), f"{len(weights) - ptr} floats left over"
        return major, minor, revision, seen


def random_weights_file(model: Darknet, path: str, seed: int, header: tuple[int, int, int, int] = (0, 2, 0, 32013312),
                        gammas: dict[int, np.ndarray] | None = None) -> None:
    """Write random ``.weights`` for ``model``'s cfg: conv weights scaled by fan-in (activations stay near 1),
    positive running variances; ``gammas[k]`` replaces the BN scales of the k-th [convolutional]."""
    rng = np.random.default_rng(seed)
    major, minor, revision, seen = header
    wide = major * 10 + minor >= 2 and major < 1000 and minor < 1000
    parts = [np.array([major, minor, revision], dtype="<i4").tobytes(),
             np.array([seen], dtype="<i8" if wide else "<i4").tobytes()]
    for k, (conv, bn) in enumerate(model.conv_layers()):
        n = conv.out_channels
        fan_in = conv.weight[0].numel()
        if bn is not None:
            gamma = rng.uniform(0.5, 1.5, n) if gammas is None or k not in gammas else gammas[k]
            arrays = [rng.normal(0, 0.1, n), gamma, rng.normal(0, 0.1, n), rng.uniform(0.5, 1.5, n)]
        else:
            arrays = [rng.normal(0, 0.1, n)]
        arrays.append(rng.normal(0, (2.0 / fan_in) ** 0.5, conv.weight.numel()))
        parts += [a.astype("<f4").tobytes() for a in arrays]
    with open(path, "wb") as f:
        f.write(b"".join(parts))
