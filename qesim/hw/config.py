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

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, model_validator

from qesim.hw.power_area import Area, Cost, Energy
# strict scalar types (booleans, quoted numbers, NaN/Inf refused; units accepted where a field has one)
from qesim.scalars import Bytes, GBps, GiB, Int, MHz, Num

Memory = Literal["hbm", "ddr"]

#: documented maxima (far above any real part; they keep every derived number finite and every
#: cost computation bounded). Units as in the field names.
MAX_FREQUENCY_MHZ = 1e6
MAX_BANDWIDTH_GBPS = 1e7
MAX_MACS_PER_CYCLE = 2.0**40
MAX_BUFFER_BYTES = 2**50
MAX_CAPACITY_GIB = 2.0**30
MAX_CYCLES_PER_ELEMENT = 1e6
MAX_LANES = 2**30
MAX_ARRAY_DIM = 2**20


def _unit(unit: str, kind: str | None = None) -> dict:
    """json_schema_extra of a field: its unit, and (``kind``) the unit strings it also accepts."""
    d: dict = {"unit": unit}
    if kind:
        d["x-accepts-units"] = kind
    return d


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)


class MacRate(_Strict):
    """Whole-chip MAC/cycle for operands up to ``w_bits`` x ``a_bits`` (dense)."""

    w_bits: Int = Field(ge=1, le=32, description="widest weight operand this rate covers", json_schema_extra=_unit("bit"))
    a_bits: Int = Field(ge=1, le=32, description="widest activation operand this rate covers",
                        json_schema_extra=_unit("bit"))
    macs_per_cycle: Num = Field(gt=0, le=MAX_MACS_PER_CYCLE, description="multiply-accumulates per clock cycle, whole chip",
                                json_schema_extra=_unit("MAC/cycle"))


class ArrayShape(_Strict):
    """Spatial parallelism of the engine: a tile is padded up to multiples of (m, k, n)."""

    m: Int = Field(1, ge=1, le=MAX_ARRAY_DIM, description="rows (tokens) processed in parallel",
                   json_schema_extra=_unit("elements"))
    k: Int = Field(1, ge=1, le=MAX_ARRAY_DIM, description="reduction (input-feature) parallelism",
                   json_schema_extra=_unit("elements"))
    n: Int = Field(1, ge=1, le=MAX_ARRAY_DIM, description="output-feature parallelism", json_schema_extra=_unit("elements"))


class Sparsity(_Strict):
    """N:M structured weight sparsity (FlightLLM: M = 16, N in {0, 2, 4, 8, 16})."""

    m: Int = Field(16, ge=1, le=1024, description="M of N:M: block length along the reduction dimension",
                   json_schema_extra=_unit("weights"))
    supported_n: list[Int] = Field(default_factory=lambda: [16], min_length=1,
                                   description="N values (kept weights per block of M) the engine supports, each 0..m",
                                   json_schema_extra=_unit("weights"))
    index_bits_per_kept_weight: Num = Field(
        0.0, ge=0, le=64, description="sparse-index metadata stored per kept weight (bits)",
        json_schema_extra=_unit("bit"))

    per_block_n: bool = Field(
        False, description="each block picks its own N (block-wise + N:M, FlightLLM): any average "
        "density is reachable; False: one N:M pattern for the whole matrix")

    @model_validator(mode="after")
    def _check(self) -> "Sparsity":
        bad = [n for n in self.supported_n if not 0 <= n <= self.m]
        if bad:
            raise ValueError(f"supported_n must lie in 0..m = 0..{self.m} (got {bad})")
        if not any(self.supported_n):
            raise ValueError("supported_n needs at least one N >= 1")
        return self

    def kept_fraction(self, density: float) -> float:
        """Fraction of weights stored and multiplied for a requested density (0 < density <= 1).

        With ``per_block_n`` the blocks mix N values so the average equals the density (rounded
        up to 1/m, and at least 1/m: a matrix keeps at least one weight per block); otherwise
        the smallest supported N/M >= density."""
        if density >= 1.0:
            return 1.0
        if self.per_block_n:
            return min(1.0, max(1, math.ceil(density * self.m - 1e-9)) / self.m)
        fr = sorted(n / self.m for n in self.supported_n if n and n / self.m >= density - 1e-9)
        return fr[0] if fr else 1.0


