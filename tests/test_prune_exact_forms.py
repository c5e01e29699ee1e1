"""Exactness on spec forms the stock specs don't cover: shortcut B bottlenecks with stream
pruning, flatten heads with hidden BN classifiers, sequential nets with 1-D BatchNorm."""
from __future__ import annotations

import pytest

import slimspec
from slimspec.document import spec_from_text
from slimspec.pruning.api import prune

from .conftest import randomize
from .test_prune_exact import assert_equivalent

HEAD = "slimspec: 1\nname: t\ninput: [1, 8, 8]\nnum_classes: 10\n"
FORMS = {
    "bottleneck_b": "arch: resnet\nblock: bottleneck\nstem: 16\nshortcut: B\nstages:\n"
                    "  - {width: 32, blocks: 2}\n  - {width: 64, blocks: [[8, 12], [16, 16]], stride: 2}\n",
    "basic_b_stem": "arch: resnet\nblock: basic\nstem: 8\nshortcut: B\nstages:\n  - {width: 16, blocks: 2}\n"
                    "  - {width: 16, blocks: 1, stride: 2}\n",
    "vgg_flatten_classifier": "arch: vgg\nbatch_norm: false\ncfg: [16, M, 24]\nhead: flatten\n"
                              "classifier: [32, 20]\nclassifier_bn: true\ndropout: 0.2\n",
    "sequential_bn1d": "arch: sequential\nlayers:\n  - conv: {out: 12, kernel: 3, padding: 1}\n  - bn\n  - relu\n"
                       "  - maxpool: 2\n  - flatten\n  - linear: 40\n  - bn\n  - relu\n  - dropout: 0.1\n  - linear: 30\n  - relu\n",
    "mlp_bn": "arch: mlp\ncfg: [48, 32]\nbatch_norm: true\n",
}


@pytest.mark.parametrize("form", sorted(FORMS))
@pytest.mark.parametrize("method", ["l1", "slimming"])
def test_forms_prune_exactly(tmp_path, form, method):
    spec = spec_from_text(HEAD + FORMS[form], form)
    model = randomize(slimspec.build(spec, seed=0))
    weights = tmp_path / "w.safetensors"
    slimspec.save_weights(model, spec, weights)
    stream = spec.arch == "resnet"
    result = prune(weights, method, ratio=0.4, prune_stream=stream)
    assert result.params[1] < result.params[0]
    if stream:
        assert any(row.kind == "stream" and row.after < row.before for row in result.report)
    assert_equivalent(weights, result)
