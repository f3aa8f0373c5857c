"""AWQ as llm-awq does it: scale search with MSE loss, then clip search (quantizer-facts §3).

Scale search, per scaling group (q,k,v <- input_layernorm inspected on self_attn; o <- v only
without GQA; gate,up <- post_attention_layernorm inspected on mlp; down <- up inspected on
down_proj): x_mean = mean_t |x|; for ratio in {0, 1/n_grid, ..., (n_grid-1)/n_grid} (n_grid = 20):
s = x_mean^ratio .clamp(1e-4); s /= sqrt(max(s) min(s)); every linear of the group computes
Q_a(x / s) @ Q_w(W * s)^T; loss = mean (out - out_fp)^2 on the inspected module's output
(llm-awq ``auto_scale.py``; ``opts['awq_loss']='mae'`` gives MBQ's default mean |d| instead).
The best s is folded (norm /= s or previous linear rows /= s; W *= s).

Clip search (llm-awq ``auto_clip.py::auto_clip_layer``), after scaling, on the scaled inputs
x / s: for every linear except q_proj / k_proj, per output row and per weight group, try
max_val = org_max * (1 - i / n_grid), i = 0 .. max_shrink * n_grid - 1 (n_grid 20, max_shrink 0.5),
clamp W to [-max_val, max_val], quantize with the setting's quantizer and keep the max_val with
the smallest mean over tokens of (x_g . Wq_g - x_g . W_g)^2; ``n_sample_token`` = 512 tokens
(strided subsample of the calibration inputs). The clamp is applied in place; then every linear
is quantized. ``opts['awq_clip'] = False`` skips it.

Deviations from llm-awq that remain (listed in reports/quant_pareto.md):
* W-A settings: the activation quantizer is inside the search loop (MBQ ``auto_scale_wa``); llm-awq
  is weight-only. Per-output-channel symmetric weights there, so a "group" of the clip search is a
  whole row.
* The search runs on the first ``opts['awq_batches']`` calibration mini-batches (runner default:
  2 sequences of 128 tokens, for the 2-core budget) while llm-awq uses all 128 x 512 tokens; the
  whole calibration set gives x_mean and the clip-search tokens.
* Calibration text is qesim's (pydoc), not pile-val.
Inputs: the FP block inputs (llm-awq convention: no error propagation).
"""

from __future__ import annotations

import math

import torch

from qesim.quant.methods import BlockContext, fold_scale, make_qlinear
from qesim.quant.primitives import quantize_act, quantize_weight

#: llm-awq ``auto_clip_block`` skips these (attention scores are sensitive to q/k clipping)
CLIP_SKIP = ("q_proj", "k_proj", "query", "key")


def _first(y):
    return y[0] if isinstance(y, tuple) else y


@torch.no_grad()
def _search(ctx: BlockContext, group) -> torch.Tensor:
    n_grid = int(ctx.opts.get("awq_n_grid", 20))
    loss_mode = ctx.opts.get("awq_loss", "mse")
    if loss_mode not in ("mse", "mae"):
        raise ValueError(f"awq_loss must be 'mse' or 'mae', got {loss_mode!r}")
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


@torch.no_grad()
def clip_search(W: torch.Tensor, X: torch.Tensor, setting, n_grid: int = 20, max_shrink: float = 0.5,
                n_sample_token: int = 512, oc_batch: int = 256) -> torch.Tensor:
    """llm-awq ``auto_clip_layer``: per output row and weight group the clamp value
    ``max_val [out, n_groups]`` minimising the mean over tokens of the group's squared output
    error. ``W [out, in]``, ``X [T, in]`` (inputs as the linear sees them). Returns ``max_val``;
    the group layout is the setting's (``group_size``; -1 = one group per row; a ragged last
    group, as ``quantize_weight`` does)."""
    W = W.detach().float()
    n_out, n_in = W.shape
    g = setting.group_size if setting.group_size and 0 < setting.group_size < n_in else n_in
    step = max(1, X.shape[0] // n_sample_token)
    Xs = X[::step][:n_sample_token].float()
    bounds = [(s, min(s + g, n_in)) for s in range(0, n_in, g)]
    out = torch.empty(n_out, len(bounds))
    for j, (a, b) in enumerate(bounds):
        xg = Xs[:, a:b]  # [n, g]
        for o0 in range(0, n_out, oc_batch):
            w = W[o0:o0 + oc_batch, a:b]  # [oc, g]
            org_max = w.abs().amax(1, keepdim=True)  # [oc, 1]
            org_out = xg @ w.t()  # [n, oc]
            best_err = torch.full((w.shape[0],), math.inf)
            best_max = org_max.squeeze(1).clone()
            for i in range(int(max_shrink * n_grid)):
                max_val = org_max * (1 - i / n_grid)
                cur = torch.clamp(w, -max_val, max_val)
                q = quantize_weight(cur, setting.w_bits, -1, setting.symmetric)
                err = (xg @ q.t() - org_out).pow(2).mean(0)  # [oc]
                better = err < best_err
                best_err = torch.where(better, err, best_err)
                best_max = torch.where(better, max_val.squeeze(1), best_max)
            out[o0:o0 + oc_batch, j] = best_max
    return out


def apply_clip(W: torch.Tensor, max_val: torch.Tensor, group_size: int) -> torch.Tensor:
    """Clamp ``W [out, in]`` per row and group to ``[-max_val, max_val]`` (llm-awq ``apply_clip``)."""
    n_in = W.shape[1]
    g = group_size if group_size and 0 < group_size < n_in else n_in
    out = W.clone()
    for j, a in enumerate(range(0, n_in, g)):
        m = max_val[:, j:j + 1].to(W.dtype)
        out[:, a:a + g] = torch.clamp(W[:, a:a + g], -m, m)
    return out


def quantize_block(ctx: BlockContext):
    scaled_X = {}
    for g in ctx.groups:
        s = _search(ctx, g)
        fold_scale(ctx, g, s)
        for n in g.linears:
            X = ctx.X[n]
            tot = ctx.in_scales.get(n)  # unfoldable groups keep the (cumulative) scale at runtime
            scaled_X[n] = (X / tot) if tot is not None else (X / s)
    if ctx.opts.get("awq_clip", True) and ctx.setting.w_bits < 16:
        n_grid = int(ctx.opts.get("awq_n_grid", 20))
        for n, lin in ctx.linears.items():
            if any(n == k or n.endswith(k) for k in CLIP_SKIP):
                continue
            X = scaled_X.get(n, ctx.X[n])
            mv = clip_search(lin.weight, X, ctx.setting, n_grid=n_grid)
            lin.weight.data = apply_clip(lin.weight.detach(), mv, ctx.setting.group_size)
    return {n: make_qlinear(ctx, n, info={"method": "awq"}) for n in ctx.linears}
