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

from typing import Annotated, Optional

from pydantic import BaseModel, ConfigDict, Field, model_validator

from qesim.scalars import Bytes, Int, Num  # strict scalars, shared with qesim.hw.config and the graph IR


def _unit(unit: str, kind: Optional[str] = None) -> dict:
    d: dict = {"unit": unit}
    if kind:
        d["x-accepts-units"] = kind
    return d


def F(default, desc: str, unit: str, kind: Optional[str] = None, **kw):
    """A field with its description and unit (the schema's rule: every number carries one)."""
    return Field(default, description=desc, json_schema_extra=_unit(unit, kind), **kw)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)


class MacEnergy(_Strict):
    """Energy of one multiply-accumulate with operands up to ``w_bits`` x ``a_bits`` (at ref node)."""

    w_bits: Int = F(..., "widest weight operand this entry covers", "bit", ge=1, le=32)
    a_bits: Int = F(..., "widest activation operand this entry covers", "bit", ge=1, le=32)
    pj: Num = F(..., "energy per MAC at energy.ref_node_nm", "pJ", gt=0, le=1e6)


class SramPoint(_Strict):
    """Published SRAM access energy: one ``sram_access_bits``-wide read of an array of ``bytes``."""

    bytes: Bytes = F(..., "array capacity", "bytes", "bytes", ge=1, le=2**50)
    pj: Num = F(..., "energy per access at energy.ref_node_nm", "pJ", gt=0, le=1e9)


class Energy(_Strict):
    """Energy per action (dynamic) and static power. See the module docstring."""

    ref_node_nm: Optional[Num] = F(None, "process node of the per-action numbers", "nm", gt=0, le=1000)
    node_nm: Optional[Num] = F(None, "process node of this design", "nm", gt=0, le=1000)
    ref_vdd_v: Optional[Num] = F(None, "supply voltage of the per-action numbers", "V", gt=0, le=10)
    vdd_v: Optional[Num] = F(None, "supply voltage of this design", "V", gt=0, le=10)
    mac_pj: list[MacEnergy] = Field(default_factory=list, description="energy per MAC by operand precision "
                                    "(empty: no per-action model)")
    sfu_lane_op_pj: Optional[Num] = F(None, "one SFU lane busy for one cycle", "pJ", gt=0, le=1e6)
    sram_points: list[SramPoint] = Field(default_factory=list, description="published SRAM access energy vs "
                                         "array size (fitted as a power law)")
    sram_access_bits: Int = F(64, "width of one access in sram_points", "bit", ge=8, le=4096)
    sram_bank_bytes: Optional[Bytes] = F(None, "largest single array; bigger buffers are banks of this size",
                                         "bytes", "bytes", ge=1, le=2**50)
    sram_write_factor: Num = F(1.0, "write energy / read energy", "ratio", gt=0, le=100)
    hbm_pj_per_bit: Optional[Num] = F(None, "HBM access energy", "pJ/bit", gt=0, le=1e4)
    ddr_pj_per_bit: Optional[Num] = F(None, "DDR access energy", "pJ/bit", gt=0, le=1e4)
    leakage_w_per_mm2: Optional[Num] = F(None, "static power per mm^2 of logic (MPE, SFU, controllers, "
                                         "overhead)", "W/mm^2", ge=0, le=100)
    sram_leakage_w_per_mm2: Optional[Num] = F(None, "static power per mm^2 of on-chip buffer (SRAM) area",
                                              "W/mm^2", ge=0, le=100)
    other_static_w: Num = F(0.0, "static power not tied to a unit (clock, control)", "W", ge=0, le=1e5)
    board_power_w: Optional[Num] = F(None, "published board/TDP power; energy = power x time when no "
                                     "per-action numbers are given (GPUs, FPGAs)", "W", gt=0, le=1e5)

    @model_validator(mode="after")
    def _check(self) -> "Energy":
        if self.mac_pj and (self.ref_node_nm is None or self.node_nm is None):
            raise ValueError("energy.mac_pj needs energy.ref_node_nm and energy.node_nm (the scaling rule)")
        if (self.ref_vdd_v is None) != (self.vdd_v is None):
            raise ValueError("energy.ref_vdd_v and energy.vdd_v go together")
        for n in (self.ref_node_nm, self.node_nm):
            if self.mac_pj and n is not None and not 7 <= n <= 180:
                raise ValueError(f"energy: node {n:g} nm is outside the scaling table (7..180 nm)")
        return self

    @property
    def per_action(self) -> bool:
        """True if the per-action (ASIC) model applies; False: board power x time, or nothing."""
        return bool(self.mac_pj)


