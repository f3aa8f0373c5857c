"""Plug-in quantizers: installed packages add methods through the entry-point group
``qesim.quantizers`` -- no change to qesim, no monkeypatching.

A package declares, e.g. in its ``pyproject.toml``::

    [project.entry-points."qesim.quantizers"]
    myq = "mypkg.quant:MYQ"

where ``MYQ`` is a :class:`Quantizer` (or any object with the same attributes)::

    from qesim.quant.plugins import Quantizer

    def quantize_block(ctx):        # ctx: qesim.quant.methods.BlockContext (one block's FP linears,
        ...                         # their calibration inputs, ctx.setting); import torch in here
        return {name: module}       # replacement modules, e.g. qesim.quant.methods.make_qlinear(ctx, name)

    MYQ = Quantizer(name="myq", quantize_block=quantize_block, adapters={"shared_rank": 16, "router": False})

Then ``qesim accuracy --methods myq`` (or ``mypkg:myq``: distribution name, colon, entry-point
name), ``qesim quantize --method myq --export g.json`` and ``qesim estimate --method myq`` work.

``adapters`` declares the deployed cost structure that the graph builder attaches to every
quantized linear: ``None`` / ``"none"`` (a plain quantized linear, as RTN/AWQ/GPTQ), ``"lowrank"``
(one shared low-rank adapter of the total rank, as LQER/ASER), ``"qe"`` (shared + routed experts +
router, as QE), or a mapping of :class:`qesim.graph.ir.LowRankAdapters` fields. An exported graph
records the adapters the quantized modules really carry (``export_graph`` reads them), whatever is
declared. ``needs_calls``: the method wants the block's sub-module inputs (as AWQ does).

This module imports no torch: the graph side (``estimate``) reads only ``adapters``; a plug-in
should import torch inside ``quantize_block`` so that it loads without the ``[quant]`` extra.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Callable, Mapping, Optional, Union

from qesim.errors import InputError

GROUP = "qesim.quantizers"
STRUCTURES = ("none", "lowrank", "qe")


@dataclass(frozen=True)
class Quantizer:
    """A plug-in quantization method (see the module docstring)."""

    name: str
    quantize_block: Callable[[Any], dict]
    adapters: Union[None, str, Mapping[str, Any]] = None
    needs_calls: bool = False
    description: str = ""

    def graph_adapters(self, defaults=None):
        """The :class:`~qesim.graph.ir.LowRankAdapters` the graph attaches (None = no adapter)."""
        from pydantic import ValidationError

        from qesim.graph.ir import LowRankAdapters
        from qesim.graph.settings import AdapterDefaults, method_adapters

        a = self.adapters
        if a is None or a == "none":
            return None
        if isinstance(a, str):
            if a not in STRUCTURES:
                raise InputError(f"plug-in quantizer {self.name!r}: adapters {a!r} is not one of "
                                 f"{', '.join(STRUCTURES)} or a mapping of LowRankAdapters fields")
            return method_adapters("lqer" if a == "lowrank" else "qe", defaults or AdapterDefaults())
        try:
            return LowRankAdapters.model_validate(dict(a))
        except (ValidationError, TypeError, ValueError) as e:
            raise InputError(f"plug-in quantizer {self.name!r}: adapters {a!r}: {e}") from None


def _coerce(obj: Any, name: str) -> Quantizer:
    if isinstance(obj, Quantizer):
        return obj
    fn = getattr(obj, "quantize_block", None)
    if not callable(fn):
        raise InputError(f"plug-in quantizer {name!r}: the entry point's object has no quantize_block(ctx)")
    return Quantizer(name=str(getattr(obj, "name", name)), quantize_block=fn, adapters=getattr(obj, "adapters", None),
                     needs_calls=bool(getattr(obj, "needs_calls", False)),
                     description=str(getattr(obj, "description", "")))


def _entry_points() -> list:
    from importlib.metadata import entry_points

    return list(entry_points(group=GROUP))


def names() -> list[str]:
    """Installed plug-in names (``name`` and ``dist:name`` for each), without loading them."""
    out = []
    for ep in _entry_points():
        dist = getattr(getattr(ep, "dist", None), "name", None)
        out.append(ep.name)
        if dist:
            out.append(f"{dist}:{ep.name}")
    return out


@lru_cache(maxsize=64)
def _load(key: str) -> Optional[Quantizer]:
    matches = []
    for ep in _entry_points():
        dist = getattr(getattr(ep, "dist", None), "name", None)
        if key in (ep.name.lower(), f"{dist}:{ep.name}".lower() if dist else None):
            matches.append(ep)
    if not matches:
        return None
    if len({(getattr(getattr(e, "dist", None), "name", None), e.value) for e in matches}) > 1:
        raise InputError(f"plug-in quantizer {key!r} is provided by several packages; name it as dist:name "
                         f"({', '.join(n for n in names() if n.endswith(':' + key))})")
    ep = matches[0]
    try:
        obj = ep.load()
    except Exception as e:  # noqa: BLE001 - a broken plug-in is the user's input problem, one line
        raise InputError(f"plug-in quantizer {key!r} ({ep.value}) failed to load: {type(e).__name__}: {e}") from None
    return _coerce(obj, ep.name)


def find(name: str) -> Optional[Quantizer]:
    """The installed plug-in called ``name`` (``myq`` or ``mypkg:myq``), or None."""
    return _load(str(name).strip().lower())


def get(name: str) -> Quantizer:
    """Like :func:`find`, but an unknown name is an :class:`InputError` listing the installed ones."""
    q = find(name)
    if q is None:
        raise InputError(f"unknown quantizer {name!r}; installed plug-ins: {', '.join(names()) or 'none'}")
    return q


def clear_cache() -> None:
    """Forget loaded plug-ins (after installing one in a running process, e.g. in tests)."""
    _load.cache_clear()
