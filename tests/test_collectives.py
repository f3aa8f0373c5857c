"""Collective formulas (qesim.perf.terms.collectives), checked against hand arithmetic."""

import numpy as np
import pytest

from qesim.perf.terms.collectives import (all_to_all_s, allgather_s, allreduce_s, bubble_fraction, p2p_s,
                                          pipeline_s, reduce_scatter_s)

MB = 1e6


def test_ring_allreduce_by_hand():
    # 4 devices, 8 MB, 10 GB/s, 2 us: 2*3/4 * 8e6/1e10 = 1.2 ms, + 6 * 2 us = 12 us
    assert allreduce_s(8 * MB, 4, 10e9, 2e-6) == pytest.approx(1.2e-3 + 12e-6)
    # switch runs the ring algorithm: same time
    assert allreduce_s(8 * MB, 4, 10e9, 2e-6, "switch") == pytest.approx(1.212e-3)
    # fully connected: 2 * 8e6/4 / 1e10 + 2 * 2 us = 0.4 ms + 4 us
    assert allreduce_s(8 * MB, 4, 10e9, 2e-6, "fully_connected") == pytest.approx(0.404e-3)


def test_one_device_costs_nothing_and_arrays_broadcast():
    n = np.array([1, 2, 8])
    t = allreduce_s(1 * MB, n, 1e9, 1e-6)
    assert t[0] == 0.0
    assert t[1] == pytest.approx(2 * 0.5 * 1e-3 + 2e-6) and t[2] == pytest.approx(2 * 7 / 8 * 1e-3 + 14e-6)
    assert np.all(np.diff(t) > 0)
    assert allgather_s(1 * MB, 2, 1e9, 0) == pytest.approx(0.5e-3) == reduce_scatter_s(1 * MB, 2, 1e9, 0)


def test_all_to_all_by_hand():
    # 4 devices, each sends 4 MB (1 MB per device), 1 GB/s, 1 us
    assert all_to_all_s(4 * MB, 4, 1e9, 1e-6, "switch") == pytest.approx(3e-3 + 3e-6)
    assert all_to_all_s(4 * MB, 4, 1e9, 1e-6, "fully_connected") == pytest.approx(1e-3 + 1e-6)
    assert all_to_all_s(4 * MB, 4, 1e9, 1e-6, "ring") == pytest.approx(1.5 * 4e-3 + 3e-6)
    with pytest.raises(ValueError):
        all_to_all_s(1, 2, 1, 0, "torus")


def test_pipeline_and_bubble():
    # 4 stages, 8 micro-batches, 1 ms per stage: (8 + 3) ms, bubble 3/11
    assert pipeline_s(1e-3, 4, 8) == pytest.approx(11e-3)
    assert bubble_fraction(4, 8) == pytest.approx(3 / 11)
    assert bubble_fraction(1, 5) == 0.0
    assert p2p_s(1 * MB, 1e9, 1e-6) == pytest.approx(1.001e-3) and p2p_s(0, 1e9, 1e-6) == 0.0


def test_bandwidth_and_latency_monotone():
    b = np.geomspace(1e3, 1e9, 7)
    for topo in ("ring", "fully_connected", "switch"):
        slow, fast = allreduce_s(b, 4, 1e9, 5e-6, topo), allreduce_s(b, 4, 1e11, 5e-6, topo)
        assert np.all(fast < slow) and np.all(np.diff(slow) > 0)
        assert np.all(allreduce_s(b, 4, 1e9, 1e-5, topo) > slow)