class MacArea(_Strict):
    w_bits: Int = F(..., "widest weight operand this entry covers", "bit", ge=1, le=32)
    a_bits: Int = F(..., "widest activation operand this entry covers", "bit", ge=1, le=32)
    um2: Num = F(..., "area per MAC unit at area.ref_node_nm", "um^2", gt=0, le=1e9)


class Area(_Strict):
    """Area per unit. Logic at ``ref_node_nm``, SRAM at ``sram_ref_node_nm``, scaled to ``node_nm``."""

    node_nm: Optional[Num] = F(None, "process node of this design", "nm", gt=0, le=1000)
    ref_node_nm: Optional[Num] = F(None, "process node of mac_um2 and sfu_lane_um2", "nm", gt=0, le=1000)
    mac_um2: list[MacArea] = Field(default_factory=list, description="area per MAC unit by operand precision "
                                   "(empty: no per-unit model)")
    sfu_lane_um2: Optional[Num] = F(None, "area of one SFU lane at ref_node_nm", "um^2", gt=0, le=1e9)
    sram_ref_node_nm: Optional[Num] = F(None, "process node of sram_bitcell_um2", "nm", gt=0, le=1000)
    sram_bitcell_um2: Optional[Num] = F(None, "area per SRAM bit cell", "um^2", gt=0, le=1e3)
    sram_array_efficiency: list[Annotated[Num, Field(gt=0, le=1)]] = Field(
        default_factory=list, max_length=64,
        description="bit-cell area / array area for arrays of 4 KiB, 8 KiB, ... (doubling), each in (0, 1]; "
        "arrays above the last size are banks of the last size", json_schema_extra=_unit("ratio"))
    hbm_stacks: Int = F(0, "HBM stacks (PHY + controller each)", "stacks", ge=0, le=1024)
    hbm_gbps_per_stack: Optional[Num] = F(
        None, "peak bandwidth one stack delivers: a design point gets max(hbm_stacks, ceil(hbm.bandwidth_gbps / "
        "this)) stacks (more bandwidth costs PHY/controller area)", "GB/s", gt=0, le=1e7)
    hbm_phy_mm2_per_stack: Optional[Num] = F(None, "HBM PHY area per stack (not node-scaled)", "mm^2", ge=0, le=1e4)
    hbm_ctrl_mm2_per_stack: Optional[Num] = F(None, "HBM controller area per stack at ctrl_ref_node_nm", "mm^2",
                                              ge=0, le=1e4)
    ddr_links: Int = F(0, "DDR PHY link units (32 bits each)", "links", ge=0, le=1024)
    ddr_phy_mm2_per_link: Optional[Num] = F(None, "DDR PHY area per link unit (not node-scaled)", "mm^2", ge=0,
                                            le=1e4)
    ddr_ctrl_mm2_per_link: Optional[Num] = F(None, "DDR controller area per link unit at ctrl_ref_node_nm", "mm^2",
                                             ge=0, le=1e4)
    ctrl_ref_node_nm: Optional[Num] = F(None, "process node of the controller areas", "nm", gt=0, le=1000)
    overhead_fraction: Num = F(0.0, "share of the die not in the units above (control, NoC, pads)", "fraction",
                               ge=0, lt=1)
    die_area_mm2: Optional[Num] = F(None, "published die area (bought devices)", "mm^2", gt=0, le=1e5)

    @property
    def per_unit(self) -> bool:
        return bool(self.mac_um2)


class Cost(_Strict):
    """Die cost: wafer price / (dies per wafer x yield), negative-binomial yield."""

    wafer_price_usd: Optional[Num] = F(None, "price of one processed wafer", "USD", gt=0, le=1e7)
    wafer_diameter_mm: Num = F(300.0, "wafer diameter", "mm", gt=0, le=1000)
    defect_density_per_mm2: Optional[Num] = F(None, "defect density D0", "defects/mm^2", ge=0, le=10)
    yield_cluster_alpha: Num = F(3.0, "negative-binomial clustering parameter alpha", "dimensionless", gt=0, le=1e3)
    list_price_usd: Optional[Num] = F(None, "published price of the device", "USD", gt=0, le=1e9)
