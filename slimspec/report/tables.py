"""Plain-text tables (moved to :mod:`slimspec.utils.tables`, below every layer that prints one)."""
from ..utils.tables import format_table, human

__all__ = ["format_table", "human"]
