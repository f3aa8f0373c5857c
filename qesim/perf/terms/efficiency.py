"""Achieved compute and memory efficiency (dimensionless fractions in (0, 1]).

An MPE op's compute cycles are divided by ``compute_efficiency(...)``; its off-chip traffic moves
at ``memory_bytes_per_cycle(...)``.
"""

from __future__ import annotations

import numpy as np


def wave_efficiency(M, N, tile_m, tile_n, cores):
    """Busy fraction of ``cores`` when an M x N output is cut into ceil(M/tile_m) * ceil(N/tile_n)
    tiles dealt to the cores in waves: tiles / (ceil(tiles / cores) * cores). Tile padding inside a
    tile is not counted here (the planner's array padding does that)."""
    M, N = np.asarray(M, dtype=float), np.asarray(N, dtype=float)
    tiles = np.ceil(M / tile_m) * np.ceil(N / tile_n)
    cores = np.asarray(cores, dtype=float)
    return tiles / (np.ceil(tiles / cores) * cores)


def k_rolloff(K, k_half):
    """K / (K + k_half): a tile's pipeline spends ~k_half elements of the reduction filling and
    draining; k_half = 0 returns 1."""
    K = np.asarray(K, dtype=float)
    return K / (K + np.asarray(k_half, dtype=float))


def compute_efficiency(M, N, K, *, peak_fraction=1.0, k_half=0.0, wave_tile=None, cores=1):
    """Achieved fraction of the MAC peak of an M x K x N product: ``peak_fraction`` times the
    small-K roll-off times the wave efficiency over ``cores`` (``wave_tile`` = (m, n) or None for
    none). All neutral: 1."""
    eff = np.asarray(peak_fraction, dtype=float) * k_rolloff(K, k_half)
    if wave_tile is not None:
        eff = eff * wave_efficiency(M, N, wave_tile[0], wave_tile[1], cores)
    return eff


def memory_bytes_per_cycle(bandwidth_gbps, frequency_hz, efficiency):
    """Achieved off-chip bytes per clock cycle: bandwidth (GB/s, 1e9 B/s) x efficiency / clock (Hz)
    (:func:`qesim.hw.config.achieved_bytes_per_cycle`, over arrays)."""
    from qesim.hw.config import achieved_bytes_per_cycle

    return achieved_bytes_per_cycle(np.asarray(bandwidth_gbps, dtype=float), np.asarray(efficiency, dtype=float),
                                    np.asarray(frequency_hz, dtype=float))
