"""Discrete-event (simpy) cycle model replaying the analytical schedule.

- :func:`qesim.sim.engine.simulate_graph` -- graph + hw -> ``GraphEstimate`` (cycle engine);
- :func:`qesim.sim.engine.simulate_schedule` -- a ``GraphSchedule`` -> per-op start/end cycles,
  busy cycles per resource, events (``record=True`` keeps every busy interval);
- :mod:`qesim.sim.trace` -- Chrome trace JSON (Perfetto) and Gantt PNG of a run.

Importing this package does not import simpy; the submodules do.
"""
