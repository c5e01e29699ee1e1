"""Pruning options: one object for the plan file's keys and the CLI flags (flags win).

A plan is a YAML file with the keys of ``slimspec prune``'s flags, validated by its own JSON
Schema (``plan_schema.json``) with located errors. Unset values fall back to the criterion's
defaults (scope, threshold). :meth:`PruneOptions.policy` is the one route from options to the
policy: ``prune``, its target search, ``plot gammas`` and ``sensitivity`` all take it.
"""
from __future__ import annotations

import copy
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from functools import lru_cache
from importlib import resources
from typing import Any

from ..errors import SpecError, SpecIssue
from ..specio.validate import issues_for_schema
from ..specio.yamlio import parse_yaml, read_yaml_file
from ..errors import PruneError
from .criteria import Criterion, criteria, get_criterion
from .policy import PERCENT_RULES, PolicyConfig
from .targets import check_target_options, targets


def plan_schema() -> dict:
    """The plan's JSON Schema, with the method enum and target keys taken from the registries.

    Built on each call (it is small), so a criterion or target registered at run time is
    accepted in plans at once.
    """
    schema = copy.deepcopy(_plan_schema_file())
    props = schema["properties"]
    props["method"]["enum"] = sorted(criteria())
    props["percent_rule"]["enum"] = list(PERCENT_RULES)
    fraction = {"type": "number", "exclusiveMinimum": 0, "maximum": 1}
    props["target"]["properties"] = {name: {**fraction, "description": metric.help}
                                     for name, metric in sorted(targets().items())}
    return schema


@lru_cache(maxsize=1)
def _plan_schema_file() -> dict:
    return json.loads(resources.files(__package__).joinpath("plan_schema.json").read_text(encoding="utf-8"))


def parse_target(text: str | Mapping[str, float] | None) -> dict[str, float] | None:
    """``"macs=0.5"`` or ``{"macs": 0.5}`` -> ``{"macs": 0.5}``."""
    if text is None or isinstance(text, Mapping):
        target = dict(text) if text else None
    else:
        key, sep, value = str(text).partition("=")
        try:
            target = {key.strip(): float(value)} if sep else None
        except ValueError:
            target = None
        if target is None:
            names = " or ".join(f"'{name}=FRACTION'" for name in targets())
            raise PruneError(f"target: expected {names}, got '{text}'")
    if target is not None:
        issues = issues_for_schema(plan_schema(), {"target": target})
        if issues:
            raise PruneError("; ".join(str(i) for i in issues))
    return target


AUTO = "auto"  # round_to: the multiple whose network this machine's runtime runs fastest (pruning.steps)

# The keys (and their defaults) that only say which channels go: meaningless for single-weight masks.
CHANNEL_SHAPING: dict[str, Any] = {"round_to": 1, "min_channels": 1, "prune_stream": False, "fold_bias": False}
# The keys that say how much to prune: a flag giving one of them replaces all of the plan's.
AMOUNT_KEYS = ("ratio", "target", "threshold", "percent")


