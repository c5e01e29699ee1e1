"""The ``slimspec`` command: a thin layer over the Python API."""
from __future__ import annotations

import click

from .. import __version__
from .deploy_cmds import bench, export
from .interop_cmds import import_model
from .plot_cmds import plot
from .prune_cmds import prune, sensitivity
from .spec_cmds import build, diff, git_setup, info, schema, textconv, validate
from .train_cmds import register as register_training


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="slimspec")
def cli() -> None:
    """Declarative CNN specs and a pruning DSL for PyTorch.

    Pruning writes a new spec file plus transplanted weights, so a pruned architecture can be
    diffed in git, versioned, fine-tuned or retrained from scratch.
    """


for command in (validate, info, build, schema, diff, textconv, git_setup, prune, import_model, sensitivity):
    cli.add_command(command)

register_training(cli)
cli.add_command(export)
cli.add_command(bench)
cli.add_command(plot)


def main() -> None:
    cli(prog_name="slimspec")


if __name__ == "__main__":
    main()