class MPE(_Strict):
    """Matrix processing engine(s). Rates are for the whole chip (all cores together)."""

    cores: Int = Field(1, ge=1, le=2**16, description="MPE cores (rates below are already summed over them)")
    mm: list[MacRate] = Field(min_length=1, description="matrix-matrix mode MAC rates")
    mv: list[MacRate] = Field(min_length=1, description="matrix-vector mode MAC rates")
    mm_array: ArrayShape = Field(ArrayShape(), description="MM-mode array shape (tile padding)")
    mv_array: ArrayShape = Field(ArrayShape(), description="MV-mode array shape (tile padding)")
    mv_max_rows: Int = Field(1, ge=1, le=2**31, description="M at or below which MV mode is used",
                             json_schema_extra=_unit("rows"))
    sparsity: Sparsity = Field(Sparsity(), description="N:M structured sparsity support")
    fallback: Optional[Literal["slowest"]] = Field(
        None, description="what a precision pair that no mm/mv entry covers runs at: null (default) = an error "
        "naming the pair and the entries; 'slowest' = the slowest entry of the mode (an explicit assumption)")

    def covering(self, mode: Literal["mm", "mv"], w_bits: int, a_bits: int) -> Optional[list[int]]:
        """Indices of the ``mode`` entries whose operand widths cover ``w_bits`` x ``a_bits``; None
        means ``fallback: slowest`` applies. No covering entry and no fallback is an error naming
        the pair and the entries that exist (the one rule, used by :meth:`rate` and the cost model's
        per-point rates)."""
        from qesim.errors import InputError

        table = self.mm if mode == "mm" else self.mv
        ok = [i for i, r in enumerate(table) if r.w_bits >= w_bits and r.a_bits >= a_bits]
        if ok:
            return ok
        if self.fallback == "slowest":
            return None
        have = ", ".join(f"W{r.w_bits}A{r.a_bits} ({r.macs_per_cycle:g} MAC/cycle)" for r in table)
        raise InputError(f"mpe.{mode} has no MAC-rate entry covering W{w_bits}A{a_bits} (entries: {have}); add a "
                         f"{{w_bits: {w_bits}, a_bits: {a_bits}, macs_per_cycle: ...}} entry, or set mpe.fallback: "
                         "slowest to run it at the slowest entry")

    def rate(self, mode: Literal["mm", "mv"], w_bits: int, a_bits: int) -> float:
        """MAC/cycle for a ``w_bits`` x ``a_bits`` product: the fastest entry whose operand
        widths cover both (see :meth:`covering`: no such entry is an error unless ``fallback``)."""
        table = self.mm if mode == "mm" else self.mv
        ok = self.covering(mode, w_bits, a_bits)
        if ok is None:
            return min(r.macs_per_cycle for r in table)
        return max(table[i].macs_per_cycle for i in ok)


def _cycles(desc: str):
    return Field(1.0, ge=1e-6, le=MAX_CYCLES_PER_ELEMENT, description=desc, json_schema_extra=_unit("cycles/element"))


class SFU(_Strict):
    """Special function unit: ``lanes`` elements per cycle per pass at 1 cycle/element."""

    lanes: Int = Field(ge=1, le=MAX_LANES, description="elements processed in parallel (whole chip)",
                       json_schema_extra=_unit("elements/cycle"))
    exp_cycles: Num = _cycles("cycles per element for exp")
    reciprocal_cycles: Num = _cycles("cycles per reciprocal")
    rsqrt_cycles: Num = _cycles("cycles per rsqrt")
    reduce_cycles: Num = _cycles("cycles per element of a reduction pass")
    elementwise_cycles: Num = _cycles("cycles per element of mul/add/act")


class MemoryChannel(_Strict):
    """One off-chip memory: peak bandwidth, achieved fraction and capacity."""

    bandwidth_gbps: GBps = Field(ge=1e-3, le=MAX_BANDWIDTH_GBPS, description="peak bandwidth, GB/s (1e9 B/s)",
                                 json_schema_extra=_unit("GB/s", "GB/s"))
    efficiency: Num = Field(1.0, ge=1e-3, le=1, description="achieved fraction of peak bandwidth",
                            json_schema_extra=_unit("fraction"))
    capacity_gib: GiB = Field(gt=0, le=MAX_CAPACITY_GIB, description="capacity, GiB (2^30 B)",
                              json_schema_extra=_unit("GiB", "GiB"))


