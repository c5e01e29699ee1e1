"""A git textconv view of a spec: one line per layer slot, so ``git diff`` shows width changes.

Register it with ``slimspec git-setup``. Files that are not valid slimspec specs are printed
unchanged (whatever they hold: other YAML, binary data, a file over the size limit), so the
driver is safe on every ``*.yaml`` in a repository and ``git diff`` never fails because of it.
"""
from __future__ import annotations

import json
import os
import shutil
from typing import BinaryIO

from ..document import Spec, spec_from_text
from ..families import WIDTH_KEYS
from ..ir import count_macs, count_params
from ..specio.channels import format_channel_set
from ..specio.limits import MAX_FILE_BYTES


def _slot_line(slot, width: int) -> str:
    line = f"{slot.path:<{width}} {slot.size}"
    if slot.kind == "select" and slot.index is not None and slot.base_size is not None:
        line += f" of {slot.base_size}"
        if len(slot.index) != slot.base_size:
            line += f"  [{format_channel_set(slot.index)}]"
    elif slot.kind != "channel":
        line += f"  ({slot.kind})"
    return line


def textconv(spec: Spec) -> str:
    ir = spec.ir
    lines = [f"name: {spec.name}", f"arch: {spec.arch}", f"input: {list(ir.input_shape)}",
             *([f"num_classes: {ir.num_classes}"] if ir.num_classes is not None else []),
             f"params: {count_params(ir):,}", f"macs: {count_macs(ir):,}"]
    for key, value in spec.data.items():
        if key not in ("slimspec", "name", "arch", "input", "num_classes", "pruned", *WIDTH_KEYS):
            lines.append(f"{key}: {json.dumps(value)}")
    width = max((len(p) for p in ir.slots), default=10) + 2
    seen: set[str] = set()
    for node in ir.nodes:
        if node.op in ("maxpool", "avgpool") and node.at.startswith(("cfg", "layers")):
            lines.append(f"{node.at:<{width}} {node.op}")
        for path in node.axis.segments:
            if path in seen or path.startswith("#") or ir.slots[path].kind == "block":
                continue
            seen.add(path)
            lines.append(_slot_line(ir.slots[path], width))
    pruned = spec.data.get("pruned")
    if pruned:
        for key, value in pruned.items():
            lines.append(f"pruned.{key}: {json.dumps(value)}")
    return "\n".join(lines) + "\n"


def textconv_bytes(raw: bytes, source: str = "<file>") -> bytes | None:
    """The per-slot view of a file's bytes, or None when they are not a readable slimspec spec."""
    if len(raw) > MAX_FILE_BYTES:
        return None
    try:
        return textconv(spec_from_text(raw.decode("utf-8"), source)).encode("utf-8")
    except Exception:  # noqa: BLE001 - never fail a whole `git diff` over one file: show it as it is
        return None


def write_textconv(path: str | os.PathLike, out: BinaryIO) -> None:
    """Write the textconv view of ``path`` to ``out``, or the file's bytes unchanged when it is
    not a slimspec spec. Only an unreadable file (an OSError) is an error."""
    with open(path, "rb") as handle:
        head = handle.read(MAX_FILE_BYTES + 1)
        view = textconv_bytes(head, str(path))
        if view is not None:
            out.write(view)
            return
        out.write(head)
        shutil.copyfileobj(handle, out)
