"""Strict scalar types shared by every pydantic input schema (hardware configs, their energy /
area / cost sections, layer graphs).

Booleans, quoted numbers and NaN/Infinity are refused where a number is meant (the models run in
pydantic's strict mode with ``allow_inf_nan=False``); numpy and torch scalars (sweeps, exported
graphs) become Python numbers first, and a whole float (``2048.0``) is accepted for an int.
Unit-bearing fields (:func:`quantity`) also accept a string with an explicit unit
(:mod:`qesim.hw.units`: ``"4 MiB"``, ``"2039 GB/s"``).
"""

from __future__ import annotations

import math
from typing import Annotated, Any

from pydantic import BeforeValidator, Field


def plain(v: Any) -> Any:
    """numpy / torch scalars -> Python numbers (then validated strictly); anything else unchanged."""
    if type(v).__module__.split(".")[0] in ("numpy", "torch") and hasattr(v, "item"):
        try:
            v = v.item()
        except (TypeError, ValueError, RuntimeError):  # not a scalar: left to the strict check
            return v
    return v


def int_like(v: Any) -> Any:
    """:func:`plain`, and a finite whole float -> int."""
    v = plain(v)
    if isinstance(v, float) and math.isfinite(v) and v.is_integer():
        return int(v)
    return v


def quantity(kind: str, integer: bool) -> BeforeValidator:
    """Validator of a unit-bearing number: a plain number in the field's unit, or a string with
    an explicit unit of ``kind`` (``bytes``, ``GiB``, ``GB/s``, ``MHz``), see
    :func:`qesim.hw.units.parse_quantity`."""
    from qesim.hw.units import parse_quantity

    def conv(v: Any) -> Any:
        v = parse_quantity(plain(v), kind, integer)
        return int_like(v) if integer else v
    return BeforeValidator(conv)


#: strict scalars: booleans, quoted numbers and NaN/Infinity are refused where a number is meant
Int = Annotated[int, BeforeValidator(int_like)]
Num = Annotated[float, BeforeValidator(plain)]
Count = Annotated[int, BeforeValidator(int_like), Field(ge=0)]
Bytes = Annotated[int, quantity("bytes", True)]
GiB = Annotated[float, quantity("GiB", False)]
GBps = Annotated[float, quantity("GB/s", False)]
MHz = Annotated[float, quantity("MHz", False)]
