"""One progress style for long commands (tqdm on stderr), and the command line that produced a
report (provenance).

``bar(total, desc, quiet)`` is a tqdm bar with an ETA (a no-op object under ``--quiet``, with
``QESIM_PROGRESS=0`` or when tqdm is not installed); call ``.update()`` per unit of work and
``.close()`` at the end.

``command_line(default)``: the ``qesim ...`` command actually run (recorded by
:func:`qesim.cli.main`), so a report says how it was made, with the arguments as given; Python
callers get ``default``.
"""

from __future__ import annotations

import os
import shlex
import sys
from typing import Optional

_ARGV: Optional[list[str]] = None


def set_argv(argv: list[str]) -> None:
    """Record the arguments of the ``qesim`` command being run (called by the CLI)."""
    global _ARGV
    _ARGV = list(argv)


def command_line(default: str) -> str:
    """``qesim <args as given>`` when run from the CLI, else ``default``."""
    if _ARGV is None:
        return default
    return "qesim " + shlex.join(_ARGV)


class _Null:
    def update(self, n: int = 1) -> None:
        pass

    def set_postfix_str(self, s: str) -> None:
        pass

    def close(self) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def bar(total: int, desc: str, quiet: bool = False, unit: str = "case"):
    """A tqdm progress bar on stderr (rate and ETA), or a no-op."""
    if quiet:
        return _Null()
    if os.environ.get("QESIM_PROGRESS") == "0":
        return _Null()
    try:
        from tqdm import tqdm
    except ModuleNotFoundError:
        return _Null()
    tty = sys.stderr.isatty()
    # on a terminal the bar redraws in place; in a log it prints a line at most every 10 s
    return tqdm(total=total, desc=desc, unit=unit, file=sys.stderr, dynamic_ncols=tty, leave=not tty,
                mininterval=0.1 if tty else 10.0)
