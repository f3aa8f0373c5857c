"""Discrete-event (simpy) cycle model of the accelerator, replaying the analytical schedule.

The model executes the :class:`~qesim.perf.schedule.GraphSchedule` that
:func:`qesim.perf.model.plan_graph` produced (it never re-plans): the same ops, tile steps,
bytes per memory, MPE and SFU cycles and double-buffering flags the analytical engine timed with
its closed-form pipeline formula. Time unit: clock cycles of ``HardwareConfig.frequency_mhz``.

Resources (all simpy):

- **Memories** (``hbm``, ``ddr``): one FIFO channel each (:class:`simpy.Resource`, capacity 1)
  serving DMA transfers at the config's achieved bandwidth ``hw.bytes_per_cycle(mem)`` bytes per
  cycle (peak GB/s x efficiency). HBM pseudo-channels are address-interleaved, so a tile transfer
  is striped across all of them and the memory acts as one server at the aggregate bandwidth.
  Loads and stores of one memory **share** its channel: a store queues behind the loads already
  requested, and a load behind an earlier store. This contention is what the analytical formula
  cannot see (it only adds the two into one memory time).
- **MPE** and **SFU**: servers (:class:`simpy.Resource`, capacity 1) at the whole-chip rate the
  schedule's cycles already assume (the cores of a FlightLLM-style MPE work on the same op in
  model parallel, so they are one server here). An op's per-step MPE time is
  0 when the config's stage policy sets ``compute_hidden`` (as in the analytical engine). When
  ``sfu_overlaps`` is set the step holds both units for ``max(mpe, sfu)`` cycles (each unit is
  charged only its own busy time), otherwise MPE then SFU.
- **On-chip buffers**: an input buffer and an output buffer per op, each a
  :class:`simpy.Container` of slots: 2 slots when double-buffered, else 1. A load first takes a
  free input slot (it **waits while the buffer is full**); compute takes an output slot and frees
  the input slot when done; a store frees the output slot when its transfer ends.

Per op, three simpy processes run: a loader (step i: input slot -> transfers on every memory the
op loads from, in parallel), a compute process (wait for step i's data and an output slot ->
MPE/SFU) and a storer (transfers of step i's results). With 2 slots the load of step i+1
overlaps the compute of step i, as in the analytical pipeline.

Dependencies: ops run in graph order; an op starts when the previous op's last store has ended
(no cross-op prefetch, the same assumption the analytical engine makes by summing op times).

Repeated ops (``repeat = layers``): every distinct op is simulated **once** and its cycles are
multiplied by ``repeat`` (exact, because ops are serialised and start from an idle machine).
The timeline (:meth:`GraphSimResult.instances`) lays the repeats out in execution order: a run of
consecutive ops with the same ``repeat > 1`` is one decoder layer executed ``repeat`` times.

Step coarsening (speed): an op with more than ``max_sim_steps`` tile steps is replayed as
``max_sim_steps`` macro-steps, each the aggregate of ``ceil`` or ``floor(steps / max_sim_steps)``
consecutive identical tiles (bytes and cycles added up). A double-buffered pipeline of ``n``
steps costs ``max(M, C) + min(M, C)/n``; replaying it as ``n' < n`` macro-steps over-states the
fill/drain term by ``min(M, C) * (1/n' - 1/n)`` cycles, at most ``1/n'`` of the op (0.4% at the
default 256). ``max_sim_steps=None`` replays every tile.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Iterator, Optional

import simpy

from qesim.graph.ir import LayerGraph
from qesim.hw.config import HardwareConfig
from qesim.perf.estimate import OP_COLUMNS, GraphEstimate, plan_graph
from qesim.perf.schedule import MEMORIES, GraphSchedule, OpSchedule

RESOURCES = ("hbm", "ddr", "mpe", "sfu")
DEFAULT_MAX_SIM_STEPS = 256


# ----------------------------------------------------------------------------- results
@dataclass
class Interval:
    """One busy interval of a resource (cycles, relative to the start of the simulation)."""

    resource: str  # "hbm" | "ddr" | "mpe" | "sfu"
    op_index: int
    step: int  # macro-step index within the op
    what: str  # "load" | "store" | "compute"
    start: float
    end: float


@dataclass
class OpSimResult:
    """One op call as simulated (cycles; busy cycles per resource are per call)."""

    index: int
    name: str
    kind: str
    repeat: int
    steps: int  # tile steps of the schedule
    sim_steps: int  # macro-steps actually replayed (== steps unless coarsened)
    start: float  # cycle the op's first load started (compact timeline: every op once)
    end: float  # cycle its last store (or compute) ended
    busy: dict  # resource -> busy cycles within this op call
    stall_cycles: float  # cycles loads waited for a free input-buffer slot (summed over steps)

    @property
    def cycles(self) -> float:
        return self.end - self.start

    @property
    def bound(self) -> str:
        """The resource with the most measured busy cycles ('compute' = MPE), as the analytical engine names it."""
        names = {"mpe": "compute", "sfu": "sfu", "hbm": "hbm", "ddr": "ddr"}
        busy = {names[r]: v for r, v in self.busy.items() if v > 0}
        if not busy:
            return "none"
        return max(busy, key=busy.get)


@dataclass
class GraphSimResult:
    """The simulation of one pass (every distinct op once; see :meth:`instances` for repeats)."""

    schedule: GraphSchedule
    ops: list  # list[OpSimResult]
    intervals: list  # list[Interval] (empty unless record=True)
    events: int  # simpy events processed
    wall_s: float  # wall-clock seconds of the simulation
    frequency_hz: float

    @property
    def cycles(self) -> float:
        """Cycles of the whole pass: each op's cycles times its repeat count."""
        return float(sum(o.cycles * o.repeat for o in self.ops))

    def busy_cycles(self) -> dict:
        """Resource -> busy cycles over the whole pass (repeats included)."""
        return {r: float(sum(o.busy.get(r, 0.0) * o.repeat for o in self.ops)) for r in RESOURCES}

    def utilization(self) -> dict:
        """Resource -> busy / total cycles of the pass (0..1)."""
        c = self.cycles or 1.0
        return {r: v / c for r, v in self.busy_cycles().items()}

    def instances(self) -> Iterator[tuple[int, int, float, float]]:
        """(op index, repetition, start, end) in execution order, cycles from the pass start.

        A maximal run of consecutive ops that repeat (``repeat > 1``) or are named ``layer.*``
        is a decoder-layer block executed ``L`` = max repeat times; an op of the block with
        ``repeat = r < L`` runs in layers ``[0, r)`` if ``r <= L/2`` else ``[L - r, L)`` (the
        "first k layers dense, the rest MoE" layout of Kimi/DeepSeek-style models). This only
        orders the timeline; totals are ``sum(cycles * repeat)`` either way."""
        t = 0.0
        i, n = 0, len(self.ops)

        def in_block(o: OpSimResult) -> bool:
            return o.repeat > 1 or o.name.startswith("layer.")

        while i < n:
            j = i + 1
            if in_block(self.ops[i]):
                while j < n and in_block(self.ops[j]):
                    j += 1
            L = max(self.ops[k].repeat for k in range(i, j))
            for layer in range(L):
                for k in range(i, j):
                    r = self.ops[k].repeat
                    if j - i == 1:
                        active = True
                    elif r >= L:
                        active = True
                    elif r <= L / 2:
                        active = layer < r
                    else:
                        active = layer >= L - r
                    if active:
                        d = self.ops[k].cycles
                        rep = layer if (j - i == 1 or r >= L or r <= L / 2) else layer - (L - r)
                        yield k, rep, t, t + d
                        t += d
            i = j


