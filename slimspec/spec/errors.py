"""Located errors for specs and plans (defined in :mod:`slimspec.errors`, re-exported here).

Every problem with user input is a :class:`SpecIssue` with a location (a spec path such as
``cfg[3]`` or ``stages[1].blocks[4][0]``, or ``line 3, column 5`` for YAML syntax) and a
one-line message. :class:`SpecError` carries all of them, sorted, so the CLI can print every
problem at once and exit 1 without a traceback.
"""
from ..errors import Path, PathPart, SpecError, SpecIssue, format_path, parse_path

__all__ = ["Path", "PathPart", "SpecError", "SpecIssue", "format_path", "parse_path"]
