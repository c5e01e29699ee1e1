"""Fingerprints of layer-list specs (``arch: sequential`` / ``graph``), for the golden test of the layer
vocabulary: what a spec counts and computes, independent of how the code that builds it is organized.

``python tests/layer_list_fingerprint.py CORPUS.json OUT.json`` writes them; ``tests/data/layer_lists.json``
was written by the code before the layer table (sequential and graph as two front ends) and
``test_layer_vocabulary.py`` checks today's code against it.
"""
from __future__ import annotations

import hashlib
import json
import re
import sys

import torch
import yaml

import slimspec
from slimspec.document import spec_from_text
from slimspec.nn.net import SpecNet

GATE = re.compile(r"^(slots\.\d+\.gate|gates\.\w+)\.")


def det_tensor(key: str, shape: tuple[int, ...]) -> torch.Tensor:
    """Values in [0.3, 0.7) drawn from a seed that is the tensor's name."""
    seed = int(hashlib.sha1(key.encode()).hexdigest()[:8], 16)
    n = 1
    for s in shape:
        n *= s
    return (torch.rand(n, generator=torch.Generator().manual_seed(seed)) * 0.4 + 0.3).reshape(shape)


def _digest(items: list[str]) -> str:
    return hashlib.sha1("\n".join(sorted(items)).encode()).hexdigest()[:16]


def fingerprint(data: dict) -> dict:
    """params, MACs, state keys per build mode (gate names apart), and outputs on name-seeded weights."""
    try:
        spec = spec_from_text(yaml.safe_dump(data, sort_keys=False), "corpus")
    except slimspec.SpecError:
        return {"error": "SpecError"}
    info = slimspec.info(spec)
    out: dict = {"params": info["params"], "macs": info["macs"]}
    x = det_tensor("input", (2, *spec.ir.input_shape))
    for mode in ("plain", "masked", "gated"):
        with torch.device("meta"):
            model = SpecNet(spec, mode)
        shapes = model.state_dict()
        out[f"{mode}_keys"] = _digest([f"{GATE.sub('G.', k)}:{tuple(v.shape)}" for k, v in shapes.items()])
        if mode != "plain":
            out[f"{mode}_gates"] = sorted({m.group(1) for k in shapes if (m := GATE.match(k))})
        state = {}
        for key, value in shapes.items():
            if key.endswith("num_batches_tracked"):
                state[key] = torch.tensor(0)
            elif key.endswith("mask"):
                state[key] = torch.ones(value.shape)
            elif GATE.match(key):  # gates by their size, not their name: the same wherever they are named
                state[key] = torch.linspace(0.5, 1.5, value.numel()).reshape(value.shape)
            else:
                state[key] = det_tensor(key, tuple(value.shape))
        model.load_state_dict(state, assign=True)
        with torch.no_grad():
            y = model.eval()(x)
        out[f"{mode}_out"] = [round(float(v), 4) for v in y.flatten()[:6]] + [round(float(y.sum()), 3)]
    return out


if __name__ == "__main__":
    corpus = json.load(open(sys.argv[1]))
    result = {key: {"data": data, "fp": fingerprint(data)} for key, data in sorted(corpus.items())}
    with open(sys.argv[2], "w") as f:
        json.dump(result, f, sort_keys=True, separators=(",", ":"))
        f.write("\n")
