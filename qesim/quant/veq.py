"""VEQ (arXiv 2602.01037): modality- and expert-aware quantization of MoE layers, on a synthetic
MoE layer (no MoE vision-language model is available offline here; REAL-MODEL ACCURACY IS NOT
MEASURED by anything in this module).

Two components, each on its own backbone, as in the paper (facts file §1):

- **VEQ-ME** (AWQ backbone): expert importance ``S_i = gamma * N_i^text + beta * N_i^vis``
  (``N_i^mod`` = calibration tokens of that modality routed to expert i; ``beta = T_text/T_vis``
  corrects the token-count imbalance; ``gamma`` = text/vision gradient-magnitude ratio) weights
  the per-expert reconstruction loss ``L(s) = sum_i S_i ||W_i X_i - Q(W_i s)(X_i / s)||_F^2`` of
  the AWQ scale search (the loss in VEQ's method figure). In an MoE layer the AWQ scale ``s`` of
  the experts' input projections is folded into the norm that feeds every expert, so one ``s`` is
  shared by all experts and the weights S_i decide whose error the search protects. The backbone
  is AutoAWQ's MoE search: the same shared scale and grid, scored by the MSE of the whole MoE
  block output (``module2inspect = block_sparse_moe`` in AutoAWQ's Mixtral model), which weighs
  every token alike whatever its modality.
- **VEQ-MA** (GPTQ backbone): per expert, the Hessian ``H = X X^T`` over the tokens routed to
  it becomes ``H~ = X diag(c) X^T`` with ``c_j = p_j * alpha_j`` (p_j = router affinity of token
  j for this expert, alpha_j = gamma for text and 1 for vision tokens). Sparse routing leaves
  rarely-chosen experts with fewer tokens than input channels, so H~ is rank-deficient; it is
  damped with ``lambda = percdamp * mean(diag H~)`` and, when the effective number of weighted
  tokens ``(sum c)^2 / sum c^2`` is below 4x the input width, with the larger ``percdamp_deficient``.

Evaluation metric (both components): the modality- and affinity-weighted output error of the
MoE layer on held-out tokens, ``sum_j g_j sum_{i in topk(j)} p_ij ||(W_i - W^_i) x_j||^2``
divided by ``sum_j g_j sum_i p_ij ||W_i x_j||^2`` with g_j = gamma (text) / 1 (vision): the
premise of VEQ that errors on text tokens cost gamma times more.

Weights are ``[out, in]``; tokens are rows of ``X [T, in]``; losses are squared errors.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import torch

from qesim.quant.primitives import QuantSetting, parse_setting, quantize_weight

__all__ = ["SyntheticMoE", "make_synthetic_moe", "expert_importance", "awq_shared_scale", "gptq_expert",
           "weighted_output_error", "quantize_layer", "run_synthetic"]


# ----------------------------------------------------------------------------- synthetic layer
@dataclass
class SyntheticMoE:
    """An MoE layer (router G [E, d], experts W [E, out, d], top-k) and token sets."""

    G: torch.Tensor
    bias: torch.Tensor  # router bias (plants the expert frequencies)
    W: torch.Tensor
    top_k: int
    calib_x: torch.Tensor
    calib_text: torch.Tensor  # bool [T]
    eval_x: torch.Tensor
    eval_text: torch.Tensor

    @property
    def experts(self) -> int:
        return self.W.shape[0]

    def route(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(top-k expert indices [T, k], their renormalised softmax affinities [T, k])."""
        logits = x @ self.G.T + self.bias
        p = torch.softmax(logits, -1)
        val, idx = p.topk(self.top_k, -1)
        return idx, val / val.sum(-1, keepdim=True)