class Buffers(_Strict):
    """On-chip buffers in bytes. Double buffering halves what one tile may use."""

    weight_bytes: Bytes = Field(ge=1, le=MAX_BUFFER_BYTES, description="weight (B-operand) buffer",
                                json_schema_extra=_unit("B", "bytes"))
    act_bytes: Bytes = Field(ge=1, le=MAX_BUFFER_BYTES, description="activation (A-operand) buffer",
                             json_schema_extra=_unit("B", "bytes"))
    out_bytes: Bytes = Field(ge=1, le=MAX_BUFFER_BYTES, description="output / accumulator buffer",
                             json_schema_extra=_unit("B", "bytes"))
    adapter_bytes: Bytes = Field(0, ge=0, le=MAX_BUFFER_BYTES, description="on-chip store for resident adapters/router",
                                 json_schema_extra=_unit("B", "bytes"))


class Placement(_Strict):
    """Which off-chip memory holds each tensor class."""

    weights: Memory = Field("hbm", description="memory holding the linear/expert weights")
    activations: Memory = Field("hbm", description="memory holding off-chip activations")
    kv_cache: Memory = Field("hbm", description="memory holding the KV cache")
    adapters: Memory = Field("hbm", description="memory holding low-rank adapters and routers")
    embeddings: Memory = Field("hbm", description="memory holding the embedding tables")


class StagePolicy(_Strict):
    """Modelling assumptions of one stage (prefill or decode)."""

    activations_offchip: bool = Field(
        True, description="op inputs/outputs go through off-chip memory (False: stay on chip)")
    compute_hidden: bool = Field(
        False, description="assume MPE compute is fully hidden behind memory (idealised MPE)")


class Policy(_Strict):
    """Modelling switches (what is charged, what overlaps)."""

    prefill: StagePolicy = Field(StagePolicy(), description="prefill-stage assumptions")
    decode: StagePolicy = Field(StagePolicy(activations_offchip=False), description="decode-stage assumptions")
    adapters_resident: bool = Field(
        False, description="adapter + router weights preloaded on chip (no per-call traffic)")
    double_buffering: bool = Field(True, description="tiles are double-buffered (each tile may use half a buffer)")
    count_group_metadata: bool = Field(
        True, description="charge group-wise weight scales/zeros as off-chip bytes")
    count_channel_scales: bool = Field(
        True, description="charge per-output-channel weight scales and per-token activation scales")
    scale_bits: Int = Field(16, ge=1, le=32, description="bits of one scale or zero-point", json_schema_extra=_unit("bit"))
    sfu_overlaps_mpe: bool = Field(
        True, description="SFU work of an op runs concurrently with its MPE/memory pipeline")
    sfu_fusion: bool = Field(
        False, description="an SFU op that consumes the output of the MPE op before it (same rows, width and "
        "repeat) streams through the SFU inside that op's pipeline instead of running as its own op "
        "(qesim.perf.fusion)")
    attention_bits: Int = Field(16, ge=1, le=32, description="precision of QK^T/PV operands",
                                json_schema_extra=_unit("bit"))
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

    fixed_us: Num = Field(0.0, json_schema_extra=_unit("us"), ge=0, description="fixed time added to every call (microseconds): GPU kernel "
                            "launch, prologue and tail; 0 = none")
    fixed_cycles: Num = Field(0.0, json_schema_extra=_unit("cycles"), ge=0, description="fixed cycles added to every call (clock cycles): NPU "
                                "instruction issue / dispatch of the op; 0 = none")
    issue_cycles_per_step: Num = Field(0.0, json_schema_extra=_unit("cycles/step"), ge=0, description="instruction-issue cycles per tile step (clock "
                                         "cycles), serial with the step pipeline (NPU); 0 = none")
    floor_us: Num = Field(0.0, json_schema_extra=_unit("us"), ge=0, description="minimum time of one call (microseconds): host dispatch and "
                            "synchronisation that the op's own work hides once it is long enough; 0 = none")
    compute_efficiency: Num = Field(1.0, json_schema_extra=_unit("fraction"), gt=0, le=1, description="achieved fraction of the MAC (or SFU) peak "
                                      "at large shapes (dimensionless); 1 = datasheet peak")
    k_half: Num = Field(0.0, json_schema_extra=_unit("elements"), ge=0, description="small-dimension roll-off (elements of the reduction length K): "
                          "compute efficiency is multiplied by K / (K + k_half) (per-tile pipeline fill and "
                          "drain); 0 = none")
    memory_efficiency: Optional[Num] = Field(None, json_schema_extra=_unit("fraction"), gt=0, le=1, description="achieved fraction of peak off-chip "
                                               "bandwidth for this op class (dimensionless); None = the memory's "
                                               "own efficiency")


