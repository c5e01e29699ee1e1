"""The spec layer: YAML in and out, schema checking, channel sets, located errors. No torch.

The full spec schema is assembled from the families (``slimspec.families.spec_schema``).
"""
from .channels import format_channel_set, parse_channel_set
from ..errors import SpecError, SpecIssue, format_path, parse_path
from .yamlio import format_spec, parse_yaml, update_spec_text

__all__ = [
    "SpecError", "SpecIssue", "format_channel_set", "format_path", "format_spec", "parse_channel_set",
    "parse_path", "parse_yaml", "update_spec_text",
]
