"""The IR: resolved networks with channel slots and analytic counts. Never imports torch."""
from .builder import IRBuilder
from .counts import LayerCount, count_macs, count_params, layer_counts, node_macs, node_params
from .graph import IR, Axis, Node, Slot

__all__ = ["IR", "Axis", "Node", "Slot", "IRBuilder", "LayerCount", "count_macs", "count_params",
           "layer_counts", "node_macs", "node_params"]
