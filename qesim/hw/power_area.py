"""Energy, area and cost sections of the hardware schema (``energy:``, ``area:``, ``cost:``).

Every number is per action or per unit, with its unit in the field name: ``*_pj`` (picojoules),
``*_pj_per_bit``, ``*_um2`` (square micrometres), ``*_mm2``, ``*_w`` (watts), ``*_usd``, ``*_nm``
(process node), ``*_v`` (volts). Per-action energies and per-unit areas are stated AT THE NODE
WHERE THEY WERE PUBLISHED (``ref_node_nm``); :mod:`qesim.perf.terms.tech` scales them to the
design's ``node_nm`` with the Stillmaker & Baas (2017) equations. Off-chip memory energy per bit
and PHY areas are device/IO figures and are not node-scaled (LLMCompass: "PHYs do not scale").

Two kinds of device are described:

- a designed NPU (an ASIC): per-action energies (MAC per precision, SFU lane-op, SRAM access
  by buffer size, HBM/DDR per bit), leakage per mm^2, per-unit areas and a die cost model;
- a bought device (GPU, FPGA): only what is published (``board_power_w``, ``die_area_mm2``,
  ``list_price_usd``); the per-action fields stay empty and energy is board power x time.

Empty (None) means "not known", never zero.
"""

from __future__ import annotations

from typing import Optional

from pydantic import BaseModel, ConfigDict, Field, model_validator


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class MacEnergy(_Strict):
    """Energy of one multiply-accumulate with operands up to ``w_bits`` x ``a_bits`` (at ref node)."""

    w_bits: int = Field(ge=1, le=32)
    a_bits: int = Field(ge=1, le=32)
    pj: float = Field(gt=0, description="picojoules per MAC at energy.ref_node_nm")


class SramPoint(_Strict):
    """Published SRAM access energy: one ``access_bits``-wide read of an array of ``bytes``."""

    bytes: int = Field(ge=1, description="array capacity, bytes")
    pj: float = Field(gt=0, description="picojoules per access at energy.ref_node_nm")


class Energy(_Strict):
    """Energy per action (dynamic) and static power. See the module docstring."""

    ref_node_nm: Optional[float] = Field(None, gt=0, description="node of the per-action numbers")
    node_nm: Optional[float] = Field(None, gt=0, description="process node of this design")
    ref_vdd_v: Optional[float] = Field(None, gt=0, description="supply of the per-action numbers")
    vdd_v: Optional[float] = Field(None, gt=0, description="supply of this design")
    mac_pj: list[MacEnergy] = Field(default_factory=list, description="per MAC, by operand precision")
    sfu_lane_op_pj: Optional[float] = Field(None, gt=0, description="one SFU lane busy for one cycle")
    sram_points: list[SramPoint] = Field(default_factory=list, description="access energy vs array size")
    sram_access_bits: int = Field(64, ge=8, description="width of one access in sram_points")
    sram_bank_bytes: Optional[int] = Field(
        None, ge=1, description="largest single array; bigger buffers are banks of this size")
    sram_write_factor: float = Field(1.0, gt=0, description="write energy / read energy")
    hbm_pj_per_bit: Optional[float] = Field(None, gt=0)
    ddr_pj_per_bit: Optional[float] = Field(None, gt=0)
    leakage_w_per_mm2: Optional[float] = Field(None, ge=0, description="static power per mm^2 of logic "
                                               "(MPE, SFU, controllers, overhead)")
    sram_leakage_w_per_mm2: Optional[float] = Field(None, ge=0, description="static power per mm^2 of "
                                                    "on-chip buffer (SRAM) area")
    other_static_w: float = Field(0.0, ge=0, description="static power not tied to a unit (clock, control)")
    board_power_w: Optional[float] = Field(
        None, gt=0, description="published board/TDP power; used as energy = power x time when no "
        "per-action numbers are given (GPUs, FPGAs)")

    @model_validator(mode="after")
    def _check(self) -> "Energy":
        if self.mac_pj and (self.ref_node_nm is None or self.node_nm is None):
            raise ValueError("energy.mac_pj needs energy.ref_node_nm and energy.node_nm (the scaling rule)")
        if (self.ref_vdd_v is None) != (self.vdd_v is None):
            raise ValueError("energy.ref_vdd_v and energy.vdd_v go together")
        return self

    @property
    def per_action(self) -> bool:
        """True if the per-action (ASIC) model applies; False: board power x time, or nothing."""
        return bool(self.mac_pj)


class MacArea(_Strict):
    w_bits: int = Field(ge=1, le=32)
    a_bits: int = Field(ge=1, le=32)
    um2: float = Field(gt=0, description="square micrometres per MAC unit at area.ref_node_nm")


class Area(_Strict):
    """Area per unit. Logic and SRAM at ``ref_node_nm`` / ``sram_ref_node_nm``, scaled to ``node_nm``."""

    node_nm: Optional[float] = Field(None, gt=0)
    ref_node_nm: Optional[float] = Field(None, gt=0, description="node of mac_um2 and sfu_lane_um2")
    mac_um2: list[MacArea] = Field(default_factory=list)
    sfu_lane_um2: Optional[float] = Field(None, gt=0)
    sram_ref_node_nm: Optional[float] = Field(None, gt=0, description="node of sram_bitcell_um2")
    sram_bitcell_um2: Optional[float] = Field(None, gt=0, description="area per bit cell")
    sram_array_efficiency: list[float] = Field(
        default_factory=list, description="bit-cell area / array area for arrays of 4 KiB, 8 KiB, ... "
        "(doubling); arrays above the last size are banks of the last size")
    hbm_stacks: int = Field(0, ge=0)
    hbm_gbps_per_stack: Optional[float] = Field(
        None, gt=0, description="peak GB/s one stack delivers: when set, a design point gets "
        "max(hbm_stacks, ceil(hbm.bandwidth_gbps / this)) stacks (more bandwidth costs PHY/controller area)")
    hbm_phy_mm2_per_stack: Optional[float] = Field(None, ge=0)
    hbm_ctrl_mm2_per_stack: Optional[float] = Field(None, ge=0, description="at ctrl_ref_node_nm")
    ddr_links: int = Field(0, ge=0, description="DDR PHY link units (32 bits each)")
    ddr_phy_mm2_per_link: Optional[float] = Field(None, ge=0)
    ddr_ctrl_mm2_per_link: Optional[float] = Field(None, ge=0, description="at ctrl_ref_node_nm")
    ctrl_ref_node_nm: Optional[float] = Field(None, gt=0)
    overhead_fraction: float = Field(0.0, ge=0, lt=1, description="share of the die not in the units above "
                                     "(control, NoC, pads)")
    die_area_mm2: Optional[float] = Field(None, gt=0, description="published die area (bought devices)")

    @property
    def per_unit(self) -> bool:
        return bool(self.mac_um2)


class Cost(_Strict):
    """Die cost: wafer price / (dies per wafer x yield), negative-binomial yield."""

    wafer_price_usd: Optional[float] = Field(None, gt=0)
    wafer_diameter_mm: float = Field(300.0, gt=0)
    defect_density_per_mm2: Optional[float] = Field(None, ge=0)
    yield_cluster_alpha: float = Field(3.0, gt=0, description="negative-binomial clustering parameter")
    list_price_usd: Optional[float] = Field(None, gt=0, description="published price of the device")
