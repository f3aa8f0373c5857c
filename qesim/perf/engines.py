"""The engines that cost a graph, in one registry used by every caller (CLI, API, reports).

An engine is ``fn(graph, hw, **options) -> GraphEstimate``. ``analytical`` is the closed-form
pipeline model (:func:`qesim.perf.estimate.estimate_graph`); ``cycle`` is the simpy cycle model
(:func:`qesim.sim.engine.simulate_graph`), which replays the analytical model's schedule. Engines
are named by ``module:function`` and imported on first use, so ``qesim.perf`` does not import the
simulator. A new engine is one line in :data:`ENGINES`.
"""

from __future__ import annotations

import importlib
from typing import Callable

from qesim.errors import InputError

ENGINES: dict[str, str] = {
    "analytical": "qesim.perf.estimate:estimate_graph",
    "cycle": "qesim.sim.engine:simulate_graph",
}


def engine_names() -> list[str]:
    return list(ENGINES)


def get_engine(name: str) -> Callable:
    """The estimate function of engine ``name``; an unknown name is an :class:`InputError`."""
    target = ENGINES.get(name)
    if target is None:
        raise InputError(f"engine must be one of {', '.join(ENGINES)} (got {name!r})")
    mod, fn = target.split(":")
    return getattr(importlib.import_module(mod), fn)


def run_engine(name: str, graph, hw, **options):
    """Estimate ``graph`` on ``hw`` with engine ``name``."""
    return get_engine(name)(graph, hw, **options)
