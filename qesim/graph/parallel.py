"""Multi-device graph transforms: the per-device shard of a layer graph under tensor (TP),
pipeline (PP) and expert (EP) parallelism, and the communication each one needs.

Pure graph transforms (sizes in elements, bytes where named); the cost of the shards comes from the
one cost model (:mod:`qesim.perf.multidevice` runs it per shard and adds the collectives of
:mod:`qesim.perf.terms.collectives`).

Tensor parallelism (Megatron-LM, Shoeybi et al. 2019, Sec. 3): in each attention block the q/k/v
projections are column-parallel (out_features / tp, heads / tp per device) and o_proj is
row-parallel (in_features / tp), followed by one all-reduce of the block output (tokens x hidden,
fp16); in each MLP gate/up (fc1) are column-parallel and down (fc2) row-parallel, followed by one
all-reduce. The same holds for the ViT blocks (qkv / proj, fc1 / fc2) and the merger MLP (fc1 column,
fc2 row, one all-reduce). Norms, residual adds and the patch embedding are replicated; SFU ops between
a column-parallel producer and the row-parallel consumer (RoPE, the activation, the quantizer / omega
before the row-parallel linear) work on 1/tp of the width. ``lm_head`` is vocab-parallel (out / tp)
and its logits are all-gathered; the token embedding is vocab-parallel (each device gathers its rows,
one all-reduce of tokens x hidden). KV heads: kv_heads / tp per device, at least one (GQA with
kv_heads < tp replicates KV heads, as vLLM does). MoE layers under TP split every expert's intermediate
(and the shared experts') by tp, followed by one all-reduce. MLA (kimi-vl-a3b): q/kv_b column-parallel,
the kv_a (latent) projection replicated.

Expert parallelism: the routed experts of each MoE layer are spread over ``ep`` devices (experts /
ep each); each device receives the token-slots routed to its experts (tokens x top_k / ep on
average, uniform routing) through an all-to-all and returns their outputs through a second one (each
of tokens x top_k x hidden x 2 bytes over the group). Attention, dense layers, the shared experts and
the vision tower are replicated on every device (no data parallelism across a single request).

Pipeline parallelism: the decoder layers are cut into ``pp`` contiguous stages of ceil/floor(L / pp)
layers; the vision tower, merger and token embedding run on stage 0, the final norm and lm_head on the
last stage. Between stages one activation (tokens x hidden, fp16) is sent point to point.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Optional

from qesim.errors import InputError
from qesim.graph.ir import AttentionOp, EmbeddingOp, LayerGraph, LinearOp, MoEOp, SfuOp

__all__ = ["Comm", "tp_shard", "ep_shard", "pp_stages", "parse_parallel", "ParallelPlan"]

#: op-name endings of column-parallel linears (output split) and row-parallel ones (input split)
_COLUMN = ("q_proj", "k_proj", "v_proj", "gate_proj", "up_proj", "fc1", "q_b_proj", "kv_b_proj", "qkv")
_ROW = ("o_proj", "down_proj", "fc2", "proj")
_REPLICATED_LINEARS = ("patch_embed", "kv_a_proj", "q_a_proj")


@dataclass
class Comm:
    """One collective of a pass: ``kind`` (allreduce | allgather | all_to_all | p2p), ``nbytes``
    (bytes of the message: the tensor reduced / gathered, what one device sends in an all-to-all),
    ``count`` (times per pass), ``component`` and ``where`` (the op it follows)."""

    kind: str
    nbytes: float
    count: int
    component: str
    where: str


@dataclass
class ParallelPlan:
    tp: int = 1
    pp: int = 1
    ep: int = 1
    micro_batches: Optional[int] = None

    @property
    def devices(self) -> int:
        return self.tp * self.pp * self.ep

    def label(self) -> str:
        parts = [f"{k}{v}" for k, v in (("tp", self.tp), ("pp", self.pp), ("ep", self.ep)) if v > 1]
        return "*".join(parts) or "single"


def parse_parallel(text: Optional[str], devices: int) -> ParallelPlan:
    """``tp`` / ``pp`` / ``ep`` (all ``devices`` on that axis), ``tp*pp`` (tp = the largest power of
    two <= 8 dividing ``devices``, pp the rest) or explicit ``tp2*pp4``."""
    t = (text or "tp").lower().replace("x", "*").replace("×", "*").replace(" ", "")
    if devices < 1:
        raise InputError(f"--devices must be >= 1 (got {devices})")
    if t in ("tp", "pp", "ep"):
        return ParallelPlan(**{t: devices})
    if t in ("tp*pp", "pp*tp"):
        tp = max(d for d in (1, 2, 4, 8) if devices % d == 0)
        return ParallelPlan(tp=tp, pp=devices // tp)
    plan = ParallelPlan()
    for part in t.split("*"):
        axis, num = part[:2], part[2:]
        if axis not in ("tp", "pp", "ep") or not num.isdigit() or int(num) < 1:
            raise InputError(f"--parallel {text!r}: use tp, pp, ep, tp*pp or explicit degrees like tp2*pp4")
        setattr(plan, axis, int(num))
    if plan.devices != devices:
        raise InputError(f"--parallel {text!r} uses {plan.devices} devices but --devices is {devices}")
    return plan


def _ends(name: str, suffixes) -> bool:
    last = name.rsplit(".", 1)[-1]
    return last in suffixes


def _div(x: int, n: int, what: str) -> int:
    if x % n:
        raise InputError(f"tensor parallelism over {n} devices: {what} = {x} is not divisible by {n}")
    return x // n


def tp_shard(graph: LayerGraph, tp: int, act_bytes: int = 2) -> tuple[LayerGraph, list[Comm]]:
    """The graph one of ``tp`` tensor-parallel devices runs, and the collectives per pass."""
    if tp == 1:
        return graph, []
    ops: list = []
    comms: list[Comm] = []
    sharded = False   # inside a column-parallel -> row-parallel span
    for op in graph.ops:
        u: dict = {}
        if isinstance(op, LinearOp):
            if op.name == "lm_head":
                u["out_features"] = math.ceil(op.out_features / tp)
                comms.append(Comm("allgather", op.tokens * op.out_features * act_bytes, op.repeat, op.component,
                                  op.name))
            elif _ends(op.name, _REPLICATED_LINEARS):
                pass
            elif _ends(op.name, _COLUMN):
                u["out_features"] = _div(op.out_features, tp, f"{op.name}.out_features")
                sharded = True
            elif _ends(op.name, _ROW):
                u["in_features"] = _div(op.in_features, tp, f"{op.name}.in_features")
                sharded = False
                comms.append(Comm("allreduce", op.tokens * op.out_features * act_bytes, op.repeat, op.component,
                                  op.name))
            if op.adapters is not None and u:
                pass  # adapters follow the shard: their (K + N) x rank shrinks with K or N automatically
        elif isinstance(op, AttentionOp):
            u["heads"] = _div(op.heads, tp, f"{op.name}.heads")
            u["kv_heads"] = max(1, op.kv_heads // tp)
            if u["heads"] % u["kv_heads"]:
                u["kv_heads"] = 1
        elif isinstance(op, MoEOp):
            u["expert_intermediate"] = _div(op.expert_intermediate, tp, f"{op.name}.expert_intermediate")
            if op.shared_experts:
                u["shared_intermediate"] = _div(op.shared_width, tp, f"{op.name}.shared intermediate")
            comms.append(Comm("allreduce", op.tokens * op.hidden * act_bytes, op.repeat, op.component, op.name))
        elif isinstance(op, EmbeddingOp):
            if op.name == "embedding":
                u["vocab"] = math.ceil(op.vocab / tp)
                comms.append(Comm("allreduce", op.tokens * op.hidden * act_bytes, op.repeat, op.component, op.name))
        elif isinstance(op, SfuOp) and sharded:
            u["width"] = max(1, math.ceil(op.width / tp))
            if op.const_elems:  # a constant vector operand (omega) is split with the vector it scales
                u["const_elems"] = u["width"]
        ops.append(op.model_copy(update=u) if u else op)
    meta = dict(graph.meta, tp=tp)
    g = graph.model_copy(update=dict(ops=ops, meta=meta, name=f"{graph.name}-tp{tp}"))
    return LayerGraph.model_validate(g.model_dump()), comms


def ep_shard(graph: LayerGraph, ep: int, act_bytes: int = 2) -> tuple[LayerGraph, list[Comm]]:
    """The graph one of ``ep`` expert-parallel devices runs (experts / ep each), and the two
    all-to-alls (dispatch, combine) per MoE layer."""
    if ep == 1:
        return graph, []
    moes = [op for op in graph.ops if isinstance(op, MoEOp)]
    if not moes:
        raise InputError(f"--parallel ep needs a mixture-of-experts model; {graph.model!r} has no MoE layers")
    ops, comms = [], []
    for op in graph.ops:
        if isinstance(op, MoEOp):
            e = _div(op.experts, ep, f"{op.name}.experts")
            slots = op.tokens * op.top_k                       # token-slots over the whole group
            k_local = max(1, op.top_k // ep)
            tokens_local = max(1, math.ceil(slots / ep / k_local))
            u = dict(experts=e, top_k=min(k_local, e), tokens=tokens_local, expert_freqs=None, touched_experts=None)
            ops.append(op.model_copy(update=u))
            comms.append(Comm("all_to_all", slots * op.hidden * act_bytes / ep, 2 * op.repeat, op.component, op.name))
        else:
            ops.append(op)
    g = graph.model_copy(update=dict(ops=ops, meta=dict(graph.meta, ep=ep), name=f"{graph.name}-ep{ep}"))
    return LayerGraph.model_validate(g.model_dump()), comms


def _layer_range_repeat(r: int, L: int, lo: int, hi: int) -> int:
    """Layers in [lo, hi) of an op that runs in ``r`` of ``L`` layers: the first r if r <= L/2, else
    the last r (the dense-first layout of Kimi/DeepSeek-style MoE models, as the cycle model orders them)."""
    if r >= L:
        a, b = 0, L
    elif r <= L / 2:
        a, b = 0, r
    else:
        a, b = L - r, L
    return max(0, min(b, hi) - max(a, lo))


def pp_stages(graph: LayerGraph, pp: int, act_bytes: int = 2) -> tuple[list[LayerGraph], float]:
    """``pp`` stage graphs (contiguous decoder layers; vision, merger and embedding on stage 0, final
    norm and lm_head on the last) and the bytes sent between consecutive stages per micro-batch pass
    (tokens x hidden x act_bytes). A tied lm_head whose embedding sits on another stage holds its own
    copy of the weights (``weight_shared_with`` cleared on that stage)."""
    if pp == 1:
        return [graph], 0.0
    L = int(graph.meta.get("layers") or max(op.repeat for op in graph.ops if op.component == "language"))
    if pp > L:
        raise InputError(f"pipeline parallelism over {pp} devices: the model has only {L} decoder layers")
    bounds = [round(i * L / pp) for i in range(pp + 1)]
    layer_ops = [op.component == "language" and (op.repeat > 1 or op.name.startswith("layer.")) for op in graph.ops]
    stages = []
    for s in range(pp):
        lo, hi = bounds[s], bounds[s + 1]
        ops = []
        for op, is_layer in zip(graph.ops, layer_ops):
            if is_layer:
                r = _layer_range_repeat(op.repeat, L, lo, hi)
                if r:
                    ops.append(op.model_copy(update=dict(repeat=r)))
            elif op.component != "language" or op.kind == "embedding":
                if s == 0:
                    ops.append(op)
            elif s == pp - 1:
                ops.append(op)
        names = {op.name for op in ops}
        # a weight shared with an op on another stage (tied lm_head / embedding) is a copy held here
        ops = [op.model_copy(update=dict(weight_shared_with=None))
               if getattr(op, "weight_shared_with", None) and op.weight_shared_with not in names else op for op in ops]
        g = graph.model_copy(update=dict(ops=ops, name=f"{graph.name}-pp{s}of{pp}",
                                         meta=dict(graph.meta, pp_stage=s, pp=pp, stage_layers=hi - lo)))
        stages.append(LayerGraph.model_validate(g.model_dump()))
    hidden = int(graph.meta.get("hidden") or 0)
    tokens = int(graph.meta.get("tokens") or graph.batch * graph.seq_len)
    return stages, float(tokens * hidden * act_bytes)
