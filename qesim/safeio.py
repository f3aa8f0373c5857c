"""Input files read safely, output paths checked before work starts, JSON that is always finite.

Every user file goes through :func:`read_text` (and :func:`parse_json` / :func:`parse_yaml`), so
binary files, UTF-16 without the right BOM, files nested deeper than a parser can follow and
oversized files give one :class:`~qesim.errors.InputError` line naming the file instead of a
traceback. UTF-8 (with or without BOM) and UTF-16/UTF-32 with a BOM are accepted.

Outputs: :func:`check_out_dir` / :func:`check_out_file` are called by each command *before* it
does its work (a two-minute report must not fail on its output directory at the end), and
:func:`dumps_finite` refuses to emit ``Infinity`` / ``NaN`` (they are not JSON).
"""

from __future__ import annotations

import codecs
import json
import math
import os
import re
from pathlib import Path
from typing import Any

from qesim.errors import InputError

#: largest input file read (bytes); layer graphs and configs are kilobytes
MAX_INPUT_BYTES = 64 * 2**20
#: deepest nesting of mappings/lists accepted in a JSON/YAML input (graphs need 6)
MAX_NESTING = 64

_BOMS = ((codecs.BOM_UTF32_LE, "utf-32"), (codecs.BOM_UTF32_BE, "utf-32"), (codecs.BOM_UTF8, "utf-8-sig"),
         (codecs.BOM_UTF16_LE, "utf-16"), (codecs.BOM_UTF16_BE, "utf-16"))


def read_text(path: str | Path, what: str = "file") -> str:
    """The text of a user file; InputError for a missing/unreadable/binary/oversized file."""
    p = Path(path)
    try:
        if p.is_dir():
            raise InputError(f"{p}: is a directory, expected a {what}")
        size = p.stat().st_size
        if size > MAX_INPUT_BYTES:
            raise InputError(f"{p}: {size / 2**20:.0f} MiB is larger than the {MAX_INPUT_BYTES // 2**20} MiB "
                             f"accepted for a {what}")
        raw = p.read_bytes()
    except InputError:
        raise
    except OSError as e:
        raise InputError(f"{p}: cannot read {what} ({e.strerror or e})") from None
    enc = next((name for bom, name in _BOMS if raw.startswith(bom)), "utf-8")
    try:
        text = raw.decode(enc)
    except UnicodeDecodeError as e:
        raise InputError(f"{p}: not a text file (byte 0x{raw[e.start]:02x} at offset {e.start} is not valid "
                         f"{enc.upper()}); expected a UTF-8 {what}") from None
    if "\x00" in text:
        raise InputError(f"{p}: not a text file (contains NUL characters); expected a UTF-8 {what}")
    return text


def _depth(x: Any, limit: int) -> int:
    """Nesting depth of lists/dicts, iteratively (never recurses), stopping past ``limit``."""
    stack = [(x, 1)]
    best = 0
    while stack:
        v, d = stack.pop()
        if isinstance(v, dict):
            v = list(v.values())
        elif not isinstance(v, list):
            continue
        best = max(best, d)
        if best > limit:
            return best
        stack.extend((c, d + 1) for c in v)
    return best


def _check_depth(p: Path, data: Any) -> None:
    if _depth(data, MAX_NESTING) > MAX_NESTING:
        raise InputError(f"{p}: nested deeper than {MAX_NESTING} levels of lists/mappings")


def _reject_constant(c: str):
    raise ValueError(c)


def parse_json(path: str | Path, what: str = "JSON file") -> Any:
    """Parsed JSON (strict: no NaN/Infinity literals, depth-limited); InputError otherwise."""
    p = Path(path)
    text = read_text(p, what)
    # a cheap bound before parsing: the json module recurses once per bracket
    if _max_brackets(text) > MAX_NESTING:
        raise InputError(f"{p}: nested deeper than {MAX_NESTING} levels of lists/mappings")
    try:
        data = json.loads(text, parse_constant=_reject_constant)
    except json.JSONDecodeError as e:
        raise InputError(f"{p}: not valid JSON (line {e.lineno}, column {e.colno}: {e.msg})") from None
    except ValueError as e:  # NaN / Infinity / -Infinity
        raise InputError(f"{p}: not valid JSON ({e} is not a JSON number; numbers must be finite)") from None
    except RecursionError:
        raise InputError(f"{p}: nested too deeply to parse") from None
    _check_depth(p, data)
    return data


_BRACKETS = re.compile(r'"(?:[^"\\]|\\.)*"|[\[\]{}]')


def _max_brackets(text: str) -> int:
    """Maximum bracket nesting outside strings (JSON)."""
    d = best = 0
    for m in _BRACKETS.finditer(text):
        t = m.group()
        if t in "[{":
            d += 1
            best = max(best, d)
        elif t in "]}":
            d -= 1
    return best