def make_synthetic_moe(d: int = 64, out: int = 48, experts: int = 8, top_k: int = 2, n_text: int = 1024,
                       n_vis: int = 8192, seed: int = 0, modality_gap: float = 2.0,
                       router_modality: float = 2.0) -> SyntheticMoE:
    """A synthetic MoE layer with planted, checkable structure.

    - Two token modalities with different salient input channels: text tokens have 4 salient
      channels (x3) and almost nothing on a 16-channel band that is salient for vision tokens (x4).
      Each modality lives mostly in its own random rank-d/4 subspace (correlated channels).
      Vision tokens outnumber text tokens n_vis : n_text (8 : 1 by default), as in VLM prompts.
    - A *modality gap*: text tokens are offset by ``+modality_gap * sqrt(d/4) * u`` and vision
      tokens by ``-...`` along a unit direction u that avoids the salient channels (text and image
      embeddings occupy different regions; Liang et al. 2022, "Mind the Gap", arXiv 2203.02053).
    - A top-k softmax router whose first E/2 experts lean towards +u by ``router_modality`` and the
      others towards -u, so experts **specialise by modality** (the MoE-VLM routing analyses in
      LTDR, arXiv 2507.01351, and SMoES, arXiv 2604.23996, find modality-dependent routing whose
      strength varies by layer); ``modality_gap = 0`` gives modality-mixed experts.
    - A router bias ``linspace(1.5, -1.5)`` within each half plants skewed expert frequencies (a hot
      and a rare expert per half).

    Calibration and evaluation sets are independent draws (n_text / n_vis tokens each)."""
    g = torch.Generator().manual_seed(seed)
    half = experts // 2
    text_ch = torch.arange(0, 4)
    vis_ch = torch.arange(d - 16, d)
    r = d // 4
    A_text = torch.randn(r, d, generator=g)
    A_vis = torch.randn(r, d, generator=g)
    u = torch.randn(d, generator=g)
    u[text_ch] = 0.0
    u[vis_ch] = 0.0
    u = u / u.norm()

    def tokens(n: int, text: bool) -> torch.Tensor:
        A = A_text if text else A_vis
        x = torch.randn(n, r, generator=g) @ A + 0.1 * torch.randn(n, d, generator=g)
        x = x + (1.0 if text else -1.0) * modality_gap * math.sqrt(r) * u
        if text:
            x[:, text_ch] *= 3.0  # a few salient text channels
            x[:, vis_ch] *= 0.05  # text carries almost nothing on the vision band
        else:
            x[:, vis_ch] *= 4.0  # vision: a salient band that dominates mean|x| (vision tokens are 8x more)
        return x

    G = torch.randn(experts, d, generator=g) * 0.3
    G[:half] += router_modality * u  # text-leaning experts
    G[half:] -= router_modality * u
    bias = torch.linspace(1.5, -1.5, half).repeat(2)  # planted skew: within each half, expert 0 hot, last rare
    W = torch.randn(experts, out, d, generator=g) / math.sqrt(d)

    def make(nt: int, nv: int):
        x = torch.cat([tokens(nt, True), tokens(nv, False)])
        t = torch.cat([torch.ones(nt, dtype=torch.bool), torch.zeros(nv, dtype=torch.bool)])
        perm = torch.randperm(len(x), generator=g)
        return x[perm], t[perm]

    cx, ct = make(n_text, n_vis)
    ex, et = make(n_text, n_vis)
    return SyntheticMoE(G=G, bias=bias, W=W, top_k=top_k, calib_x=cx, calib_text=ct, eval_x=ex, eval_text=et)


# ----------------------------------------------------------------------------- importance
def expert_importance(idx: torch.Tensor, is_text: torch.Tensor, experts: int, gamma: float,
                      beta: Optional[float] = None) -> torch.Tensor:
    """S_i = gamma * N_i^text + beta * N_i^vis (token-slot counts); beta defaults to T_text/T_vis."""
    n_text = int(is_text.sum())
    n_vis = int((~is_text).sum())
    if beta is None:
        beta = n_text / max(n_vis, 1)
    S = torch.zeros(experts, dtype=torch.float64)
    for k in range(idx.shape[1]):
        S += gamma * torch.bincount(idx[is_text, k], minlength=experts).double()
        S += beta * torch.bincount(idx[~is_text, k], minlength=experts).double()
    return S


def _expert_tokens(layer: SyntheticMoE, x: torch.Tensor, is_text: torch.Tensor):
    """Per expert: (rows of x routed to it, their affinities, their text mask)."""
    idx, p = layer.route(x)
    out = []
    for e in range(layer.experts):
        m = (idx == e)
        rows = m.any(1)
        aff = (p * m).sum(1)[rows]
        out.append((x[rows], aff, is_text[rows]))
    return out, idx


# ----------------------------------------------------------------------------- ME: AWQ-style search
def _scaled_quant(W: torch.Tensor, s: torch.Tensor, setting: QuantSetting) -> torch.Tensor:
    """Q(W_i * s) / s for every expert i (W [E, out, d], s [d])."""
    return torch.stack([quantize_weight(W[e] * s, setting.w_bits, setting.group_size, setting.symmetric) / s
                        for e in range(W.shape[0])])


