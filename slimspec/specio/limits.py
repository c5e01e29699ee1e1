"""Limits on the YAML slimspec reads (specs, plans, specs embedded in weights files).

Every document is checked against these while it is read, before any Python object is built
from it, so a hostile or broken file is refused quickly and with bounded memory; each refusal
is a located one-line :class:`~slimspec.errors.SpecError` naming the limit. The figures are far
above what any real spec needs (the largest stock spec is under 2 KB, about 200 nodes and 5
levels deep).
"""
from __future__ import annotations

MAX_FILE_BYTES = 1 << 20
"""Largest spec or plan file (and embedded spec text) read: 1 MiB."""

MAX_NODES = 100_000
"""Most YAML nodes (scalars, sequences, mappings) in one document, counted *after* alias
expansion: a 400-byte "billion laughs" alias bomb (9 anchors x 9 aliases, 9**9 nodes) is
refused while it is being composed."""

MAX_DEPTH = 64
"""Deepest nesting of sequences and mappings (also counted through aliases)."""

MAX_INT = 2**63 - 1
"""Largest magnitude of an integer scalar (int64): wider numbers are refused where they are
written, instead of overflowing later in a float or a tensor size."""

MAX_INT_DIGITS = 30
"""Longest integer token parsed (a longer one is refused without converting it)."""

MAX_NAME_BYTES = 255
"""Longest file name component (NAME_MAX on Linux and macOS)."""

MAX_PARAMS = 2**31
"""Most parameters :func:`slimspec.build` allocates unless told otherwise (8 GiB of float32);
override with ``SLIMSPEC_MAX_PARAMS`` (environment) or ``max_params=``/``--max-params``."""

MAX_PARAMS_ENV = "SLIMSPEC_MAX_PARAMS"
