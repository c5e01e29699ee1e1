"""Weight initialization from a spec's ``init`` block.

Defaults follow Network Slimming (Liu et al. 2017): conv weights He-normal with fan-out,
BN gamma ``bn_gamma`` (1.0 unless the spec says, e.g. 0.5 as in Network Slimming) and beta 0,
linear layers PyTorch's default (``linear: normal`` gives N(0, 0.01) and zero bias).
"""
from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

CONV_INITS = {
    "kaiming_normal": lambda w: nn.init.kaiming_normal_(w, mode="fan_out", nonlinearity="relu"),
    "kaiming_uniform": lambda w: nn.init.kaiming_uniform_(w, mode="fan_out", nonlinearity="relu"),
    "default": lambda w: None,
}


@torch.no_grad()
def init_weights(model: nn.Module, init: Mapping[str, object] | None = None) -> None:
    init = dict(init or {})
    conv_init = CONV_INITS[str(init.get("conv", "kaiming_normal"))]
    gamma = float(init.get("bn_gamma", 1.0))  # type: ignore[arg-type]
    linear = init.get("linear", "default")
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            conv_init(module.weight)
            if module.bias is not None:
                module.bias.zero_()
        elif isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.weight.fill_(gamma)
            module.bias.zero_()
        elif isinstance(module, nn.Linear) and linear == "normal":
            module.weight.normal_(0, 0.01)
            if module.bias is not None:
                module.bias.zero_()