def awq_shared_scale(layer: SyntheticMoE, setting: QuantSetting, importance: Optional[torch.Tensor] = None,
                     n_grid: int = 20) -> tuple[torch.Tensor, list[float]]:
    """One input-channel scale s shared by all experts (folded into the norm that feeds the MoE
    block, as AutoAWQ does for Mixtral's expert w1/w3 with ``module2inspect = block_sparse_moe``):
    s = x_mean^r for r in {0, 1/n_grid, ...}, normalised by sqrt(max s * min s), with x_mean =
    mean |x| over all calibration tokens entering the block. Returns (best s, loss per grid point).

    ``importance is None`` -- the **AWQ backbone** (AutoAWQ's MoE objective): the mean squared error
    of the whole MoE block output, ``mean_j ||sum_{i in topk(j)} p_ij (W_i - W^_i) x_j||^2``.

    ``importance = S`` -- **VEQ-ME** (the loss in VEQ's method figure):
    ``sum_i S_i ||W_i X_i - W^_i X_i||_F^2`` over the calibration tokens X_i routed to expert i.
    """
    x = layer.calib_x
    idx, p = layer.route(x)
    x_mean = x.abs().mean(0)
    rows = [(idx == e).any(1) for e in range(layer.experts)]
    slots = [[torch.nonzero(idx[:, k] == e).squeeze(1) for e in range(layer.experts)] for k in range(layer.top_k)]
    hist, best, best_s = [], math.inf, None
    for i in range(n_grid):
        s = x_mean.pow(i / n_grid).clamp(min=1e-4)
        s = s / torch.sqrt(s.max() * s.min())
        dW = layer.W - _scaled_quant(layer.W, s, setting)
        if importance is None:
            y = torch.zeros(len(x), layer.W.shape[1])
            for k in range(layer.top_k):
                for e in range(layer.experts):
                    m = slots[k][e]
                    y[m] += p[m, k:k + 1] * (x[m] @ dW[e].T)
            loss = float(y.pow(2).sum(1).mean())
        else:
            loss = sum(float(importance[e]) * float((x[rows[e]] @ dW[e].T).pow(2).sum())
                       for e in range(layer.experts) if importance[e] > 0)
        hist.append(loss)
        if loss < best:
            best, best_s = loss, s
    return best_s, hist


# ----------------------------------------------------------------------------- MA: weighted GPTQ
def gptq_expert(W: torch.Tensor, X: torch.Tensor, c: Optional[torch.Tensor], setting: QuantSetting,
                percdamp: float = 0.01, percdamp_deficient: float = 0.1, blocksize: int = 128) -> tuple[torch.Tensor, dict]:
    """GPTQ of one expert with Hessian X^T diag(c) X (c = None: plain X^T X). Returns (W^, info).

    Same column loop as :func:`qesim.quant.methods.gptq.gptq_quantize`, on the MBQ fake-quant grid of the
    setting (``grid='mbq'``; GPTQ itself now uses its reference grid), with the damping
    raised to ``percdamp_deficient`` when fewer tokens than input channels carry weight (rank
    deficit); an empty expert (no tokens) falls back to RTN."""
    from qesim.quant.methods.gptq import gptq_columns

    n_out, n_in = W.shape
    X = X.double()
    if c is not None:
        keep = c > 0
        X = X[keep] * c[keep].double().sqrt().unsqueeze(1)
    n_eff = float(X.shape[0]) if c is None else float(c[c > 0].sum() ** 2 / (c[c > 0] ** 2).sum().clamp(min=1e-30)) \
        if (c > 0).any() else 0.0
    # rank deficit: fewer weighted tokens (effective count (sum c)^2 / sum c^2) than 4x the input width
    info = {"tokens": int(X.shape[0]), "n_eff": n_eff, "rank_deficient": n_eff < 4 * n_in}
    if X.shape[0] == 0:
        info["status"] = "rtn-fallback: no tokens"
        return setting.wq(W.float()), info
    H = X.T @ X / X.shape[0]
    dead = torch.diagonal(H) == 0
    H[dead, dead] = 1.0
    Wc = W.double().clone()
    Wc[:, dead] = 0.0
    damp = percdamp_deficient if info["rank_deficient"] else percdamp
    info["damp"] = damp
    Hd = H + damp * torch.diagonal(H).mean() * torch.eye(n_in, dtype=torch.float64)
    L, bad = torch.linalg.cholesky_ex(Hd)
    if int(bad):
        info["status"] = "rtn-fallback: Cholesky failed"
        return setting.wq(W.float()), info
    Hinv = torch.linalg.cholesky(torch.cholesky_inverse(L), upper=True)
    Q = gptq_columns(Wc, Hinv, setting, blocksize, grid="mbq")
    info["status"] = "ok"
    return Q.float(), info