def yaml_loader():
    """PyYAML's SafeLoader, but ``1e6`` / ``2.5E-3`` (YAML 1.2 floats) are numbers, not strings."""
    import yaml

    class _Loader(yaml.SafeLoader):
        pass

    _Loader.yaml_implicit_resolvers = {k: list(v) for k, v in yaml.SafeLoader.yaml_implicit_resolvers.items()}
    _Loader.add_implicit_resolver(
        "tag:yaml.org,2002:float",
        re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
        list("-+0123456789"))
    return _Loader


def parse_yaml(path: str | Path, what: str = "YAML file") -> Any:
    """Parsed YAML (safe loader, depth-limited); InputError naming the line of a syntax error."""
    import yaml

    p = Path(path)
    text = read_text(p, what)
    if _max_brackets(text) > MAX_NESTING:  # flow-style nesting: refuse before the parser recurses
        raise InputError(f"{p}: nested deeper than {MAX_NESTING} levels of lists/mappings")
    try:
        data = yaml.load(text, Loader=yaml_loader())  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise InputError(f"{p}: malformed YAML{where}: {problem}") from None
    except RecursionError:
        raise InputError(f"{p}: nested too deeply to parse") from None
    _check_depth(p, data)
    return data


# ----------------------------------------------------------------------------- outputs
def check_out_dir(path: str | Path, flag: str = "--out", create: bool = True) -> Path:
    """Create (or accept) an output directory and check it is writable, before any work.

    An empty path is refused (it would silently mean the current directory). With
    ``create=False`` nothing is created: the directory, or its nearest existing parent, must be a
    writable directory."""
    s = str(path)
    if not s.strip():
        raise InputError(f"{flag}: empty path; give a directory (e.g. {flag} reports)")
    p = Path(s)
    if p.exists() and not p.is_dir():
        raise InputError(f"{flag} {p}: exists and is not a directory")
    if not create:
        anc = p.absolute()
        while not anc.exists():
            anc = anc.parent
        if not anc.is_dir():
            raise InputError(f"{flag} {p}: {anc} is not a directory")
        if not os.access(anc, os.W_OK | os.X_OK):
            raise InputError(f"{flag} {p}: {anc} is not writable")
        return p
    try:
        p.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise InputError(f"{flag} {p}: cannot create directory ({e.strerror or e})") from None
    if not os.access(p, os.W_OK | os.X_OK):
        raise InputError(f"{flag} {p}: directory is not writable")
    return p


def check_out_file(path: str | Path, flag: str = "--out") -> Path:
    """Check an output file can be written (its directory exists and is writable; it is not a
    directory), before any work. The file itself is not created."""
    s = str(path)
    if not s.strip():
        raise InputError(f"{flag}: empty path; give a file name")
    p = Path(s)
    if p.is_dir():
        raise InputError(f"{flag} {p}: is a directory, expected a file name")
    parent = p.parent if str(p.parent) else Path(".")
    if not parent.is_dir():
        raise InputError(f"{flag} {p}: directory {parent} does not exist")
    if not os.access(parent, os.W_OK | os.X_OK) or (p.exists() and not os.access(p, os.W_OK)):
        raise InputError(f"{flag} {p}: not writable")
    return p


def nonfinite_paths(x: Any, prefix: str = "") -> list[str]:
    """Dotted paths of every NaN/Infinity float inside ``x`` (dicts, lists, numbers)."""
    out: list[str] = []
    stack = [(x, prefix)]
    while stack:
        v, where = stack.pop()
        if isinstance(v, dict):
            stack.extend((c, f"{where}.{k}" if where else str(k)) for k, c in v.items())
        elif isinstance(v, (list, tuple)):
            stack.extend((c, f"{where}[{i}]") for i, c in enumerate(v))
        elif isinstance(v, float) and not math.isfinite(v):
            out.append(where or "<value>")
    return sorted(out)


def require_finite(obj: Any, what: str = "result") -> None:
    """InputError naming the first NaN/Infinity inside ``obj``; an entry of a list ``ops`` is named
    by its op name (``op 'layer.q_proj' (cycles)``)."""
    bad = nonfinite_paths(obj)
    if not bad:
        return
    named = []
    for b in bad[:3]:
        m = re.match(r"^ops\[(\d+)\]\.?(.*)$", b)
        ops = obj.get("ops") if isinstance(obj, dict) else None
        if m and isinstance(ops, list) and isinstance(ops[int(m.group(1))], dict) and "name" in ops[int(m.group(1))]:
            named.append(f"op {ops[int(m.group(1))]['name']!r} ({m.group(2)})")
        else:
            named.append(b)
    raise InputError(f"{what} is not finite at {', '.join(named)}{f' (+{len(bad) - 3} more)' if len(bad) > 3 else ''}: "
                     "the inputs drive the model out of range (check bandwidths, rates and sizes)")


def dumps_finite(obj: Any, what: str = "result", **kw) -> str:
    """``json.dumps`` that refuses NaN/Infinity (not JSON) with an InputError naming the first
    offending field (a non-finite result means the inputs drove the model out of range)."""
    require_finite(obj, what)
    return json.dumps(obj, allow_nan=False, **kw)
