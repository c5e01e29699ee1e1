"""The ``slimspec`` command: a thin layer over the Python API."""
from __future__ import annotations

import importlib
from typing import Any

import click

from .. import __version__
from .deploy_cmds import bench, export
from .errors import guarded, pipe_closed
from .interop_cmds import import_model
from .prune_cmds import prune, sensitivity
from .spec_cmds import build, diff, git_setup, info, schema, textconv, validate
from .train_cmds import register as register_training


# commands whose module is imported only when they run or help lists them: `plot` reads the plotting and
# training-run modules, which `slimspec prune` (and every other command) never needs
LAZY_COMMANDS = {"plot": "plot_cmds:plot"}


class SlimspecGroup(click.Group):
    """The command group: every subcommand's exit codes follow :mod:`slimspec.cli.errors` (0 ok, 1 bad
    input, 2 usage, 70 a bug, 141 stdout closed), whether or not the command maps its own errors."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *LAZY_COMMANDS})

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name in LAZY_COMMANDS and name not in self.commands:
            module, _, attr = LAZY_COMMANDS[name].partition(":")
            self.add_command(getattr(importlib.import_module(f".{module}", __package__), attr))
        return super().get_command(ctx, name)

    def make_context(self, *args: Any, **kwargs: Any) -> click.Context:
        try:  # --help | head
            return super().make_context(*args, **kwargs)
        except BrokenPipeError:
            pipe_closed()

    def invoke(self, ctx: click.Context) -> Any:
        return guarded(lambda: super(SlimspecGroup, self).invoke(ctx))


@click.group(cls=SlimspecGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="slimspec")
@click.pass_context
def cli(ctx: click.Context) -> None:
    """Declarative CNN specs and a pruning DSL for PyTorch.

    Pruning writes a new spec file plus transplanted weights, so a pruned architecture can be
    diffed in git, versioned, fine-tuned or retrained from scratch.
    """
    from ..utils.fileio import command_inputs

    ctx.with_resource(command_inputs())  # every file the command reads is an input: no output may replace it


for command in (validate, info, build, schema, diff, textconv, git_setup, prune, import_model, sensitivity):
    cli.add_command(command)

register_training(cli)
cli.add_command(export)
cli.add_command(bench)


def main() -> None:
    cli(prog_name="slimspec")


if __name__ == "__main__":
    main()