# ----------------------------------------------------------------------------- evaluation
def weighted_output_error(layer: SyntheticMoE, Wq: torch.Tensor, x: torch.Tensor, is_text: torch.Tensor,
                          gamma: float) -> float:
    """sum_j g_j sum_{i in topk(j)} p_ij ||(W_i - W^_i) x_j||^2 / sum_j g_j sum_i p_ij ||W_i x_j||^2."""
    idx, p = layer.route(x)
    g = torch.where(is_text, torch.tensor(float(gamma)), torch.tensor(1.0)).double()
    num = den = 0.0
    for k in range(layer.top_k):
        for e in range(layer.experts):
            m = idx[:, k] == e
            if not m.any():
                continue
            xe = x[m].double()
            w = (g[m] * p[m, k].double())
            num += float((w * (xe @ (layer.W[e].double() - Wq[e].double()).T).pow(2).sum(1)).sum())
            den += float((w * (xe @ layer.W[e].double().T).pow(2).sum(1)).sum())
    return num / den


def quantize_layer(layer: SyntheticMoE, method: str, setting: QuantSetting | str, gamma: float = 22.4,
                   beta: Optional[float] = None, **kw) -> tuple[torch.Tensor, dict]:
    """Quantize all experts of ``layer`` on its calibration tokens. ``method``: ``rtn``, ``awq``,
    ``veq-me``, ``gptq``, ``veq-ma``. Returns (W^ [E, out, d], info)."""
    st = parse_setting(setting) if isinstance(setting, str) else setting
    per_expert, idx = _expert_tokens(layer, layer.calib_x, layer.calib_text)
    E = layer.experts
    info: dict = {"tokens_per_expert": [len(t[0]) for t in per_expert]}
    if method == "rtn":
        return torch.stack([st.wq(layer.W[e]) for e in range(E)]), info
    if method in ("awq", "veq-me"):
        S = None
        if method == "veq-me":
            S = expert_importance(idx, layer.calib_text, E, gamma, beta)
            if not float(S.sum()) > 0:
                raise ValueError("veq-me: every expert importance S_i is 0 (no calibration tokens, or beta = 0 "
                                 "because there are no text tokens); ME needs both modalities or an explicit beta")
            S = S / S.sum()  # normalised: the argmin is unchanged, the loss curve is comparable across seeds
            info["importance"] = S.tolist()
        s, hist = awq_shared_scale(layer, st, S, kw.get("n_grid", 20))
        info.update(loss_curve=hist, ratio=hist.index(min(hist)) / len(hist))
        return _scaled_quant(layer.W, s, st), info
    if method in ("gptq", "veq-ma"):
        outs, infos = [], []
        for e, (x, aff, txt) in enumerate(per_expert):
            c = None
            if method == "veq-ma":
                c = aff.double() * torch.where(txt, torch.tensor(float(gamma)), torch.tensor(1.0)).double()
            q, inf = gptq_expert(layer.W[e], x, c, st, kw.get("percdamp", 0.01), kw.get("percdamp_deficient", 0.1))
            outs.append(q)
            infos.append(inf)
        info["experts"] = infos
        return torch.stack(outs), info
    raise ValueError(f"unknown method {method!r}")


CONDITIONS = {
    "specialised": dict(modality_gap=2.0),  # experts specialise by modality (default layer)
    "mixed": dict(modality_gap=0.0),        # no modality gap: every expert sees the same mix
}
METHODS = ("rtn", "awq", "veq-me", "gptq", "veq-ma")
BACKBONE = {"veq-me": "awq", "veq-ma": "gptq"}


def run_synthetic(settings=("W3A16", "W4A16"), seeds=(0, 1, 2), gamma: float = 22.4,
                  conditions: Optional[dict] = None, **layer_kw) -> list[dict]:
    """Weighted output error of rtn / awq / veq-me / gptq / veq-ma on the synthetic layer, for
    each condition (name -> make_synthetic_moe keyword arguments; default: only the default
    layer, named 'specialised'), seed and setting. One row per run."""
    conditions = conditions or {"specialised": {}}
    rows = []
    for cond, ckw in conditions.items():
        for seed in seeds:
            layer = make_synthetic_moe(seed=seed, **{**layer_kw, **ckw})
            idx, _ = layer.route(layer.calib_x)
            half = layer.experts // 2
            ts = torch.bincount(idx[layer.calib_text].flatten(), minlength=layer.experts)
            text_in_text_experts = float(ts[:half].sum() / ts.sum().clamp(min=1))
            for st in settings:
                for m in METHODS:
                    Wq, info = quantize_layer(layer, m, st, gamma=gamma)
                    rows.append(dict(condition=cond, seed=seed, setting=st, method=m,
                                     err=weighted_output_error(layer, Wq, layer.eval_x, layer.eval_text, gamma),
                                     err_calib=weighted_output_error(layer, Wq, layer.calib_x, layer.calib_text, gamma),
                                     min_tokens=min(info["tokens_per_expert"]),
                                     text_slots_in_text_experts=text_in_text_experts,
                                     ratio=info.get("ratio")))
    return rows