@dataclass
class PruneOptions:
    method: str = ""
    ratio: float | None = None
    target: dict[str, float] | None = None
    threshold: float | None = None
    percent: float | None = None  # Network Slimming's rule: threshold = sorted scores[int(N * percent)]
    percent_rule: str = "slimming"  # a channel scoring the threshold: pruned (slimming) or kept (darknet)
    scope: str | None = None
    min_channels: int = 1
    round_to: int | str = 1  # or "auto": resolved into an integer by prune, which times the candidates
    exclude: list[str] = field(default_factory=list)
    overrides: dict[str, float] = field(default_factory=dict)
    prune_stream: bool = False
    calibration: str | None = None
    data_dir: str | None = None
    calibration_batches: int = 8
    calibration_batch_size: int = 64
    seed: int = 0
    fold_bias: bool = False
    binary_gates: bool = False
    target_options: dict[str, Any] = field(default_factory=dict)  # e.g. a latency table path
    progress: bool = False  # report the target search on stderr (the CLI turns it on)

    @classmethod
    def from_plan(cls, plan: Mapping[str, Any]) -> "PruneOptions":
        values = dict(plan)
        values.pop("description", None)
        calibration = values.pop("calibration", None)
        if calibration:
            values["calibration"] = calibration["data"]
            values["data_dir"] = calibration.get("data_dir")
            values["calibration_batches"] = calibration.get("batches", 8)
            values["calibration_batch_size"] = calibration.get("batch_size", 64)
        return cls(**values)

    @classmethod
    def resolve(cls, plan: str | os.PathLike | Mapping | None = None, **flags: Any) -> "PruneOptions":
        """Plan values, then every flag that is not None."""
        options = cls.from_plan(load_plan(plan)) if plan is not None else cls()
        known = {f.name for f in fields(cls)}
        given = {key: value for key, value in flags.items()
                 if value is not None and not (key in ("exclude", "overrides") and not value)}
        for key in flags:
            if key not in known:
                raise PruneError(f"prune() got an unexpected option '{key}'")
        if given.keys() & AMOUNT_KEYS:  # a flag saying how much to prune replaces the plan's amount
            for key in AMOUNT_KEYS:
                setattr(options, key, None)
        for key, value in given.items():
            if key == "exclude" and isinstance(value, (str, os.PathLike)):
                value = [str(value)]  # one pattern, not its characters
            setattr(options, key, value)
        options.target = parse_target(options.target)
        if not options.method:
            raise PruneError("method: not given (use --method or a plan's 'method')")
        if options.target:  # the policy never sees a target (the search turns it into a ratio)
            for key in ("percent", "threshold", "ratio"):  # ratio 0 is an amount too
                if getattr(options, key) is not None:
                    raise PruneError(f"give either {key} or target, not both")
        if isinstance(options.round_to, str) and options.round_to != AUTO:
            raise PruneError(f"round_to: expected an integer >= 1 or '{AUTO}', got '{options.round_to}'")
        criterion = get_criterion(options.method)
        if not criterion.structured and options.overrides:
            raise PruneError(f"overrides: method '{options.method}' masks single weights to one ratio; overrides "
                             "pick channel slots and do not apply to it (exclude layers instead)")
        options.policy(criterion, checking=True)  # checks the amount before any weights are read
        check_target_options(options.target, options.target_options)  # none that the target would ignore
        return options

    def channel_shaping(self) -> dict[str, Any]:
        """The options set away from their defaults that only shape which channels go (``CHANNEL_SHAPING``):
        a prune that masks single weights ignores them (with a warning) and records the defaults."""
        return {key: getattr(self, key) for key, default in CHANNEL_SHAPING.items() if getattr(self, key) != default}

    def policy(self, criterion: Criterion, *, ratio: float | None = None, checking: bool = False) -> PolicyConfig:
        """The policy these options ask of ``criterion``.

        The amount is the options' own ratio, threshold or percent (the criterion's default
        threshold when none is given and nothing is overridden); ``ratio`` replaces it (the
        ratio a target search tries). Scope defaults to the criterion's. ``round_to: auto`` must have
        been resolved (prune times a network per multiple, :func:`.steps.choose_rounded`) unless only
        ``checking`` the other values.
        """
        if self.round_to == AUTO and not checking:
            raise PruneError("round_to: 'auto' is resolved by prune, which probes this machine; give an integer here")
        threshold, percent = self.threshold, self.percent
        if ratio is None:
            ratio = self.ratio
            if ratio is None and threshold is None and percent is None and not self.target and not self.overrides:
                threshold = criterion.default_threshold
        else:
            threshold = percent = None
        return PolicyConfig(ratio=ratio, threshold=threshold, percent=percent, percent_rule=self.percent_rule,
                            scope=self.scope or criterion.default_scope, min_channels=self.min_channels,
                            round_to=1 if self.round_to == AUTO else self.round_to, exclude=tuple(self.exclude),
                            overrides=tuple(self.overrides.items()), prune_stream=self.prune_stream,
                            prune_blocks=criterion.prunes_blocks)


def load_plan(plan: str | os.PathLike | Mapping) -> dict:
    """Read and validate a plan file (or check a mapping); raises SpecError with located issues."""
    if isinstance(plan, Mapping):
        data, source = dict(plan), "<plan>"
    else:
        text, source = read_yaml_file(plan, "plan")
        data = parse_yaml(text, source)
    if not isinstance(data, dict):
        raise SpecError([SpecIssue("", "a plan must be a YAML mapping")], source)
    issues = issues_for_schema(plan_schema(), data)
    if issues:
        raise SpecError(issues, source)
    return data
