"""What an fx node's value is while the importer reads a traced graph, and the argument helpers its handlers share.

A node of the traced graph stands for one of: a layer's output (its index in the layer list; ``-1`` the
input image), a size (:data:`SHAPE`: ``x.shape``, ``x.size(1) // 2``, ``x.ndim == 4``), a parameter
or buffer of the module (:class:`Param`, an fx ``get_attr``, maybe reshaped) or a layer's output in a
form no layer reads as it is (:class:`Layout`: channels-last between ``permute`` calls, the 5-D view
and transpose of a channel shuffle, the tuple ``chunk`` returns) that a later node turns back into a
feature map.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from torch import fx

SHAPE = "shape"  # a value that is a size/shape, used only as an argument of view/reshape


class Unsupported(Exception):
    """A node a spec cannot express, and why."""

    def __init__(self, node: fx.Node, reason: str):
        super().__init__(reason)
        self.node, self.reason = node, reason


@dataclass(frozen=True)
class Param:
    """A parameter or buffer of the module (``path``, as its state dict names it), seen with ``shape``."""

    path: str
    shape: tuple[int, ...]


@dataclass(frozen=True)
class Layout:
    """Layer ``index``'s output in another form: ``last`` channels-last (``permute(0, 2, 3, 1)``), ``grouped``
    the view ``(N, groups, C / groups, H, W)`` and ``swapped`` its ``transpose(1, 2)`` (ShuffleNet's channel
    shuffle, Zhang et al. 2018, on its way), ``parts`` the tuple of ``groups`` equal channel chunks."""

    form: str
    index: int
    groups: int = 1


def arg(node: fx.Node, position: int, name: str, default: Any = None) -> Any:
    """The call's argument at ``position`` (after the callable), or given by keyword ``name``."""
    if len(node.args) > position:
        return node.args[position]
    return node.kwargs.get(name, default)


def shape_of(node: Any) -> tuple[int, ...] | None:
    """The tensor shape noted on ``node`` by one run of the traced graph (None for non-tensors)."""
    return node.meta.get("shape") if isinstance(node, fx.Node) else None


def square(node: fx.Node, value: Any, what: str) -> int:
    """One integer for a square size (``3`` or ``(3, 3)``); anything else is refused."""
    if isinstance(value, (tuple, list)):
        if len(set(value)) != 1:
            raise Unsupported(node, f"has a non-square {what} {tuple(value)}")
        value = value[0]
    if not isinstance(value, int):
        raise Unsupported(node, f"has a {what} that is not a constant integer")
    return int(value)


def size(node: fx.Node, value: Any, what: str) -> int | list[int]:
    """A spec's size option: one integer when square, else ``[h, w]`` (Inception's 1x7 convolutions)."""
    if isinstance(value, (tuple, list)) and len(value) == 2 and value[0] != value[1]:
        if not all(isinstance(v, int) for v in value):
            raise Unsupported(node, f"has a {what} that is not a constant integer")
        return [int(v) for v in value]
    return square(node, value, what)