# ----------------------------------------------------------------------------- the model
class _Machine:
    """simpy resources of one accelerator and the busy-time bookkeeping."""

    def __init__(self, env: simpy.Environment, hw: HardwareConfig, record: bool):
        self.env = env
        self.bpc = {"hbm": hw.bytes_per_cycle("hbm")}
        if hw.ddr is not None:
            self.bpc["ddr"] = hw.bytes_per_cycle("ddr")
        self.chan = {m: simpy.Resource(env, capacity=1) for m in self.bpc}
        self.mpe = simpy.Resource(env, capacity=1)
        self.sfu = simpy.Resource(env, capacity=1)
        self.busy = {r: 0.0 for r in RESOURCES}
        self.record = record
        self.intervals: list[Interval] = []

    def _note(self, res: str, op: int, step: int, what: str, start: float, end: float) -> None:
        self.busy[res] += end - start
        if self.record:
            self.intervals.append(Interval(res, op, step, what, start, end))

    def transfer(self, mem: str, cycles: float, op: int, step: int, what: str):
        """Process: one DMA transfer of ``cycles`` channel cycles on memory ``mem`` (FIFO)."""
        ch = self.chan[mem]
        with ch.request() as req:
            yield req
            t0 = self.env.now
            yield self.env.timeout(cycles)
            self._note(mem, op, step, what, t0, self.env.now)


def _split(steps: int, n: int) -> list[int]:
    """``steps`` tiles cut into ``n`` macro-steps of floor/ceil(steps/n) tiles (larger first)."""
    q, r = divmod(steps, n)
    return [q + 1] * r + [q] * (n - r)


