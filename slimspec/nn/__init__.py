"""Torch modules built from the IR in a mode: plain, masked or gated."""
from .init import init_weights
from .layers import LAYER_SETS, MODES, ChannelMask, Gate, MaskedConv2d, MaskedLinear
from .net import SpecNet

__all__ = ["SpecNet", "init_weights", "LAYER_SETS", "MODES", "ChannelMask", "Gate", "MaskedConv2d", "MaskedLinear"]
