"""Tensor-layout steps the importer recognises as one spec layer, or as nothing at all.

* channels-last regions: ``permute(0, 2, 3, 1)`` ... ``permute(0, 3, 1, 2)`` around per-channel
  layers (ConvNeXt, Liu et al. 2022: ``nn.LayerNorm`` and ``nn.Linear`` on the last dim are a
  channels-first layer norm and a 1x1 convolution);
* ShuffleNet's channel shuffle (Zhang et al. 2018): ``view(N, g, C / g, H, W)``, ``transpose(1, 2)``,
  ``view(N, C, H, W)`` (or ``flatten(1, 2)``) is one ``shuffle`` layer;
* ``chunk`` / ``split`` into equal parts along the channels, and ``x[:, a:b]`` of a whole part, is a
  ``chunk`` layer; a slice that keeps every channel is no layer;
* ``view`` / ``reshape`` of a parameter (a layer scale ``gamma.reshape(1, -1, 1, 1)``) keeps it a parameter.

Every handler takes ``(trace, node)`` like the call handlers of :mod:`slimspec.interop.fx_ops`.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from torch import fx

from .fx_values import SHAPE, Layout, Param, Unsupported, arg, shape_of

if TYPE_CHECKING:
    from .fx_trace import Trace

TO_LAST, TO_FIRST = (0, 2, 3, 1), (0, 3, 1, 2)


def _dims(node: fx.Node, start: int) -> tuple[int, ...]:
    """The dims of a ``permute`` call: ``x.permute(0, 2, 3, 1)``, ``x.permute([0, 2, 3, 1])``, ``torch.permute(x, dims)``."""
    dims = node.args[start:] or (node.kwargs.get("dims"),)
    if len(dims) == 1 and isinstance(dims[0], (tuple, list)):
        dims = tuple(dims[0])
    if not all(isinstance(d, int) for d in dims):
        raise Unsupported(node, "permutes by dims that are not constant integers")
    rank = len(dims)
    return tuple(d % rank for d in dims)


def permute(trace: Trace, node: fx.Node) -> None:
    """Into channels-last and back; a channel/group swap of the 5-D shuffle view."""
    x, value = node.args[0], trace.values.get(node.args[0])
    dims = _dims(node, 1)
    if isinstance(value, Layout) and value.form == "grouped" and dims == (0, 2, 1, 3, 4):
        trace.values[node] = Layout("swapped", value.index, value.groups)
    elif isinstance(value, Layout) and value.form == "last" and dims == TO_FIRST:
        trace.values[node] = value.index
    elif dims == TO_LAST and len(shape_of(x) or ()) == 4 and not isinstance(value, (Layout, Param)):
        trace.values[node] = Layout("last", trace.value(node, x))
    else:
        raise Unsupported(node, f"permutes dims {dims} (expressible: channels-last (0, 2, 3, 1) and back around "
                                "per-channel layers, or a channel shuffle)")


def transpose(trace: Trace, node: fx.Node) -> None:
    """``transpose(1, 2)`` of the shuffle view."""
    value = trace.values.get(node.args[0])
    dims = {arg(node, 1, "dim0"), arg(node, 2, "dim1")}
    if isinstance(value, Layout) and value.form == "grouped" and dims == {1, 2}:
        trace.values[node] = Layout("swapped", value.index, value.groups)
        return
    raise Unsupported(node, "transposes a tensor (only the channel groups of a channel shuffle view, dims 1 and 2)")


def _shuffled(trace: Trace, node: fx.Node, value: Layout) -> None:
    after, before = shape_of(node), shape_of(node.args[0])
    if after is None or before is None or len(after) != 4 or after[1] != before[1] * before[2]:
        raise Unsupported(node, "reshapes a channel shuffle view into something other than (N, C, H, W)")
    trace.append("shuffle", {"groups": value.groups}, (value.index,), node)


def reshape(trace: Trace, node: fx.Node, flatten: Any) -> None:
    """``view`` / ``reshape``: a parameter stays one, a shuffle view is made or closed, else ``flatten(node)``."""
    x = node.args[0]
    value, before, after = trace.values.get(x), shape_of(x), shape_of(node)
    if isinstance(value, Param):
        trace.values[node] = Param(value.path, after if after is not None else value.shape)
    elif isinstance(value, Layout) and value.form == "swapped":
        _shuffled(trace, node, value)
    elif isinstance(value, int) and before is not None and after is not None and len(before) == 4 and \
            len(after) == 5 and after[0] == before[0] and after[1] * after[2] == before[1] and \
            after[3:] == before[2:] and after[1] > 1:
        trace.values[node] = Layout("grouped", value, after[1])
    else:
        flatten(trace, node)


def flatten_swapped(trace: Trace, node: fx.Node) -> bool:
    """``flatten(1, 2)`` closing a channel shuffle: True when it was one."""
    value = trace.values.get(node.args[0])
    if isinstance(value, Layout) and value.form == "swapped" and \
            (arg(node, 1, "start_dim", 0), arg(node, 2, "end_dim", -1)) == (1, 2):
        _shuffled(trace, node, value)
        return True
    return False


def _parts(trace: Trace, node: fx.Node, parts: int) -> None:
    x = node.args[0]
    channels = (shape_of(x) or (0, 0))[1]
    if len(shape_of(x) or ()) != 4 or parts < 1 or channels % parts:
        raise Unsupported(node, f"splits {channels} channels into unequal parts (only equal chunks of a feature map "
                                "are expressible)")
    trace.values[node] = Layout("parts", trace.value(node, x), parts)


def chunk(trace: Trace, node: fx.Node) -> None:
    """``x.chunk(n, dim=1)``: ``n`` equal parts of the channels."""
    if arg(node, 2, "dim", 0) not in (1, -3):
        raise Unsupported(node, "chunks along a dim other than the channels (dim 1)")
    _parts(trace, node, int(arg(node, 1, "chunks")))


def split(trace: Trace, node: fx.Node) -> None:
    """``x.split(size, dim=1)`` or ``split([s, s], dim=1)`` into equal parts of the channels."""
    if arg(node, 2, "dim", 0) not in (1, -3):
        raise Unsupported(node, "splits along a dim other than the channels (dim 1)")
    sizes, channels = arg(node, 1, "split_size_or_sections"), (shape_of(node.args[0]) or (0, 0))[1]
    if sizes is None:
        sizes = arg(node, 1, "split_size")
    if isinstance(sizes, int) and sizes > 0 and channels % sizes == 0:
        _parts(trace, node, channels // sizes)
    elif isinstance(sizes, (list, tuple)) and len(set(sizes)) == 1 and sum(sizes) == channels:
        _parts(trace, node, len(sizes))
    else:
        raise Unsupported(node, f"splits {channels} channels into parts {sizes} (only equal chunks are expressible)")


def _channel_slice(node: fx.Node, index: Any, channels: int) -> tuple[int, int] | None:
    """``(start, stop)`` of ``x[:, a:b]`` / ``x[:, a:b, :, :]`` / ``x[..., a:b, :, :]``, else None."""
    items = list(index) if isinstance(index, tuple) else [index]
    if items and items[0] is Ellipsis:
        items = [slice(None)] * (4 - len(items) + 1) + items[1:]
    while len(items) < 4:
        items.append(slice(None))
    if len(items) != 4 or not all(isinstance(i, slice) for i in items):
        return None
    if any(i != slice(None) for k, i in enumerate(items) if k != 1):
        return None
    start, stop, step = items[1].indices(channels)
    return (start, stop) if step == 1 else None


def getitem(trace: Trace, node: fx.Node) -> None:
    """A part of a ``chunk`` / ``split``, a size, or a channel slice of a feature map."""
    x, index = node.args
    value = trace.values.get(x)
    if value == SHAPE:
        trace.values[node] = SHAPE
        return
    if isinstance(value, Layout) and value.form == "parts" and isinstance(index, int):
        part = index % value.groups
        trace.append("chunk", {"parts": value.groups, "index": part}, (value.index,), node)
        return
    shape = shape_of(x)
    span = _channel_slice(node, index, shape[1]) if shape is not None and len(shape) == 4 else None
    if span is None or isinstance(value, (Layout, Param)):
        raise Unsupported(node, "indexes a tensor (expressible: sizes, a chunk's parts, a slice of whole channel chunks)")
    start, stop = span
    width, channels = stop - start, shape[1]
    if width == channels:
        trace.values[node] = trace.value(node, x)  # every channel: no layer
    elif width > 0 and channels % width == 0 and start % width == 0:
        trace.add(node, "chunk", {"parts": channels // width, "index": start // width}, [x])
    elif width > 0:
        trace.add(node, "slice", {"start": start, "stop": stop}, [x])
    else:
        raise Unsupported(node, f"takes no channels ({start}:{stop} of {channels})")
