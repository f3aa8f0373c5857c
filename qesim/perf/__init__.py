"""Analytical performance model: tiling planner, MPE/SFU/memory costs, graph -> per-op table."""
