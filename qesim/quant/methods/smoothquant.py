"""SmoothQuant (Xiao et al.; mit-han-lab/smoothquant ``smooth_ln_fcs_llama_like``), quantizer-facts §2.

act_scales[j] = max over calibration tokens of |x_j|; weight_scales[j] = max over the group's
linears and rows of |W[:, j]| (clamp 1e-5); s = (act^alpha / w^(1-alpha)).clamp(1e-5).
Folded into the norm (weight /= s) and the linears' columns (W *= s). Only norm -> linear pairs
are smoothed (q,k,v from input_layernorm; gate,up from post_attention_layernorm); o_proj and
down_proj are not. Then RTN with the setting's quantizers. ``opts['alpha']`` (default 0.5).
For BERT (post-LN, minilm) the norm output is also the residual, so s stays a runtime divide.
"""

from __future__ import annotations

import torch

from qesim.quant.methods import BlockContext, fold_scale, make_qlinear


def quantize_block(ctx: BlockContext):
    alpha = float(ctx.opts.get("alpha", 0.5))
    for g in ctx.groups:
        if not g.from_norm:
            continue
        X = ctx.X[g.linears[0]]
        act = X.abs().amax(0).float()
        wmax = torch.stack([ctx.linears[n].weight.detach().abs().amax(0) for n in g.linears]).amax(0).float()
        wmax = wmax.clamp(min=1e-5)
        s = (act.pow(alpha) / wmax.pow(1 - alpha)).clamp(min=1e-5)
        fold_scale(ctx, g, s)
    return {n: make_qlinear(ctx, n, info={"method": "smoothquant", "alpha": alpha}) for n in ctx.linears}
