"""Channel-importance criteria, one module each, registered by name."""
from . import attention, gate, l1, magnitude, random, slimming  # noqa: F401  (registration)
from .base import Criterion, PruneError, ScoreContext, Scores, criteria, get_criterion, register_criterion

__all__ = ["Criterion", "PruneError", "ScoreContext", "Scores", "criteria", "get_criterion", "register_criterion"]
