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
    attention_fused: bool = Field(
        True, description="attention runs as one fused kernel (FlashAttention-style: scores stay on chip); False: "
        "QK^T, softmax and PV run as separate ops whose score matrix goes through off-chip memory")


# ---- fidelity terms (qesim.perf.terms; issue 16). Every default is neutral: today's numbers. ----
#: op classes that carry their own fixed cost and achieved efficiencies (qesim.perf.terms.op_class)
OP_CLASSES = ("linear", "attention", "softmax", "norm", "elementwise", "embedding")


class OpClassTerms(_Strict):
    """Fixed cost and achieved efficiencies of one op class. Defaults are neutral (no cost, peak rates).

    One call of an op costs ``max(floor, fixed + issue + work)`` where ``work`` is the pipelined
    memory/compute time of the schedule with the efficiencies below applied (qesim.perf.terms)."""

    fixed_us: float = Field(0.0, ge=0, description="fixed time added to every call (microseconds): GPU kernel "
                            "launch, prologue and tail; 0 = none")
    fixed_cycles: float = Field(0.0, ge=0, description="fixed cycles added to every call (clock cycles): NPU "
                                "instruction issue / dispatch of the op; 0 = none")
    issue_cycles_per_step: float = Field(0.0, ge=0, description="instruction-issue cycles per tile step (clock "
                                         "cycles), serial with the step pipeline (NPU); 0 = none")
    floor_us: float = Field(0.0, ge=0, description="minimum time of one call (microseconds): host dispatch and "
                            "synchronisation that the op's own work hides once it is long enough; 0 = none")
    compute_efficiency: float = Field(1.0, gt=0, le=1, description="achieved fraction of the MAC (or SFU) peak "
                                      "at large shapes (dimensionless); 1 = datasheet peak")
    k_half: float = Field(0.0, ge=0, description="small-dimension roll-off (elements of the reduction length K): "
                          "compute efficiency is multiplied by K / (K + k_half) (per-tile pipeline fill and "
                          "drain); 0 = none")
    memory_efficiency: Optional[float] = Field(None, gt=0, le=1, description="achieved fraction of peak off-chip "
                                               "bandwidth for this op class (dimensionless); None = the memory's "
                                               "own efficiency")


class WaveTile(_Strict):
    """Output tile one core computes at a time: an (M, N) output is cut into ceil(M/m)*ceil(N/n) tiles dealt
    to ``mpe.cores`` cores in waves; the last, partial wave idles cores (wave quantisation)."""

    m: int = Field(ge=1, description="tile rows (output tokens)")
    n: int = Field(ge=1, description="tile columns (output features)")


class DequantFormat(_Strict):
    """Cost of turning stored weights of ``w_bits`` into the MPE's input precision."""

    w_bits: int = Field(ge=1, le=16, description="stored weight bits this entry applies to")
    ops_per_weight: float = Field(ge=0, description="vector-unit operations per weight element (unpack, "
                                  "convert, subtract zero, multiply scale)")
    ops_per_group: float = Field(0.0, ge=0, description="vector-unit operations per group of a group-wise "
                                 "format (load/convert the scale and zero-point)")


class Dequant(_Strict):
    """Dequantization of weight-only formats (weights stored below the MPE's input precision)."""

    unit: Literal["none", "sfu", "mpe"] = Field(
        "none", description="where it runs: 'none' = in the load path at no cycle cost (FlightLLM MMU); 'sfu' = "
        "on the vector unit (GPU CUDA cores), overlapped with the MPE if policy.sfu_overlaps_mpe; 'mpe' = "
        "serial on the MPE's issue slots, at sfu.lanes operations per cycle")
    formats: list[DequantFormat] = Field(default_factory=list, description="cost per stored weight width; a width "
                                         "without an entry dequantizes for free")

    def format(self, w_bits: int) -> Optional[DequantFormat]:
        """The entry for ``w_bits`` (exact match), else None."""
        return next((f for f in self.formats if f.w_bits == w_bits), None)


class Terms(_Strict):
    """Fidelity terms applied by the cost model (qesim.perf.terms). All neutral by default."""

    linear: OpClassTerms = OpClassTerms()
    attention: OpClassTerms = OpClassTerms()
    softmax: OpClassTerms = OpClassTerms()
    norm: OpClassTerms = OpClassTerms()
    elementwise: OpClassTerms = OpClassTerms()
    embedding: OpClassTerms = OpClassTerms()
    wave_tile: Optional[WaveTile] = Field(None, description="wave quantisation over mpe.cores for MPE ops; None = "
                                          "none")
    dequant: Dequant = Dequant()
    correction_factor: float = Field(1.0, gt=0, description="every instruction time (compute, loads and stores) "
                                     "is divided by this (dimensionless; the FlightLLM artifact's profiler uses "
                                     "3.2); 1 = none")

    def op_class(self, name: str) -> OpClassTerms:
        return getattr(self, name)


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
    terms: Terms = Field(default_factory=Terms, description="fidelity terms: fixed costs, achieved efficiencies, "
                         "dequantization (neutral by default)")
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
