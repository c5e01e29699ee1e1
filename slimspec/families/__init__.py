"""Spec families: each ``arch`` registered by name, spec <-> IR. Torch-free."""
from . import densenet, graph, mlp, mobilenetv2, preresnet, resnet, vgg  # noqa: F401  (registration)
from .base import WIDTH_KEYS, Family, families, get_family, register_family
from .schema import normalize, schema_issues, spec_schema, to_ir

__all__ = ["WIDTH_KEYS", "Family", "families", "get_family", "normalize", "register_family", "schema_issues",
           "spec_schema", "to_ir"]
