"""MoQE: a mixture of quantization experts (arXiv 2508.09204), on a real LM.

*Quantization experts* are whole quantized variants of ONE model made by different methods or
settings (e.g. RTN W4A8, GPTQ W4A16, AWQ W3A16). A lightweight *router* looks at the
full-precision token embeddings of an input and picks the variant that runs it.

What qesim implements (and where it departs from the paper's code, see
``shared/design/seed-systems-facts.md`` §2):

- Router input: the FP model's token embeddings (``embed_tokens``, frozen), as in the code.
- Router: a small MLP (``hidden -> router_hidden -> n_variants``, GELU) on the mean-pooled
  embeddings of the sequence (per-sequence routing) or on each token's embedding (per-token
  routing). The paper's code uses a 2-layer transformer encoder; ours is deliberately tiny and
  its cost is modelled on the NPU (``router_graph``).
- Training labels: the paper's description, ``j* = argmin_j loss_j(x)`` (the code instead trains
  on the mixture's LM loss and fine-tunes each expert's last layer; we do not fine-tune experts).
  Trained on calibration sequences only, with cross-entropy, weight decay, and a fixed epoch
  budget. A confidence margin ``tau`` (route to a non-default variant only when its probability
  beats the default's by ``tau``; default = best single variant on calibration) is chosen on a
  held-out part of the CALIBRATION set, never on evaluation data.
- Per-token option: each token picks a variant; every variant picked by at least one token runs
  over the whole sequence, and each token's loss is taken from its own variant (the code's
  gather of per-token logits, top-1).

Units: losses are natural-log NLL per token; perplexity = exp(mean NLL over all scored tokens).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Optional, Sequence

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = [
    "Router", "RouterConfig", "train_router", "select_margin", "route_with_margin", "ppl_from_nll",
    "per_sequence_results", "per_token_results", "token_nll", "sequence_features", "footprint_and_latency",
    "router_graph",
]


# ----------------------------------------------------------------------------- losses
@torch.no_grad()
def token_nll(model: nn.Module, ids: torch.Tensor, batch_size: int = 8) -> torch.Tensor:
    """Next-token NLL (nats) of every scored position: [N, L-1] float64."""
    out = []
    for i in range(0, len(ids), batch_size):
        b = ids[i: i + batch_size]
        lg = model(input_ids=b, use_cache=False).logits[:, :-1].float()
        nll = F.cross_entropy(lg.reshape(-1, lg.shape[-1]), b[:, 1:].reshape(-1), reduction="none")
        out.append(nll.view(b.shape[0], -1).double())
    return torch.cat(out)


def ppl_from_nll(nll: torch.Tensor) -> float:
    """exp(mean NLL) over all entries."""
    return float(math.exp(float(nll.double().mean())))


@torch.no_grad()
def sequence_features(embed: nn.Module, ids: torch.Tensor, per_token: bool = False) -> torch.Tensor:
    """FP token embeddings as router input: mean-pooled [N, H] (per sequence) or [N, L, H]."""
    e = embed(ids).float()
    return e if per_token else e.mean(1)


# ----------------------------------------------------------------------------- router
@dataclass
class RouterConfig:
    hidden: int = 64
    epochs: int = 200
    lr: float = 3e-3
    weight_decay: float = 1e-2
    seed: int = 0


class Router(nn.Module):
    """MLP router: standardise -> Linear(H, r) -> GELU -> Linear(r, V). Parameters: H*r + r + r*V + V
    (+ 2H standardisation constants)."""

    def __init__(self, in_dim: int, n_variants: int, hidden: int = 64):
        super().__init__()
        self.register_buffer("mu", torch.zeros(in_dim))
        self.register_buffer("sd", torch.ones(in_dim))
        self.fc1 = nn.Linear(in_dim, hidden)
        self.fc2 = nn.Linear(hidden, n_variants)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1((x - self.mu) / self.sd)))

    @property
    def n_params(self) -> int:
        return sum(p.numel() for p in self.parameters())


def train_router(x: torch.Tensor, losses: torch.Tensor, cfg: RouterConfig = RouterConfig()) -> Router:
    """Fit a router on features ``x`` [N, H] with labels argmin_j ``losses`` [N, V] (cross-entropy).

    Full-batch AdamW for ``cfg.epochs`` steps (fixed budget: no early stopping on any eval data).
    """
    torch.manual_seed(cfg.seed)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a tiny model: one thread is faster than two on a busy machine
    try:
        return _fit(x, losses, cfg)
    finally:
        torch.set_num_threads(threads)


def _fit(x: torch.Tensor, losses: torch.Tensor, cfg: RouterConfig) -> Router:
    x = x.float()
    y = losses.argmin(1)
    r = Router(x.shape[1], losses.shape[1], cfg.hidden)
    r.mu.copy_(x.mean(0))
    r.sd.copy_(x.std(0).clamp(min=1e-6))
    opt = torch.optim.AdamW(r.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    # class weights against label imbalance (a variant that is rarely best still gets a voice)
    cnt = torch.bincount(y, minlength=losses.shape[1]).float()
    w = (cnt.sum() / (cnt.clamp(min=1) * len(cnt)))
    for _ in range(cfg.epochs):
        opt.zero_grad()
        loss = F.cross_entropy(r(x), y, weight=w)
        loss.backward()
        opt.step()
    r.eval()
    return r


def route_with_margin(probs: torch.Tensor, default: int, tau: float) -> torch.Tensor:
    """argmax routing, except that a non-default variant must beat the default's probability by
    ``tau`` (tau = 0: plain argmax; tau = 1: always the default). Returns [N] variant indices."""
    top = probs.argmax(-1)
    gain = probs.gather(-1, top.unsqueeze(-1)).squeeze(-1) - probs[..., default]
    return torch.where(gain > tau, top, torch.full_like(top, default))


def select_margin(probs: torch.Tensor, seq_nll: torch.Tensor, default: int,
                  grid: Sequence[float] = tuple(np.linspace(0, 1, 21))) -> float:
    """The margin tau (from ``grid``) with the lowest mean NLL of routed choices on a held-out
    CALIBRATION split (``probs`` [N, V], ``seq_nll`` [N, V] mean NLL per sequence). Ties -> the
    larger tau (closer to the default)."""
    best, best_tau = math.inf, 1.0
    for tau in sorted(grid, reverse=True):
        pick = route_with_margin(probs, default, float(tau))
        v = float(seq_nll.gather(1, pick.unsqueeze(1)).mean())
        if v < best - 1e-12:
            best, best_tau = v, float(tau)
    return best_tau


# ----------------------------------------------------------------------------- results
@dataclass
class MoQEResult:
    variants: list[str]
    ppl_single: dict[str, float]
    ppl_oracle: float
    ppl_routed: float
    ppl_fp: Optional[float] = None
    route_share: dict[str, float] = field(default_factory=dict)
    oracle_share: dict[str, float] = field(default_factory=dict)
    router_acc_eval: float = float("nan")
    tau: float = 0.0
    default: str = ""
    extra: dict = field(default_factory=dict)

    @property
    def best_single(self) -> tuple[str, float]:
        k = min(self.ppl_single, key=self.ppl_single.get)
        return k, self.ppl_single[k]


def per_sequence_results(variants: list[str], cal_x: torch.Tensor, cal_nll: torch.Tensor, ev_x: torch.Tensor,
                         ev_nll: torch.Tensor, cfg: RouterConfig = RouterConfig(), val_frac: float = 0.25,
                         ppl_fp: Optional[float] = None) -> tuple[MoQEResult, Router]:
    """Per-sequence MoQE from per-token NLLs.

    ``cal_nll``/``ev_nll``: [V, N, T] token NLLs of each variant on calibration / evaluation
    sequences; ``cal_x``/``ev_x``: router features [N, H]. The router is fit on the first
    (1 - val_frac) of the calibration sequences, tau is picked on the rest, then the router is
    refit on all calibration sequences with that tau. Evaluation data is only scored.
    """
    cal_seq = cal_nll.mean(2).T  # [N, V]
    ev_seq = ev_nll.mean(2).T
    V = len(variants)
    default = int(cal_seq.mean(0).argmin())  # best single variant on calibration
    n = cal_seq.shape[0]
    n_fit = max(V, int(round(n * (1 - val_frac))))
    r0 = train_router(cal_x[:n_fit], cal_seq[:n_fit], cfg)
    with torch.no_grad():
        pv = F.softmax(r0(cal_x[n_fit:].float()), -1)
    tau = select_margin(pv, cal_seq[n_fit:], default) if n_fit < n else 0.0
    router = train_router(cal_x, cal_seq, cfg)
    with torch.no_grad():
        pe = F.softmax(router(ev_x.float()), -1)
    pick = route_with_margin(pe, default, tau)
    # token NLLs of the routed variant, per sequence
    ev_tok = ev_nll.permute(1, 0, 2)  # [N, V, T]
    routed = ev_tok[torch.arange(len(pick)), pick]  # [N, T]
    oracle_pick = ev_seq.argmin(1)
    oracle = ev_tok[torch.arange(len(pick)), oracle_pick]
    res = MoQEResult(
        variants=list(variants),
        ppl_single={v: ppl_from_nll(ev_nll[i]) for i, v in enumerate(variants)},
        ppl_oracle=ppl_from_nll(oracle), ppl_routed=ppl_from_nll(routed), ppl_fp=ppl_fp,
        route_share={v: float((pick == i).float().mean()) for i, v in enumerate(variants)},
        oracle_share={v: float((oracle_pick == i).float().mean()) for i, v in enumerate(variants)},
        router_acc_eval=float((pick == oracle_pick).float().mean()), tau=tau, default=variants[default],
    )
    return res, router


def per_token_results(variants: list[str], cal_xt: torch.Tensor, cal_nll: torch.Tensor, ev_xt: torch.Tensor,
                      ev_nll: torch.Tensor, cfg: RouterConfig = RouterConfig(), ppl_fp: Optional[float] = None,
                      max_train_tokens: int = 20000) -> tuple[MoQEResult, Router]:
    """Per-token routing option: token t of a sequence takes its loss from the variant its own
    embedding routes it to (features = embedding of the *input* token at position t, labels =
    argmin per-token NLL). Every variant chosen by >= 1 token of a sequence runs over the whole
    sequence: ``extra['variants_run_per_seq']`` is the mean number of such variants (the cost).

    ``cal_xt``/``ev_xt``: [N, T, H] features aligned with the NLL positions [V, N, T]."""
    V, N, T = cal_nll.shape
    X = cal_xt.reshape(-1, cal_xt.shape[-1])
    L = cal_nll.permute(1, 2, 0).reshape(-1, V)
    if len(X) > max_train_tokens:
        g = torch.Generator().manual_seed(cfg.seed)
        idx = torch.randperm(len(X), generator=g)[:max_train_tokens]
        X, L = X[idx], L[idx]
    router = train_router(X, L, cfg)
    default = int(cal_nll.mean((1, 2)).argmin())
    with torch.no_grad():
        pe = F.softmax(router(ev_xt.reshape(-1, ev_xt.shape[-1]).float()), -1)
    pick = pe.argmax(-1).view(ev_xt.shape[0], ev_xt.shape[1])  # [N, T]
    ev = ev_nll.permute(1, 2, 0)  # [N, T, V]
    routed = ev.gather(2, pick.unsqueeze(-1)).squeeze(-1)
    oracle = ev.min(2).values
    runs = torch.stack([(pick == i).any(1) for i in range(V)], 1).float().sum(1).mean()
    res = MoQEResult(
        variants=list(variants), ppl_single={v: ppl_from_nll(ev_nll[i]) for i, v in enumerate(variants)},
        ppl_oracle=ppl_from_nll(oracle), ppl_routed=ppl_from_nll(routed), ppl_fp=ppl_fp,
        route_share={v: float((pick == i).float().mean()) for i, v in enumerate(variants)},
        oracle_share={v: float((ev.argmin(2) == i).float().mean()) for i, v in enumerate(variants)},
        router_acc_eval=float((pick == ev.argmin(2)).float().mean()), tau=0.0, default=variants[default],
        extra={"variants_run_per_seq": float(runs)},
    )
    return res, router


# ----------------------------------------------------------------------------- cost in the graph
def router_graph(hidden: int, router_hidden: int, n_variants: int, tokens: int, per_token: bool):
    """Layer graph of the router on ``tokens`` tokens of one sequence: FP embedding gather (shared
    with the LM, so not re-counted as weights), mean-pool (per sequence) on the SFU, then the MLP
    (fp16) on 1 row (per sequence) or ``tokens`` rows (per token)."""
    from qesim.graph.ir import LayerGraph, LinearOp, SfuOp

    rows = tokens if per_token else 1
    ops = []
    if not per_token:
        ops.append(SfuOp(name="router.mean_pool", func="eltwise_add", rows=tokens, width=hidden, inputs=2))
    ops += [
        SfuOp(name="router.standardise", func="eltwise_mul", rows=rows, width=hidden, inputs=2),
        LinearOp(name="router.fc1", in_features=hidden, out_features=router_hidden, tokens=rows),
        SfuOp(name="router.gelu", func="gelu", rows=rows, width=router_hidden),
        LinearOp(name="router.fc2", in_features=router_hidden, out_features=n_variants, tokens=rows),
        SfuOp(name="router.softmax", func="softmax", rows=rows, width=n_variants),
    ]
    return LayerGraph(name="moqe-router", model="moqe-router", stage="prefill", batch=1, seq_len=tokens,
                      context_len=0, ops=ops)


def footprint_and_latency(model: str, variants: Sequence[tuple[str, str]], route_share: dict[str, float],
                          router_params: int, router_hidden: int, hw_name: str = "flightllm-u280",
                          seq_len: int = 128, per_token: bool = False, variants_run_per_seq: float = 1.0) -> dict:
    """Memory footprint and modelled latency of MoQE on ``hw_name``.

    ``variants`` = [(label, setting)]; every variant's quantized decoder weights are stored (one
    shared FP embedding and lm_head, as in the paper's code where experts share the FP embedding).
    Latency per sequence (prefill of ``seq_len`` tokens) = router + sum_v share_v x latency_v
    (per-token routing: x ``variants_run_per_seq`` variants run). Reported: the router's share of
    that latency, and the overhead relative to the fastest single variant.
    Bytes are from the layer graphs (weights x bits / 8 + the config's metadata)."""
    from qesim.graph.builders import build_graph
    from qesim.hw.loader import load_hw
    from qesim.perf.model import estimate_graph

    hw = load_hw(hw_name)
    out = {"hw": hw_name, "variants": {}}
    lat = {}
    total_layer_bytes = 0.0
    shared_bytes = None
    for label, setting in variants:
        g = build_graph(model, stage="prefill", seq_len=seq_len, setting=setting)
        est = estimate_graph(g, hw)
        lat[label] = est.latency_s
        layer_bytes = 0.0
        for op in g.ops:
            if op.kind == "linear" and op.name.startswith("layer."):
                bits = op.weight_bits
                meta = 0.0
                if bits < 16 and op.group_size != -1:
                    meta = op.out_features * math.ceil(op.in_features / op.group_size) * (16 + (0 if op.weight_symmetric else bits))
                elif bits < 16:
                    meta = op.out_features * 16
                layer_bytes += (op.in_features * op.out_features * bits + meta) / 8.0 * op.repeat
        emb = next(op for op in g.ops if op.kind == "embedding")
        shared_bytes = emb.vocab * emb.hidden * 2.0  # fp16 embedding (tied lm_head) stored once
        total_layer_bytes += layer_bytes
        out["variants"][label] = {"setting": setting, "decoder_weight_bytes": layer_bytes,
                                  "prefill_latency_s": est.latency_s}
    rg = router_graph(emb.hidden, router_hidden, len(variants), seq_len, per_token)
    r_lat = estimate_graph(rg, hw).latency_s
    exp_lat = sum(route_share.get(l, 0.0) * lat[l] for l in lat) * (variants_run_per_seq if per_token else 1.0)
    best = min(lat, key=lat.get)
    out.update(
        router_params=router_params, router_bytes=router_params * 2.0, router_latency_s=r_lat,
        shared_fp_embedding_bytes=shared_bytes,
        footprint_bytes=total_layer_bytes + shared_bytes + router_params * 2.0,
        expected_variant_latency_s=exp_lat, routed_latency_s=exp_lat + r_lat,
        router_overhead_pct=100.0 * r_lat / exp_lat if exp_lat else float("nan"),
        fastest_variant=best, fastest_latency_s=lat[best],
        overhead_vs_fastest_pct=100.0 * (exp_lat + r_lat - lat[best]) / lat[best],
    )
    return out
