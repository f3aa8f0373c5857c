"""User-facing input errors: one line naming the file, the field and what is allowed.

The CLI turns an :class:`InputError` into ``qesim: error: <message>`` on stderr and exit 2.
"""

from __future__ import annotations

import difflib
import typing
from pathlib import Path


class InputError(ValueError):
    """Bad user input (unknown name, malformed file, out-of-range field). Exit status 2."""


def _submodel(model, loc: tuple):
    """The pydantic model class that holds the last key of ``loc`` (None if not a model)."""
    from pydantic import BaseModel

    cur = model
    for part in loc[:-1]:
        if cur is None or not (isinstance(cur, type) and issubclass(cur, BaseModel)):
            return None
        if isinstance(part, int):
            continue
        f = cur.model_fields.get(part)
        if f is None:
            return None
        cur = _model_in(f.annotation)
    return cur if isinstance(cur, type) and issubclass(cur, BaseModel) else None


def _model_in(ann):
    """The BaseModel class inside an annotation (``Optional[X]``, ``list[X]``, ``X``)."""
    from pydantic import BaseModel

    if isinstance(ann, type) and issubclass(ann, BaseModel):
        return ann
    for a in typing.get_args(ann):
        m = _model_in(a)
        if m is not None:
            return m
    return None


def _clean(msg: str) -> str:
    for pre in ("Value error, ", "Assertion failed, "):
        if msg.startswith(pre):
            msg = msg[len(pre):]
    return msg


def _one(e: dict, model) -> tuple[str, str]:
    """(dotted field path, message) of one pydantic error dict."""
    loc = tuple(x for x in e.get("loc", ()) if not (isinstance(x, str) and ("function-" in x or "[" in x)))
    path = ".".join(str(x) for x in loc)
    msg = _clean(e.get("msg", "invalid"))
    inp = e.get("input")
    kind = e.get("type", "")
    if kind == "extra_forbidden":
        msg = "unknown key"
        holder = _submodel(model, loc) if model is not None and loc else None
        if holder is not None:
            near = difflib.get_close_matches(str(loc[-1]), list(holder.model_fields), n=1, cutoff=0.6)
            msg += f"; did you mean {near[0]}?" if near else f"; known: {', '.join(holder.model_fields)}"
        return path, msg
    got = ""
    if kind != "missing" and not isinstance(inp, (dict, list)):
        r = repr(inp)
        got = f" (got {r if len(r) <= 60 else r[:57] + '...'})"
    return path, msg + got


def format_validation_error(source: str | Path, err, model=None) -> str:
    """Render a pydantic ``ValidationError`` on one line, every error shown, grouped by section.

    One error: ``'<file>: field a.b.c: <msg> (got <value>)'``. Several: ``'<file>: N invalid
    fields: field a.b: <msg>; a.c: <msg> | field d.e: <msg>'`` (``|`` separates top-level
    sections). With ``model`` (the validated class) an unknown key gets a did-you-mean."""
    items = [_one(e, model) for e in err.errors()]
    if len(items) == 1:
        path, msg = items[0]
        return f"{source}: field {path}: {msg}" if path else f"{source}: {msg}"
    groups: dict[str, list[str]] = {}
    for path, msg in items:
        groups.setdefault(path.split(".")[0] if path else "<root>", []).append(f"{path}: {msg}" if path else msg)
    body = " | ".join(("field " if k != "<root>" else "") + "; ".join(v) for k, v in groups.items())
    return f"{source}: {len(items)} invalid fields: {body}"
