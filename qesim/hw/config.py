"""Hardware configuration schema (pydantic) and loader for ``hw_configs/*.yaml``.

Units are in the field names: ``*_mhz`` (MHz), ``*_gbps`` (GB/s = 1e9 bytes/s), ``*_bytes``,
``*_gib`` (2^30 bytes), ``macs_per_cycle`` (multiply-accumulates per clock cycle, whole chip
unless stated), ``cycles_per_element``.

One schema serves every accelerator: a FlightLLM-style NPU (MPE + SFU + HBM/DDR + buffers),
the idealised NPU that the QE paper's Table 8 implies, and a GPU roofline reference.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Literal, Optional

from pydantic import BaseModel, ConfigDict, Field, model_validator

Memory = Literal["hbm", "ddr"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class MacRate(_Strict):
    """Whole-chip MAC/cycle for operands up to ``w_bits`` x ``a_bits`` (dense)."""

    w_bits: int = Field(ge=1, le=32)
    a_bits: int = Field(ge=1, le=32)
    macs_per_cycle: float = Field(gt=0)


class ArrayShape(_Strict):
    """Spatial parallelism of the engine: a tile is padded up to multiples of (m, k, n)."""

    m: int = Field(1, ge=1)
    k: int = Field(1, ge=1)
    n: int = Field(1, ge=1)


class Sparsity(_Strict):
    """N:M structured weight sparsity (FlightLLM: M = 16, N in {0, 2, 4, 8, 16})."""

    m: int = Field(16, ge=1)
    supported_n: list[int] = Field(default_factory=lambda: [16])
    index_bits_per_kept_weight: float = Field(
        0.0, ge=0, description="sparse-index metadata stored per kept weight (bits)")

    per_block_n: bool = Field(
        False, description="each block picks its own N (block-wise + N:M, FlightLLM): any average "
        "density is reachable; False: one N:M pattern for the whole matrix")

    def kept_fraction(self, density: float) -> float:
        """Fraction of weights stored and multiplied for a requested density (0 < density <= 1).

        With ``per_block_n`` the blocks mix N values so the average equals the density (rounded
        up to 1/m); otherwise the smallest supported N/M >= density."""
        if density >= 1.0:
            return 1.0
        if self.per_block_n:
            return min(1.0, math.ceil(density * self.m - 1e-9) / self.m)
        fr = sorted(n / self.m for n in self.supported_n if n / self.m >= density - 1e-9)
        return fr[0] if fr else 1.0


class MPE(_Strict):
    """Matrix processing engine(s). Rates are for the whole chip (all cores together)."""

    cores: int = Field(1, ge=1)
    mm: list[MacRate] = Field(min_length=1, description="matrix-matrix mode MAC rates")
    mv: list[MacRate] = Field(min_length=1, description="matrix-vector mode MAC rates")
    mm_array: ArrayShape = ArrayShape()
    mv_array: ArrayShape = ArrayShape()
    mv_max_rows: int = Field(1, ge=1, description="M at or below which MV mode is used")
    sparsity: Sparsity = Sparsity()

    def rate(self, mode: Literal["mm", "mv"], w_bits: int, a_bits: int) -> float:
        """MAC/cycle for a ``w_bits`` x ``a_bits`` product: the fastest entry whose operand
        widths cover both; falls back to the widest entry (slowest) if none covers them."""
        table = self.mm if mode == "mm" else self.mv
        ok = [r.macs_per_cycle for r in table if r.w_bits >= w_bits and r.a_bits >= a_bits]
        if ok:
            return max(ok)
        return min(r.macs_per_cycle for r in table)


class SFU(_Strict):
    """Special function unit: ``lanes`` elements per cycle per pass at 1 cycle/element."""

    lanes: int = Field(ge=1, description="elements processed in parallel (whole chip)")
    exp_cycles: float = Field(1.0, gt=0, description="cycles per element for exp")
    reciprocal_cycles: float = Field(1.0, gt=0, description="cycles per reciprocal")
    rsqrt_cycles: float = Field(1.0, gt=0, description="cycles per rsqrt")
    reduce_cycles: float = Field(1.0, gt=0, description="cycles per element of a reduction pass")
    elementwise_cycles: float = Field(1.0, gt=0, description="cycles per element of mul/add/act")


class MemoryChannel(_Strict):
    bandwidth_gbps: float = Field(gt=0, description="peak bandwidth, GB/s (1e9 B/s)")
    efficiency: float = Field(1.0, gt=0, le=1, description="achieved fraction of peak")
    capacity_gib: float = Field(gt=0)


class Buffers(_Strict):
    """On-chip buffers in bytes. Double buffering halves what one tile may use."""

    weight_bytes: int = Field(ge=1)
    act_bytes: int = Field(ge=1)
    out_bytes: int = Field(ge=1)
    adapter_bytes: int = Field(0, ge=0, description="on-chip store for resident adapters/router")


class Placement(_Strict):
    """Which off-chip memory holds each tensor class."""

    weights: Memory = "hbm"
    activations: Memory = "hbm"
    kv_cache: Memory = "hbm"
    adapters: Memory = "hbm"
    embeddings: Memory = "hbm"


class StagePolicy(_Strict):
    activations_offchip: bool = Field(
        True, description="op inputs/outputs go through off-chip memory (False: stay on chip)")
    compute_hidden: bool = Field(
        False, description="assume MPE compute is fully hidden behind memory (idealised MPE)")


class Policy(_Strict):
    prefill: StagePolicy = StagePolicy()
    decode: StagePolicy = StagePolicy(activations_offchip=False)
    adapters_resident: bool = Field(
        False, description="adapter + router weights preloaded on chip (no per-call traffic)")
    double_buffering: bool = True
    count_group_metadata: bool = Field(
        True, description="charge group-wise weight scales/zeros as off-chip bytes")
    count_channel_scales: bool = Field(
        True, description="charge per-output-channel weight scales and per-token activation scales")
    scale_bits: int = Field(16, ge=1, le=32, description="bits of one scale or zero-point")
    sfu_overlaps_mpe: bool = Field(
        True, description="SFU work of an op runs concurrently with its MPE/memory pipeline")
    sfu_fusion: bool = Field(
        False, description="an SFU op that consumes the output of the MPE op before it (same rows, width and "
        "repeat) streams through the SFU inside that op's pipeline instead of running as its own op "
        "(qesim.perf.fusion)")
    attention_bits: int = Field(16, ge=1, le=32, description="precision of QK^T/PV operands")
    act_quant_unit: Literal["sfu", "mmu"] = Field(
        "sfu", description="where per-token activation quantization (absmax + scale) runs: on the SFU "
        "(costs SFU cycles) or in dedicated quantization units on the memory path (FlightLLM's MMU: "
        "no extra cycles; its bytes are still counted)")


class HardwareConfig(_Strict):
    name: str
    description: str = ""
    frequency_mhz: float = Field(gt=0)
    mpe: MPE
    sfu: SFU
    hbm: MemoryChannel
    ddr: Optional[MemoryChannel] = None
    buffers: Buffers
    placement: Placement = Placement()
    policy: Policy = Policy()
    sources: dict[str, str] = Field(default_factory=dict, description="free-form provenance notes")

    @model_validator(mode="after")
    def _check(self) -> "HardwareConfig":
        for field in ("weights", "activations", "kv_cache", "adapters", "embeddings"):
            if getattr(self.placement, field) == "ddr" and self.ddr is None:
                raise ValueError(f"placement.{field} is 'ddr' but the config has no ddr memory")
        return self

    # ---- derived quantities (units in names) --------------------------------
    @property
    def frequency_hz(self) -> float:
        return self.frequency_mhz * 1e6

    def memory(self, which: Memory) -> MemoryChannel:
        m = self.hbm if which == "hbm" else self.ddr
        assert m is not None
        return m

    def bytes_per_cycle(self, which: Memory) -> float:
        """Achieved off-chip bytes per clock cycle of ``which`` memory."""
        m = self.memory(which)
        return m.bandwidth_gbps * 1e9 * m.efficiency / self.frequency_hz

    def stage_policy(self, stage: str) -> StagePolicy:
        return self.policy.prefill if stage == "prefill" else self.policy.decode

    def with_updates(self, updates: dict) -> "HardwareConfig":
        """A copy with dotted-path fields replaced (``{'hbm.bandwidth_gbps': 819.2}``), validated."""
        data = self.model_dump()
        for path, value in updates.items():
            cur = data
            keys = path.split(".")
            for k in keys[:-1]:
                if isinstance(cur, list):
                    k = int(k)
                elif k not in cur:
                    raise KeyError(path)
                cur = cur[k]
            last = keys[-1]
            if isinstance(cur, list):
                last = int(last)
            elif last not in cur:
                raise KeyError(path)
            cur[last] = value
        return HardwareConfig.model_validate(data)
