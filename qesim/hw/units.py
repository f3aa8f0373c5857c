"""Numbers with units in hardware configs: ``"4 MiB"``, ``"2039 GB/s"``, ``"1.41 GHz"``.

A hardware field keeps its unit in its name (``weight_bytes``, ``bandwidth_gbps``,
``frequency_mhz``); where a number with a unit is natural the YAML may also give a string with
an explicit unit, converted to the field's unit here. A quoted number *without* a unit
(``"460"``) is refused: it is usually a typo, and silently coercing it hides one.

Decimal prefixes are powers of 10 (kB = 1e3 B, GB/s = 1e9 B/s), binary prefixes powers of 2
(KiB = 2^10 B, GiB/s = 2^30 B/s).
"""

from __future__ import annotations

import math
import re
from typing import Any

_B = {"B": 1.0, "bytes": 1.0, "kB": 1e3, "KB": 1e3, "MB": 1e6, "GB": 1e9, "TB": 1e12,
      "KiB": 2.0**10, "MiB": 2.0**20, "GiB": 2.0**30, "TiB": 2.0**40}

#: unit kind -> (target unit, {written unit: factor to the target unit})
KINDS: dict[str, tuple[str, dict[str, float]]] = {
    "bytes": ("B", _B),
    "GiB": ("GiB", {k: v / 2.0**30 for k, v in _B.items()}),
    "GB/s": ("GB/s", {f"{k}/s": v / 1e9 for k, v in _B.items() if k != "bytes"}),
    "MHz": ("MHz", {"Hz": 1e-6, "kHz": 1e-3, "MHz": 1.0, "GHz": 1e3}),
}

_NUM_UNIT = re.compile(r"^\s*([-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?)\s*([A-Za-z/]+)?\s*$")


def parse_quantity(value: Any, kind: str, integer: bool = False) -> Any:
    """``value`` in the unit of ``kind`` (a number is returned as it is; a string must carry a
    unit of that kind). Raises ValueError with a one-line message otherwise."""
    if not isinstance(value, str):
        return value
    target, table = KINDS[kind]
    m = _NUM_UNIT.match(value)
    if not m:
        raise ValueError(f"expected a number or a number with a unit such as '{_example(kind)}'")
    num, unit = m.group(1), m.group(2)
    if unit is None:
        raise ValueError(f"a quoted number; write it unquoted, or with a unit (e.g. '{num} {target}')")
    if unit not in table:
        near = [u for u in table if u.lower() == unit.lower()]
        hint = f"; did you mean {near[0]}?" if near else f"; known units: {', '.join(table)}"
        raise ValueError(f"unknown unit {unit!r} for a {target} field{hint}")
    x = float(num) * table[unit]
    if not math.isfinite(x):
        raise ValueError("must be finite")
    if integer:
        r = round(x)
        if abs(x - r) > 1e-9 * max(1.0, abs(x)):
            raise ValueError(f"{value!r} is {x:g} {target}, not a whole number of {target}")
        return int(r)
    return x


def _example(kind: str) -> str:
    return {"bytes": "4 MiB", "GiB": "16 GiB", "GB/s": "2039 GB/s", "MHz": "1.41 GHz"}[kind]


def pattern(kind: str) -> str:
    """JSON-Schema regex of a number with one of the units of ``kind``."""
    units = "|".join(re.escape(u) for u in sorted(KINDS[kind][1], key=len, reverse=True))
    return rf"^\s*[-+]?(\d+(\.\d*)?|\.\d+)([eE][-+]?\d+)?\s*({units})\s*$"
