"""slimspec: declarative CNN specs and a pruning DSL for PyTorch.

    import slimspec
    spec = slimspec.load_spec("specs/vgg19.yaml")
    model = slimspec.build(spec, mode="plain")
    slimspec.info(spec)["params"]

Every name is imported when first used: spec-only work (validate, info, diff) never imports
torch, and ``import slimspec.ir`` needs neither the YAML libraries nor jsonschema.
"""
from __future__ import annotations

from typing import Any

from .errors import SpecError, SpecIssue

__version__ = "0.1.0"

_LAZY = {
    "Spec": "document", "load_spec": "document", "dump_spec": "document", "stock_specs": "document",
    "build": "model", "info": "report.info", "save_weights": "model", "load_model": "model",
    "prune": "pruning.api", "PruneResult": "pruning.api",
    "train": "training.api", "resume": "training.api", "finetune": "training.api", "evaluate": "training.api",
    "sensitivity": "workflows.sensitivity", "import_torchvision": "interop.torchvision_models",
    "from_module": "interop.fx_trace",
    "export": "workflows.export", "bench": "workflows.bench",
}

__all__ = ["SpecError", "SpecIssue", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        module = importlib.import_module(f".{_LAZY[name]}", __name__)
        return getattr(module, name)
    raise AttributeError(f"module 'slimspec' has no attribute {name!r}")