class WaveTile(_Strict):
    """Output tile one core computes at a time: an (M, N) output is cut into ceil(M/m)*ceil(N/n) tiles dealt
    to ``mpe.cores`` cores in waves; the last, partial wave idles cores (wave quantisation)."""

    m: Int = Field(json_schema_extra=_unit("elements"), ge=1, description="tile rows (output tokens)")
    n: Int = Field(json_schema_extra=_unit("elements"), ge=1, description="tile columns (output features)")


class DequantFormat(_Strict):
    """Cost of turning stored weights of ``w_bits`` into the MPE's input precision."""

    w_bits: Int = Field(json_schema_extra=_unit("bit"), ge=1, le=16, description="stored weight bits this entry applies to")
    ops_per_weight: Num = Field(json_schema_extra=_unit("ops/weight"), ge=0, description="vector-unit operations per weight element (unpack, "
                                  "convert, subtract zero, multiply scale)")
    ops_per_group: Num = Field(0.0, json_schema_extra=_unit("ops/group"), ge=0, description="vector-unit operations per group of a group-wise "
                                 "format (load/convert the scale and zero-point)")


class Dequant(_Strict):
    """Dequantization of weight-only formats (weights stored below the MPE's input precision)."""

    unit: Literal["none", "sfu", "mpe"] = Field(
        "none", description="where it runs: 'none' = in the load path at no cycle cost (FlightLLM MMU); 'sfu' = "
        "on the vector unit (GPU CUDA cores), overlapped with the MPE if policy.sfu_overlaps_mpe; 'mpe' = "
        "serial on the MPE's issue slots, at sfu.lanes operations per cycle")
    formats: list[DequantFormat] = Field(default_factory=list, description="cost per stored weight width; a width "
                                         "without an entry dequantizes for free")
    pipelined: bool = Field(True, description="the weight-only kernel overlaps its weight loads with dequantization "
                            "and MACs (a software pipeline, e.g. Marlin's async copies); false: the same warps load, "
                            "then dequantize and multiply, so a dequantizing linear's memory and compute cycles add "
                            "(its steps are not double buffered)")

    def format(self, w_bits: int) -> Optional[DequantFormat]:
        """The entry for ``w_bits`` (exact match), else None."""
        return next((f for f in self.formats if f.w_bits == w_bits), None)


class Terms(_Strict):
    """Fidelity terms applied by the cost model (qesim.perf.terms). All neutral by default."""

    linear: OpClassTerms = Field(OpClassTerms(), description="terms of linear ops")
    attention: OpClassTerms = Field(OpClassTerms(), description="terms of attention ops")
    softmax: OpClassTerms = Field(OpClassTerms(), description="terms of softmax ops")
    norm: OpClassTerms = Field(OpClassTerms(), description="terms of norm ops")
    elementwise: OpClassTerms = Field(OpClassTerms(), description="terms of elementwise ops")
    embedding: OpClassTerms = Field(OpClassTerms(), description="terms of embedding ops")
    wave_tile: Optional[WaveTile] = Field(None, description="wave quantisation over mpe.cores for MPE ops; None = "
                                          "none")
    dequant: Dequant = Field(Dequant(), description="weight dequantization cost")
    correction_factor: Num = Field(1.0, json_schema_extra=_unit("factor"), ge=1e-6, le=1e6, description="every instruction time (compute, loads and stores) "
                                     "is divided by this (dimensionless; the FlightLLM artifact's profiler uses "
                                     "3.2); 1 = none")

    def op_class(self, name: str) -> OpClassTerms:
        return getattr(self, name)


def achieved_bytes_per_cycle(bandwidth_gbps, efficiency, frequency_hz):
    """Achieved bytes per clock cycle: peak GB/s (1e9 B/s) x efficiency / clock (Hz). The one copy
    of the rule; numbers or numpy arrays over design points."""
    return bandwidth_gbps * 1e9 * efficiency / frequency_hz


