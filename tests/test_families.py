"""Family semantics the schema cannot express, and spec -> IR -> spec in the same form."""
from __future__ import annotations

import pytest

from slimspec.document import spec_from_text
from slimspec.families import families, get_family
from slimspec.errors import SpecError

from .conftest import ALL_SPECS

HEAD = "slimspec: 1\nname: t\ninput: [3, 32, 32]\nnum_classes: 10\n"


def errors_of(body: str) -> list[str]:
    with pytest.raises(SpecError) as caught:
        spec_from_text(HEAD + body)
    return [str(issue) for issue in caught.value.issues]


def test_shortcut_a_cannot_narrow():
    lines = errors_of("arch: resnet\nblock: basic\nstem: 16\nstages:\n  - {width: 32, blocks: 1}\n  - {width: 16, blocks: 1, stride: 2}\n")
    assert any(line.startswith("stages[1].width:") and "narrow" in line for line in lines)


def test_block_entry_must_match_block_kind():
    lines = errors_of("arch: resnet\nblock: bottleneck\nstem: 16\nstages:\n  - {width: 64, blocks: [[16, 16], 16]}\n")
    assert any(line.startswith("stages[0].blocks[1]:") for line in lines)


def test_channel_set_out_of_range():
    lines = errors_of("arch: preresnet\nstem: 16\nstages:\n  - width: 64\n    blocks:\n      - [16, 16]\n"
                      "      - {select: \"0-63,70\", inner: [16, 16]}\n")
    assert any(line.startswith("stages[0].blocks[1].select:") and "64" in line for line in lines)


def test_densenet_selection_out_of_range_and_transitions():
    lines = errors_of("arch: densenet\ngrowth: 12\nstem: 24\nblocks: [[\"0-23\", \"0-40\"], 2]\n")
    assert any(line.startswith("blocks[0][1]:") for line in lines)


def test_vgg_pools_below_one_pixel_reports_every_entry():
    lines = errors_of("arch: vgg\ncfg: [8, M, M, M, M, M, M]\n")
    assert [line.split(":")[0] for line in lines] == ["cfg[6]"]


def test_sequential_conv_after_flatten():
    lines = errors_of("arch: sequential\nlayers:\n  - flatten\n  - conv: 8\n")
    assert any(line.startswith("layers[1]:") for line in lines)


@pytest.mark.parametrize("name", ALL_SPECS)
def test_write_with_unchanged_sizes_is_the_identity(name):
    """IR -> spec: writing back the same widths gives the same data (the pruner's ratio-0 case)."""
    from slimspec import load_spec

    spec = load_spec(name)
    family = get_family(spec.arch)
    sizes = {p: s.size for p, s in spec.ir.slots.items()}
    selects = {p: s.index for p, s in spec.ir.slots.items() if s.kind == "select"}
    assert family.write(spec.data, spec.ir, sizes, selects) == spec.data


def test_every_family_has_a_stock_spec():
    from slimspec import load_spec

    assert {load_spec(name).arch for name in ALL_SPECS} == set(families())
