"""Collective-communication and pipeline terms for multi-device systems, as pure numpy functions.

Every function takes scalars or numpy arrays (broadcast together) and returns seconds (float64
arrays; a 0-d array for scalar input). Units: ``nbytes`` in bytes (the message: the full tensor
being reduced / gathered, or what one device sends in an all-to-all), ``bw`` in bytes per second
per link and per direction (achieved, i.e. ``Interconnect.bytes_per_s``), ``latency`` in seconds
per message hop (``Interconnect.latency_s``), ``n`` devices. ``n = 1`` costs 0.

Formulas (alpha-beta model: a step moving ``b`` bytes over one link costs ``latency + b / bw``):

- ring all-reduce = reduce-scatter + all-gather, each ``n - 1`` steps of ``nbytes / n``:
  ``2 (n-1)/n * nbytes / bw + 2 (n-1) * latency`` (Patarasuk & Yuan, "Bandwidth optimal all-reduce
  algorithms for clusters of workstations", JPDC 2009; the factor 2(n-1)/n is NCCL's "bus
  bandwidth" correction in nccl-tests' PERFORMANCE.md). A ``switch`` topology (one port per device)
  runs the same ring through the switch (NCCL's ring algorithm), so it costs the same.
- fully connected all-reduce: every device exchanges its ``nbytes / n`` shards with all ``n - 1``
  peers at once over separate links (direct reduce-scatter, then direct all-gather):
  ``2 * nbytes / n / bw + 2 * latency``.
- all-gather / reduce-scatter: half of the all-reduce (one phase) in each topology.
- all-to-all (each device sends ``nbytes`` in total, ``nbytes / n`` to every device incl. itself):
  switch: ``n - 1`` pairwise steps through one port, ``(n-1)/n * nbytes / bw + (n-1) * latency``;
  fully connected: all peers at once, ``nbytes / n / bw + latency``; ring (unidirectional,
  messages forwarded hop by hop): a link carries the shards for distances 1..n-1,
  ``nbytes / n * n(n-1)/2 / bw = (n-1)/2 * nbytes / bw`` plus ``(n-1) * latency``.
- point-to-point (pipeline stage boundary): ``nbytes / bw + latency``.
- pipeline (GPipe-style fill/drain, Huang et al. 2019): ``p`` stages, ``m`` micro-batches, the
  slowest stage taking ``t_stage`` per micro-batch: ``(m + p - 1) * t_stage``; the bubble is
  ``(p - 1) * t_stage`` of it (fraction ``(p-1)/(m+p-1)``).
"""

from __future__ import annotations

import numpy as np

__all__ = ["allreduce_s", "allgather_s", "reduce_scatter_s", "all_to_all_s", "p2p_s", "pipeline_s",
           "bubble_fraction", "TOPOLOGIES"]

TOPOLOGIES = ("ring", "fully_connected", "switch")


def _arr(*xs):
    return [np.asarray(x, dtype=np.float64) for x in xs]


def _check_topology(topology: str) -> None:
    if topology not in TOPOLOGIES:
        raise ValueError(f"topology {topology!r} must be one of {', '.join(TOPOLOGIES)}")


def _one_phase(nbytes, n, bw, latency, topology: str) -> np.ndarray:
    """Reduce-scatter or all-gather of an ``nbytes`` tensor over ``n`` devices (seconds)."""
    _check_topology(topology)
    b, n, bw, lat = _arr(nbytes, n, bw, latency)
    if topology == "fully_connected":
        t = b / n / bw + lat
    else:  # ring, or the ring algorithm through a switch
        t = (n - 1) / n * b / bw + (n - 1) * lat
    return np.where(n > 1, t, 0.0)


def allreduce_s(nbytes, n, bw, latency, topology: str = "ring") -> np.ndarray:
    """All-reduce of an ``nbytes`` tensor over ``n`` devices: reduce-scatter + all-gather (seconds)."""
    return 2.0 * _one_phase(nbytes, n, bw, latency, topology)


def allgather_s(nbytes, n, bw, latency, topology: str = "ring") -> np.ndarray:
    """All-gather producing an ``nbytes`` tensor on every device from ``nbytes / n`` shards (seconds)."""
    return _one_phase(nbytes, n, bw, latency, topology)


def reduce_scatter_s(nbytes, n, bw, latency, topology: str = "ring") -> np.ndarray:
    """Reduce-scatter of an ``nbytes`` tensor into ``nbytes / n`` shards (seconds)."""
    return _one_phase(nbytes, n, bw, latency, topology)


def all_to_all_s(nbytes, n, bw, latency, topology: str = "switch") -> np.ndarray:
    """All-to-all where each device sends ``nbytes`` in total, ``nbytes / n`` to each device (seconds)."""
    _check_topology(topology)
    b, n, bw, lat = _arr(nbytes, n, bw, latency)
    if topology == "fully_connected":
        t = b / n / bw + lat
    elif topology == "switch":
        t = (n - 1) / n * b / bw + (n - 1) * lat
    else:
        t = (n - 1) / 2.0 * b / bw + (n - 1) * lat
    return np.where(n > 1, t, 0.0)


def p2p_s(nbytes, bw, latency) -> np.ndarray:
    """One point-to-point message of ``nbytes`` over one link (seconds)."""
    b, bw, lat = _arr(nbytes, bw, latency)
    return np.where(b > 0, b / bw + lat, 0.0)


def pipeline_s(t_stage, stages, micro_batches) -> np.ndarray:
    """Time of ``micro_batches`` through ``stages`` pipeline stages whose slowest stage takes
    ``t_stage`` seconds per micro-batch: ``(m + p - 1) * t_stage``."""
    t, p, m = _arr(t_stage, stages, micro_batches)
    return (m + p - 1.0) * t


def bubble_fraction(stages, micro_batches) -> np.ndarray:
    """Idle fraction of a GPipe-style pipeline: ``(p - 1) / (m + p - 1)``."""
    p, m = _arr(stages, micro_batches)
    return (p - 1.0) / (m + p - 1.0)