class Interconnect(_Strict):
    """Device-to-device links of a multi-device system (``qesim.perf.terms.collectives``).

    ``link_bandwidth_gbps`` is per link and per direction (GB/s = 1e9 B/s), ``link_latency_us`` the
    time of one message hop (microseconds). ``topology``: ``ring`` (each device linked to two
    neighbours), ``fully_connected`` (a direct link between every pair) or ``switch`` (one port per
    device into a non-blocking switch)."""

    topology: Literal["ring", "fully_connected", "switch"] = Field(
        "ring", description="ring (two neighbours per device), fully_connected (a link per pair) or switch "
        "(one port per device into a non-blocking switch)")
    link_bandwidth_gbps: GBps = Field(ge=1e-3, le=MAX_BANDWIDTH_GBPS, json_schema_extra=_unit("GB/s", "GB/s"),
                                      description="bandwidth of one link in one direction, GB/s (1e9 B/s)")
    link_latency_us: Num = Field(ge=0, le=1e6, json_schema_extra=_unit("us"),
                                 description="latency of one message hop, microseconds")
    efficiency: Num = Field(1.0, gt=0, le=1, json_schema_extra=_unit("fraction"),
                            description="achieved fraction of the link bandwidth (dimensionless)")
    max_devices: Int = Field(64, ge=1, le=2**20, json_schema_extra=_unit("devices"),
                             description="largest system this interconnect builds (devices)")

    @property
    def bytes_per_s(self) -> float:
        """Achieved bytes per second per link and direction."""
        return self.link_bandwidth_gbps * 1e9 * self.efficiency

    @property
    def latency_s(self) -> float:
        return self.link_latency_us * 1e-6


class HardwareConfig(_Strict):
    """One accelerator: clock, matrix and vector engines, off-chip memories, buffers, policy."""

    _derived_from: Optional[tuple] = PrivateAttr(default=None)  # (parent config, updated dotted paths)

    def __eq__(self, other) -> bool:
        """Equal field values (the private bookkeeping — the what-if parent — is not part of a
        config's value)."""
        if not isinstance(other, HardwareConfig):
            return NotImplemented
        return type(self) is type(other) and self.__dict__ == other.__dict__

    __hash__ = None  # mutable pydantic model: not hashable (as before)

    name: str = Field(min_length=1, max_length=200, description="config name (shown in reports)")
    description: str = Field("", description="free text")
    frequency_mhz: MHz = Field(ge=1e-3, le=MAX_FREQUENCY_MHZ, description="clock of the MPE/SFU, MHz",
                               json_schema_extra=_unit("MHz", "MHz"))
    mpe: MPE = Field(description="matrix processing engine")
    sfu: SFU = Field(description="special function (vector) unit")
    hbm: MemoryChannel = Field(description="main off-chip memory")
    ddr: Optional[MemoryChannel] = Field(None, description="optional second off-chip memory")
    buffers: Buffers = Field(description="on-chip buffers")
    placement: Placement = Field(Placement(), description="which memory holds each tensor class")
    policy: Policy = Field(Policy(), description="modelling switches")
    terms: Terms = Field(default_factory=Terms, description="fidelity terms: fixed costs, achieved efficiencies, "
                         "dequantization (neutral by default)")
    interconnect: Optional[Interconnect] = Field(
        None, description="device-to-device links for --devices > 1 (None: single device only)")
    energy: Energy = Field(default_factory=Energy, description="energy per action and static power, or the "
                           "published board power (qesim.hw.power_area; empty = not known)")
    area: Area = Field(default_factory=Area, description="area per unit, or the published die area "
                       "(qesim.hw.power_area; empty = not known)")
    cost: Cost = Field(default_factory=Cost, description="die cost model (wafer price, yield) or list price "
                       "(qesim.hw.power_area; empty = not known)")
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
        return achieved_bytes_per_cycle(m.bandwidth_gbps, m.efficiency, self.frequency_hz)

    def stage_policy(self, stage: str) -> StagePolicy:
        return self.policy.prefill if stage == "prefill" else self.policy.decode

    def model_copy(self, *, update=None, deep: bool = False) -> "HardwareConfig":
        new = super().model_copy(update=update, deep=deep)
        if update:  # fields changed outside with_updates: the parent's structure no longer vouches for it
            new._derived_from = None
        return new

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
        new = HardwareConfig.model_validate(data)
        # lets the cost model reuse an ancestor's structure; one link (to the first ancestor) and the
        # distinct paths updated since, so a loop of updates holds no chain of configs
        base, paths = self, tuple(updates)
        if self._derived_from is not None:
            base, paths = self._derived_from[0], tuple(dict.fromkeys(self._derived_from[1] + paths))
        new._derived_from = (base, paths)
        return new
