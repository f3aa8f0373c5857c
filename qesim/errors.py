"""User-facing input errors: one line naming the file, the field and what is allowed.

The CLI turns an :class:`InputError` into ``qesim: error: <message>`` on stderr and exit 2.
"""

from __future__ import annotations

from pathlib import Path


class InputError(ValueError):
    """Bad user input (unknown name, malformed file, out-of-range field). Exit status 2."""


def format_validation_error(source: str | Path, err) -> str:
    """Render a pydantic ``ValidationError`` as '<file>: field a.b.c: <msg> (got <value>)'."""
    parts = []
    for e in err.errors()[:5]:
        loc = ".".join(str(x) for x in e.get("loc", ()) if not str(x).startswith("function-after"))
        msg = e.get("msg", "invalid")
        inp = e.get("input")
        got = ""
        if e.get("type") not in ("missing",) and not isinstance(inp, (dict, list)):
            got = f" (got {inp!r})"
        parts.append(f"field {loc or '<root>'}: {msg}{got}")
    more = f" (+{len(err.errors()) - 5} more)" if len(err.errors()) > 5 else ""
    return f"{source}: " + "; ".join(parts) + more
