"""The click type of every output-file option (``--out``/``-o``/``--weights-out``), defined once."""
from __future__ import annotations

import os

import click


class OutputFile(click.Path):
    """An output file name: a name ending with a separator (``newdir/``) or naming an existing folder is
    refused as a usage error, the same way for every command (nothing named ``newdir`` is written)."""

    def __init__(self) -> None:
        super().__init__(dir_okay=False)

    def convert(self, value, param, ctx):  # type: ignore[override]
        from ..utils.fileio import names_a_folder

        if isinstance(value, (str, os.PathLike)) and (problem := names_a_folder(value)):
            self.fail(problem, param, ctx)
        return super().convert(value, param, ctx)


OUTPUT_FILE = OutputFile()
