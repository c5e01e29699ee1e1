"""Pruning: criteria, policies, plans, transplant. Import ``slimspec.pruning.api`` for ``prune``."""
