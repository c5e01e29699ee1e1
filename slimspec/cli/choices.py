"""Click choices read from the registries when first needed (help text, parsing), never copied.

The registries live in torch-backed modules; reading them lazily keeps ``slimspec validate``
and the git textconv driver free of the torch import.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence

import click


class RegistryChoice(click.Choice):
    """A ``click.Choice`` whose choices come from ``names()`` at use time."""

    def __init__(self, names: Callable[[], Sequence[str]], case_sensitive: bool = True):
        self._names = names
        self.case_sensitive = case_sensitive

    @property  # type: ignore[override]
    def choices(self) -> tuple[str, ...]:
        return tuple(self._names())


def criterion_names() -> list[str]:
    from ..pruning.criteria import criteria

    return sorted(criteria())


def target_names() -> list[str]:
    from ..pruning.targets import targets

    return sorted(targets())


def percent_rules() -> list[str]:
    from ..pruning.policy import PERCENT_RULES

    return list(PERCENT_RULES)


def dataset_names() -> list[str]:
    from ..data import available_datasets

    return available_datasets()


def build_modes() -> list[str]:
    from ..nn import MODES

    return list(MODES)


def schedule_names() -> list[str]:
    from ..training.config import SCHEDULES

    return list(SCHEDULES)


def finetune_presets() -> list[str]:
    from ..training.api import SCHEDULE_PRESETS

    return list(SCHEDULE_PRESETS)


def runtime_names() -> list[str]:
    from ..latency import runtime_names as names

    return names()


CRITERIA = RegistryChoice(criterion_names)
RUNTIMES = RegistryChoice(runtime_names)
PERCENT_RULES = RegistryChoice(percent_rules)
DATASETS = RegistryChoice(dataset_names)
MODES = RegistryChoice(build_modes)
SCHEDULES = RegistryChoice(schedule_names)
FINETUNE_PRESETS = RegistryChoice(finetune_presets)
