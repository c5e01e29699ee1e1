"""Darknet's binary ``.weights``: a header, then every convolution's float32 tensors in layer order.

The layout of Redmon's Darknet (``parser.c``: ``load_weights_upto`` / ``save_weights_upto``):
``major, minor, revision`` as int32, then ``seen`` (images trained on) as int64 when
``major * 10 + minor >= 2`` (and both are below 1000), else as int32. Then, for each
``[convolutional]`` in order: with batch normalization its BN bias (beta), BN scale (gamma),
rolling mean and rolling variance, then the conv weights; without, the conv bias, then the
weights. Little-endian, as every machine Darknet runs on writes it.

A layout is the list of ``(state key, shape)`` in file order, so reading and writing are
one loop each and exact inverses: the bytes read are the bytes written back.
"""
from __future__ import annotations

import os
import struct
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..errors import WeightsError
from ..weights import tensor_bytes

Layout = Sequence[tuple[str, tuple[int, ...]]]


@dataclass(frozen=True)
class Header:
    """The ``.weights`` header (Darknet's ``major.minor.revision`` file version and ``seen``)."""

    major: int = 0
    minor: int = 2
    revision: int = 0
    seen: int = 0

    @property
    def wide_seen(self) -> bool:
        """``seen`` is an int64 (``size_t``) rather than an int32."""
        return self.major * 10 + self.minor >= 2 and self.major < 1000 and self.minor < 1000

    @property
    def size(self) -> int:
        return 12 + (8 if self.wide_seen else 4)

    def to_bytes(self) -> bytes:
        return struct.pack("<iii", self.major, self.minor, self.revision) + \
            struct.pack("<q" if self.wide_seen else "<i", self.seen)

    def text(self) -> str:
        """``major=0 minor=2 revision=0 seen=32013312``: how a weights file's metadata keeps it."""
        return f"major={self.major} minor={self.minor} revision={self.revision} seen={self.seen}"

    @classmethod
    def from_text(cls, text: str) -> "Header":
        try:
            values = dict(item.split("=", 1) for item in text.split())
            return cls(*(int(values[k]) for k in ("major", "minor", "revision", "seen")))
        except (KeyError, ValueError):
            raise WeightsError(f"darknet header: expected 'major=M minor=N revision=R seen=S', got {text[:80]!r}") \
                from None

    @classmethod
    def from_bytes(cls, data: bytes, source: str) -> "Header":
        if len(data) < 12:
            raise WeightsError(f"{source}: {len(data)} bytes, shorter than a Darknet weights header (12)")
        major, minor, revision = struct.unpack_from("<iii", data)
        probe = cls(major, minor, revision)
        if len(data) < probe.size:
            raise WeightsError(f"{source}: the header ends early ({len(data)} bytes, {probe.size} needed)")
        (seen,) = struct.unpack_from("<q" if probe.wide_seen else "<i", data, 12)
        return cls(major, minor, revision, seen)


def layout_floats(layout: Layout) -> int:
    return sum(int(np.prod(shape)) for _, shape in layout)


def parse_weights(data: bytes | bytearray, layout: Layout, source: str) -> tuple[Header, dict[str, torch.Tensor]]:
    """``(header, tensors)`` of ``.weights`` bytes read with ``layout``; the size must fit it exactly.

    The tensors are views of ``data`` when it is writable (a ``bytearray``): the file is held once."""
    header = Header.from_bytes(bytes(data[:20]), source)  # 20: the longest header
    body = len(data) - header.size
    expected = 4 * layout_floats(layout)
    if body != expected:
        what = "short" if body < expected else "long"
        raise WeightsError(f"{source}: {body:,} bytes of weights after the header, the cfg needs {expected:,} "
                           f"({layout_floats(layout):,} float32s): the file is too {what} for this cfg"
                           + (f" (it stops inside {_key_at(layout, body // 4)})" if body < expected else ""))
    floats = np.frombuffer(data, dtype="<f4", offset=header.size)
    native = floats.astype(np.float32, copy=not floats.flags.writeable)  # no copy on little-endian machines
    tensors, at = {}, 0
    for key, shape in layout:
        count = int(np.prod(shape))
        tensors[key] = torch.from_numpy(native[at:at + count].reshape(shape))
        at += count
    return header, tensors


def _key_at(layout: Layout, position: int) -> str:
    at = 0
    for key, shape in layout:
        at += int(np.prod(shape))
        if position < at:
            return key
    return layout[-1][0]


def read_weights_file(path: str | os.PathLike, layout: Layout) -> tuple[Header, dict[str, torch.Tensor]]:
    try:
        with open(path, "rb") as handle:
            data = bytearray(os.fstat(handle.fileno()).st_size)
            size = handle.readinto(data)
            del data[size:]
    except FileNotFoundError:
        raise WeightsError(f"{path}: no such file") from None
    except OSError as exc:
        raise WeightsError(f"{path}: cannot read ({exc.strerror})") from None
    return parse_weights(data, layout, str(path))


def weights_writer(header: Header, layout: Layout, tensors: Mapping[str, torch.Tensor]
                   ) -> Callable[[Path], None]:
    """Write the ``.weights`` file of ``tensors`` in ``layout`` order (float32, little-endian) to a path, one
    tensor at a time; every shape is checked before anything is written."""
    for key, shape in layout:
        if tuple(tensors[key].shape) != tuple(shape):
            raise WeightsError(f"{key}: shape {tuple(tensors[key].shape)}, the cfg needs {tuple(shape)}")

    def write(path: Path) -> None:
        with open(path, "xb") as handle:
            handle.write(header.to_bytes())
            for key, _ in layout:
                handle.write(tensor_bytes(tensors[key].to(torch.float32)))
            handle.flush()
            os.fsync(handle.fileno())

    return write
