"""slimspec: declarative CNN specs and a pruning DSL for PyTorch."""
__version__ = "0.1.0"