def _op_process(m: _Machine, idx: int, s: OpSchedule, max_sim_steps: Optional[int], out: dict):
    """Process: run every step of op ``s`` through load -> compute -> store; fills ``out``."""
    env = m.env
    n_tiles = max(1, int(s.steps))
    n = n_tiles if not max_sim_steps else min(n_tiles, max_sim_steps)
    sizes = _split(n_tiles, n)
    for mem in list(s.load_bytes) + list(s.store_bytes):
        if mem not in m.bpc:
            raise ValueError(f"op {s.name!r} moves bytes on memory {mem!r}, which the config does not have")
    # per-tile cycles of each activity
    bpc = {**m.bpc, **(s.bpc or {})}  # fidelity terms: the op class's achieved bytes/cycle
    ld = {mem: b / n_tiles / bpc[mem] for mem, b in s.load_bytes.items() if b > 0}
    st = {mem: b / n_tiles / bpc[mem] for mem, b in s.store_bytes.items() if b > 0}
    mpe_t = 0.0 if s.compute_hidden else s.mpe_cycles / n_tiles
    sfu_t = s.sfu_cycles / n_tiles
    slots = 2 if s.double_buffered else 1
    in_buf = simpy.Container(env, capacity=slots, init=slots)  # free input slots
    out_buf = simpy.Container(env, capacity=slots, init=slots)  # free output slots
    loaded = simpy.Store(env)  # step indices whose operands are on chip
    computed = simpy.Store(env)  # step indices whose results await a store
    busy0 = dict(m.busy)
    stall = [0.0]
    start = env.now

    def transfers(acts: dict, i: int, what: str):
        g = sizes[i]
        if len(acts) == 1:
            (mem, c), = acts.items()
            yield from m.transfer(mem, c * g, idx, i, what)  # inline: no extra simpy process
        elif acts:
            yield env.all_of([env.process(m.transfer(mem, c * g, idx, i, what)) for mem, c in acts.items()])

    def loader():
        for i in range(n):
            t0 = env.now
            yield in_buf.get(1)  # waits while every input slot is full
            stall[0] += env.now - t0
            if ld:
                yield from transfers(ld, i, "load")
            yield loaded.put(i)

    def computer():
        for i in range(n):
            yield loaded.get()
            yield out_buf.get(1)
            g = sizes[i]
            mp, sf = mpe_t * g, sfu_t * g
            if mp > 0 and sf > 0 and s.sfu_overlaps:
                rq_m, rq_s = m.mpe.request(), m.sfu.request()
                yield rq_m & rq_s
                t0 = env.now
                yield env.timeout(max(mp, sf))
                m._note("mpe", idx, i, "compute", t0, t0 + mp)
                m._note("sfu", idx, i, "compute", t0, t0 + sf)
                m.mpe.release(rq_m)
                m.sfu.release(rq_s)
            else:
                for res, name, c in ((m.mpe, "mpe", mp), (m.sfu, "sfu", sf)):
                    if c > 0:
                        with res.request() as rq:
                            yield rq
                            t0 = env.now
                            yield env.timeout(c)
                            m._note(name, idx, i, "compute", t0, env.now)
            yield in_buf.put(1)  # operands consumed: the slot may be refilled
            yield computed.put(i)

    def storer():
        for i in range(n):
            yield computed.get()
            if st:
                yield from transfers(st, i, "store")
            yield out_buf.put(1)

    if s.fixed_cycles > 0:  # fidelity terms: fixed cost of the call (launch / instruction issue) before its steps
        yield env.timeout(s.fixed_cycles)
    procs = [env.process(loader()), env.process(computer()), env.process(storer())]
    yield env.all_of(procs)
    if env.now - start < s.floor_cycles:  # fidelity terms: the call takes at least floor cycles
        yield env.timeout(s.floor_cycles - (env.now - start))
    out[idx] = OpSimResult(
        index=idx, name=s.name, kind=s.kind, repeat=int(s.repeat), steps=n_tiles, sim_steps=n,
        start=start, end=env.now, busy={r: m.busy[r] - busy0[r] for r in RESOURCES}, stall_cycles=stall[0],
    )


class _CountingEnv(simpy.Environment):
    """simpy Environment that counts processed events (for events/second)."""

    def __init__(self):
        super().__init__()
        self.n_events = 0

    def step(self):
        self.n_events += 1
        return super().step()


def _op_key(s: OpSchedule, bpc: dict, max_sim_steps: Optional[int]) -> tuple:
    """Everything an op's simulated timing depends on (ops start from an idle machine)."""
    return (int(s.steps), tuple(sorted(s.load_bytes.items())), tuple(sorted(s.store_bytes.items())),
            float(s.mpe_cycles), float(s.sfu_cycles), bool(s.compute_hidden), bool(s.double_buffered),
            bool(s.sfu_overlaps), tuple(sorted(bpc.items())), max_sim_steps, float(s.fixed_cycles),
            float(s.floor_cycles), tuple(sorted((s.bpc or {}).items())))


