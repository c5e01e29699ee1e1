"""The op table is the one place op knowledge lives: every table agrees with it."""
from __future__ import annotations

import pytest

from slimspec.document import load_spec, stock_specs
from slimspec.ir import IRBuilder
from slimspec.ir.ops import GROUP_IN, OPS
from slimspec.nn.net import FUNCTIONAL, MODULE_FACTORIES
from slimspec.utils.names import resolve_dotted


def test_every_op_has_exactly_one_torch_implementation():
    """A factory, a torch class named in the table, or a function: exactly one of them, for every op."""
    named = {name for name, op in OPS.items() if op.module is not None}
    ways = [set(MODULE_FACTORIES), named, set(FUNCTIONAL)]
    for i, a in enumerate(ways):
        for b in ways[i + 1:]:
            assert not a & b
    assert set().union(*ways) == set(OPS) - {"input"}
    for name in named:  # the named classes exist and take the table's keyword arguments
        resolve_dotted(OPS[name].module)


@pytest.mark.parametrize("name", sorted(stock_specs()))
def test_every_op_a_stock_spec_emits_is_in_the_table(name):
    ir = load_spec(name).ir
    assert {node.op for node in ir.nodes} <= set(OPS)


def test_builder_refuses_an_op_missing_from_the_table():
    b = IRBuilder("vgg", "x", (3, 8, 8), 10, {})
    with pytest.raises(ValueError, match="not in the op table"):
        b._node("weird", "swish2", ("input",), (3, 8, 8), b.axis("input"), "")


def test_grouped_conv_counts_and_tensor_dims():
    b = IRBuilder("vgg", "x", (8, 4, 4), 10, {})
    out = b.add_slot("c", 8)
    name = b.conv("dw", "input", out, 3, 1, 1, False, groups=8)
    ir = b.finish()
    node = ir.node(name)
    assert OPS["conv"].params(ir, node) == 8 * 1 * 9
    assert OPS["conv"].macs(ir, node) == 8 * 9 * 16
    assert OPS["conv"].tensors(node)["weight"] == ("out", GROUP_IN)  # each filter reads its own group


def test_slots_carry_their_stage_and_block():
    ir = load_spec("resnet20").ir
    slot = ir.slots["stages[1].blocks[2]"]
    assert slot.group == ("stages[1]", "stages[1].blocks[2]")
    assert ir.slots["stages[1].blocks[2].block"].group == ("stages[1]", "stages[1].blocks[2]")
