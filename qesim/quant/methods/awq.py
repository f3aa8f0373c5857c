"""AWQ scale search, MBQ variant without clipping (quantizer-facts §3-4).

Per scaling group (q,k,v <- input_layernorm inspected on self_attn; o <- v only without GQA;
gate,up <- post_attention_layernorm inspected on mlp; down <- up inspected on down_proj):
x_mean = mean_t |x|; for ratio in {0, 1/n_grid, ..., (n_grid-1)/n_grid} (n_grid = 20):
s = x_mean^ratio .clamp(1e-4); s /= sqrt(max(s) min(s)); every linear of the group computes
Q_a(x / s) @ Q_w(W * s)^T (the activation quantizer is inside the loop for W-A settings, as MBQ's
``auto_scale_wa``); loss = mean |out - out_fp| (MBQ ``mae``, no modality reweighting;
``opts['awq_loss']='mse'`` for llm-awq's MSE) on the inspected module's output. The best s is
folded (norm /= s or previous linear rows /= s; W *= s), then all linears are quantized.

Inputs: the FP block inputs (llm-awq convention: no error propagation; MBQ's ``--distort`` is
not used). The search runs on the first ``opts['awq_batches']`` calibration mini-batches
(default 2; the whole calibration set gives x_mean). No clipping search (qmllm has none).
"""

from __future__ import annotations

import math

import torch

from qesim.quant.methods import BlockContext, fold_scale, make_qlinear
from qesim.quant.primitives import quantize_act


def _first(y):
    return y[0] if isinstance(y, tuple) else y


@torch.no_grad()
def _search(ctx: BlockContext, group) -> torch.Tensor:
    n_grid = int(ctx.opts.get("awq_n_grid", 20))
    loss_mode = ctx.opts.get("awq_loss", "mae")
    lins = [ctx.linears[n] for n in group.linears]
    X = ctx.X[group.linears[0]]
    prev_s = ctx.in_scales.get(group.linears[0])
    if prev_s is not None:
        X = X / prev_s
    x_mean = X.abs().mean(0).float()
    inspect = ctx.block.get_submodule(group.inspect)
    calls = ctx.calls[group.inspect]
    ref = [_first(inspect(*a, **k)) for a, k in calls]
    orig = [l.weight.detach().clone() for l in lins]
    a_bits = ctx.setting.a_bits
    best, best_s, history = math.inf, None, []
    state = {}

    def pre(mod, args):
        x = args[0]
        if state.get("in") is not None:
            x = x / state["in"]  # unfoldable earlier scale (runtime divide)
        return (quantize_act(x / state["s"], a_bits),) + tuple(args[1:])

    handles = [l.register_forward_pre_hook(pre) for l in lins]
    try:
        for i in range(n_grid):
            ratio = i / n_grid
            s = x_mean.pow(ratio).clamp(min=1e-4)
            s = s / torch.sqrt(s.max() * s.min())
            state["s"] = s
            state["in"] = prev_s
            for l, W in zip(lins, orig):
                l.weight.data = ctx.setting.wq(W * s.view(1, -1))
            tot, cnt = 0.0, 0
            for (a, k), r in zip(calls, ref):
                d = _first(inspect(*a, **k)).float() - r.float()
                tot += float(d.abs().sum() if loss_mode == "mae" else d.pow(2).sum())
                cnt += d.numel()
            loss = tot / max(cnt, 1)
            history.append(loss)
            if math.isfinite(loss) and loss < best:
                best, best_s = loss, s.clone()
    finally:
        for h in handles:
            h.remove()
        for l, W in zip(lins, orig):
            l.weight.data = W
    if best_s is None:
        raise RuntimeError(f"AWQ: no finite loss for {group.linears} in block {ctx.index}")
    return best_s


def quantize_block(ctx: BlockContext):
    for g in ctx.groups:
        s = _search(ctx, g)
        fold_scale(ctx, g, s)
    return {n: make_qlinear(ctx, n, info={"method": "awq"}) for n in ctx.linears}