def simulate_schedule(gs: GraphSchedule, hw: HardwareConfig, *, max_sim_steps: Optional[int] = DEFAULT_MAX_SIM_STEPS,
                      record: bool = False, memo: Optional[dict] = None) -> GraphSimResult:
    """Replay ``gs`` on ``hw`` with the discrete-event model (see the module docstring).

    Args:
        gs: the schedule from :func:`qesim.perf.model.plan_graph` (or built by hand).
        hw: the hardware config (bandwidths, clock).
        max_sim_steps: coarsening cap on replayed steps per op (``None``: every tile).
        record: keep every busy interval (for the Chrome trace / Gantt chart).
        memo: optional dict shared between calls: an op whose schedule (steps, bytes per memory,
            cycles, flags) and memory bandwidths were simulated before is not replayed again; its
            cycles and busy times are reused (exact: ops are serialised and start from an idle
            machine, and the model is deterministic). Used to time many decode steps that differ
            only in attention. Ignored when ``record`` is set. Reused ops add no events.
    Returns:
        :class:`GraphSimResult` with per-op start/end cycles and busy cycles per resource.
    """
    env = _CountingEnv()
    m = _Machine(env, hw, record)
    out: dict[int, OpSimResult] = {}

    use_memo = memo is not None and not record

    def run_all():
        for idx, s in enumerate(gs.ops):
            key = _op_key(s, m.bpc, max_sim_steps) if use_memo else None
            if key is not None and key in memo:
                cyc, busy, stall, nsim = memo[key]
                start = env.now
                for r, v in busy.items():
                    m.busy[r] += v
                yield env.timeout(cyc)
                out[idx] = OpSimResult(index=idx, name=s.name, kind=s.kind, repeat=int(s.repeat),
                                       steps=max(1, int(s.steps)), sim_steps=nsim, start=start, end=env.now,
                                       busy=dict(busy), stall_cycles=stall)
                continue
            yield env.process(_op_process(m, idx, s, max_sim_steps, out))
            if key is not None:
                o = out[idx]
                memo[key] = (o.cycles, dict(o.busy), o.stall_cycles, o.sim_steps)

    t0 = time.perf_counter()
    env.process(run_all())
    env.run()
    wall = time.perf_counter() - t0
    ops = [out[i] for i in range(len(gs.ops))]
    return GraphSimResult(schedule=gs, ops=ops, intervals=m.intervals, events=env.n_events, wall_s=wall,
                          frequency_hz=hw.frequency_hz)


def estimate_from_sim(res: GraphSimResult, hw: HardwareConfig) -> GraphEstimate:
    """The cycle engine's :class:`GraphEstimate` (same columns as the analytical one).

    ``cycles`` is the simulated op call; ``mpe_busy_cycles``/``sfu_cycles``/``hbm_cycles``/
    ``ddr_cycles`` are measured busy cycles per call; ``bound`` is the busiest resource."""
    gs = res.schedule
    cols = {c: [] for c in OP_COLUMNS}
    for s, o in zip(gs.ops, res.ops):
        vals = (s.name, s.kind, s.repeat, o.cycles, o.cycles * s.repeat, s.mpe_cycles, o.busy["mpe"], o.busy["sfu"],
                o.busy["hbm"], o.busy["ddr"], s.mem_bytes("hbm"), s.mem_bytes("ddr"), s.total_bytes, s.macs, s.steps,
                o.bound, s.tile.describe() if s.tile else "")
        for c, v in zip(OP_COLUMNS, vals):
            cols[c].append(v)
    return SimEstimate(graph=gs.graph_name, hw=hw.name, stage=gs.stage, tokens=gs.tokens,
                       frequency_hz=hw.frequency_hz, columns=cols, warnings=list(gs.warnings), sim=res)


class SimEstimate(GraphEstimate):
    """A :class:`GraphEstimate` from the cycle engine; ``sim`` keeps the raw simulation."""

    def __init__(self, *args, sim: Optional[GraphSimResult] = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.sim = sim


def simulate_graph(graph: LayerGraph, hw: HardwareConfig, *, max_sim_steps: Optional[int] = DEFAULT_MAX_SIM_STEPS,
                   record: bool = False, memo: Optional[dict] = None) -> SimEstimate:
    """Cycle-engine estimate of one pass of ``graph`` on ``hw`` (plans with the analytical planner).

    ``memo``: see :func:`simulate_schedule` (reuse of identical ops across calls)."""
    gs = plan_graph(graph, hw)
    return estimate_from_sim(simulate_schedule(gs, hw, max_sim_steps=max_sim_steps, record=record, memo=memo), hw)
