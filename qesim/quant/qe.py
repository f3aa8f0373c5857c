"""Quant Experts (QE; Jia et al., arXiv 2602.24059) for one ``nn.Linear``, in torch.

Conventions (same as :mod:`qesim.quant.lowrank`): ``W [out, in]``, ``X [T, in]``,
``y = X W^T + b``; an adapter is ``A [in, r]``, ``B [r, out]`` and adds ``(x A) B``.

Pipeline of :func:`fit_qe` (paper section / algorithm in brackets)
-----------------------------------------------------------------
1. **Important channels** [Eq. 1-2]: ``w = mean_out |W|`` (``[in]``); per token
   ``A_t = top-k(|x_t| * w)``.
2. **Dependence partitioning** [Eq. 3, Alg. 1]: count how often each channel is important
   (``f_c = m_c / T``); sort the channels that occurred by count (descending, ties by index);
   the first ``k`` are token-independent ``C_s``, the next ``Nr*k`` token-dependent ``C_r``.
3. **Shared expert** [Sec. 3.2, Alg. 3 / Sec. 7.1]:
   * channel-wise scaling ``omega`` (``[in]``, 1 outside ``C_s``, ``x_c / min_{C_s} x`` on ``C_s``
     with ``x = mean_t |X|``): the layer sees ``x' = x / omega`` and ``W' = W diag(omega)``
     (same product, smaller activation outliers before per-token quantization);
   * the ``C_s`` columns are **exempted from weight quantization**: ``Wq' = Q(W' * (1 - 1_{C_s}))``,
     i.e. those columns are *zero* in the deployed quantized weight, and their full weights are
     part of the error ``E_q = W' - Wq'`` that the shared adapter must reconstruct;
   * shared adapter = whitening SVD of ``E_q`` w.r.t. ``X' = X / omega`` (rank ``r_s``);
     residual ``E_S = E_q - (A_s B_s)^T``.
4. **Routed experts** [Sec. 3.3, Alg. 2]: co-occurrence ``O [T, |C_r|]`` [Eq. 7]; NPMI
   similarity [Eq. 8-10]; normalized Laplacian (scipy); eigenvectors 2..Nr+1, rows scaled to
   unit length (NJW); k-means (scikit-learn) into ``Nr`` clusters.  Per cluster ``γ``: weighting
   ``ω = (x_γ / min x_γ) ⊙ x`` (boost on γ), normalised by ``sqrt(min ω max ω)``; weighted SVD of
   ``E_S`` of rank ``r_r``.  Router ``R [in, Nr]``: ``R[:, i] = mean_out |E_S - (A_i B_i)^T|``.
5. **Inference** [Eq. 5-6, Fig. 5]: ``x' = x / omega``; ``xq = Qa(x')`` (per-token dynamic);
   ``y = xq Wq'^T + b + (xq A_s) B_s + (xq A_{i*}) B_{i*}``, ``i* = argmin_i (|xq| R)_i``.
   All adapters and the router consume the SAME quantized activation ``xq`` (as LQER does).
6. **Refinement** (optional) [Sec. 7.2]: only routed experts and router are trained,
   layer-wise, on ``L = α·L_reg + β·L_cls`` (AdamW, no weight decay, cosine schedule).

Choices where the paper is ambiguous (see also the module-level notes in each function):

* Alg. 3 step 7 writes ``E_q = W_f - Q(W diag(1 - 1_Cs))`` but whitens ``Ω^-1 X``.  We read it in
  the scaled domain (``E_q = W Ω - Q(W Ω (1 - 1_Cs))``; the quantized part is unchanged because
  ``Ω = 1`` wherever the mask is 1).  In exact arithmetic the whitening SVD is invariant to this
  scaling, so Ω only matters for the activation quantizer.
* "Exempted from direct quantization and reconstructed by a low-rank adapter": the exempted
  columns are **not** stored in high precision: they are zero in ``Wq'`` and carried only by the
  rank-``r_s`` shared adapter (no extra storage beyond the adapter).
* Deployed cost of ``omega``: each QE linear divides its own input by its own ``omega`` before its
  own activation quantizer. ``omega`` depends on the linear's ``C_s`` and differs between linears
  that share an input (q/k/v; gate/up — measured C_s overlap of q/k/v on SmolLM2 ~28/32), so it
  does NOT fold into the shared RMSNorm weight, and each of those linears needs its own quantized
  copy of the input. The exported graph therefore charges, per QE linear, one SFU
  ``eltwise_mul`` over its input and one ``quantize`` op (``qesim.graph.builders.build_graph``,
  ``input_scaling``; ``qesim.quant.export.has_input_scaling``). Folds that would be exact but are
  not applied: one of q/k/v (into the norm weight) and down_proj's omega (into up_proj's output
  rows). ``QELinear.deploy_notes()`` reports it. Design note: ``docs/quant-deployment.md``.
* Alg. 2 step 15 contains a stray ``S^-1`` (no ``S`` is defined in Alg. 2); we use
  ``L_RB = V_r^T diag(1/ω)`` so that ``L_RA L_RB`` approximates ``E_S`` (a weighted SVD).
* NPMI with ``p(i,j) = 0`` is ``-1`` (never co-occur), with ``p(i,j) = 1`` is ``1``; the affinity
  for spectral clustering is ``max(NPMI, 0)`` with a zero diagonal plus a tiny floor (1e-6) so
  the graph stays connected (a Laplacian needs non-negative weights; the paper does not say how
  negative NPMI is handled).
* Router input is ``|xq|`` (the quantized, scaled activation the adapters see).
* L_cls: the target distribution ``P`` (from the per-expert L1 distances ``d``) is detached, so
  L_cls trains only the router; L_reg trains only the best expert per token (``min_i d_i``).
* Refinement keeps the refined parameters only if the deployed calibration MSE does not
  increase (reported in ``QELinear.refine_report``).
* Ablations (Table 4) keep the configured ranks of the remaining parts (``se_only`` = shared
  expert of rank ``r_s`` alone; ``re_only`` = plain RTN weight, no exemption/scaling, routed
  experts on ``E = W - Q(W)``).

Measured behaviour (``docs/quant-deployment.md``, ``reports/quant_pareto.md``): on real SmolLM2-135M
layers QE < L2QER(rank 64) < RTN in relative output error, but the routed experts specialise
little (router picks the truly best expert on 24-54% of tokens, chance 12.5%; random routing
costs only 1-4%), because the Alg. 2 weighting boosts a cluster only by its spread around the
cluster minimum; an ASER-style whitened SVD of rank 64 beats QE on most layers tried.  On
planted data with heterogeneous cluster magnitudes the experts do specialise (router 0.99).
"""

from __future__ import annotations

import logging
import math
import warnings
from dataclasses import dataclass, field
from typing import Callable, Optional

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from qesim.quant.lowrank import weighted_svd, whitened_svd

log = logging.getLogger(__name__)

ABLATIONS = ("full", "se_only", "re_only", "se_random_routing", "se_random_clustering")

__all__ = [
    "ABLATIONS",
    "QEConfig",
    "QELinear",
    "fit_qe",
    "important_channels",
    "partition_channels",
    "cooccurrence",
    "npmi_similarity",
    "spectral_clusters",
    "build_shared_expert",
    "build_routed_experts",
    "refine_qe",
]


def _quantize_act(x: torch.Tensor, bits: int) -> torch.Tensor:
    from qesim.quant.primitives import quantize_act

    return quantize_act(x, bits)


@dataclass
class QEConfig:
    """Hyper-parameters of QE (defaults = the paper's: k=32, Nr=8, r_s=r_r=32, τ=0.5, α=1, β=0.05,
    AdamW lr 1e-4; the paper refines 16 epochs x 100 iterations, our default budget is smaller)."""

    k: int = 32
    n_routed: int = 8
    shared_rank: int = 32
    routed_rank: int = 32
    ablation: str = "full"
    refine: bool = False
    refine_steps: int = 200
    refine_lr: float = 1e-4
    refine_batch: int = 256
    tau: float = 0.5
    alpha: float = 1.0
    beta: float = 0.05
    seed: int = 0
    damp: float = 0.01  # whitening damping (fraction of mean diag of X^T X)
    se_exempt: bool = True  # paper: C_s columns exempted from weight quantization
    se_scale: bool = True  # paper: channel-wise scaling of C_s
    affinity_floor: float = 1e-6
    route_log_tokens: int = 65536  # routing decisions kept for touched_per_batch()

    def __post_init__(self):
        if self.ablation not in ABLATIONS:
            raise ValueError(f"ablation must be one of {ABLATIONS}, got {self.ablation!r}")
        if self.k < 1 or self.n_routed < 0 or self.shared_rank < 0 or self.routed_rank < 0:
            raise ValueError("k >= 1 and n_routed, ranks >= 0 required")

    @property
    def use_shared(self) -> bool:
        return self.ablation != "re_only" and self.shared_rank > 0

    @property
    def use_routed(self) -> bool:
        return self.ablation != "se_only" and self.n_routed > 0 and self.routed_rank > 0


# ---------------------------------------------------------------------------------------------
# Step 1-2: important channels and dependence partitioning (Eq. 1-3, Alg. 1)


def important_channels(W: torch.Tensor, X: torch.Tensor, k: int) -> torch.Tensor:
    """Per-token important channels (Eq. 1-2): ``top-k(|x_t| ⊙ mean_out|W|)``.

    ``W [out, in]``, ``X [T, in]`` -> LongTensor ``[T, min(k, in)]`` of channel indices.
    """
    w = W.detach().float().abs().mean(0)  # [in]
    k = min(int(k), W.shape[1])
    scores = X.detach().float().abs() * w[None, :]
    return torch.topk(scores, k, dim=1).indices


def partition_channels(topk_idx: torch.Tensor, in_features: int, k: int, n_routed: int):
    """Alg. 1: split the channels that occur in ``topk_idx [T, k']`` by frequency.

    Returns ``(C_s, C_r, freq)``: LongTensors of the ``<= k`` most frequent channels, the next
    ``<= n_routed*k`` channels, and ``freq [in]`` = fraction of tokens each channel is important
    for (Eq. 3; ``f_c = k m_c / sum m = m_c / T``).  Channels that never occur are in neither set.
    """
    T = topk_idx.shape[0]
    counts = torch.bincount(topk_idx.reshape(-1), minlength=in_features)
    occurred = torch.nonzero(counts > 0).reshape(-1)
    order = torch.sort(-counts[occurred], stable=True).indices
    ranked = occurred[order]
    C_s = ranked[:k]
    C_r = ranked[k : k + n_routed * k]
    return C_s, C_r, counts.float() / max(T, 1)


def cooccurrence(topk_idx: torch.Tensor, C_r: torch.Tensor, in_features: int) -> torch.Tensor:
    """Eq. 7: ``O[t, i] = 1(C_r[i] is important for token t)``; bool ``[T, |C_r|]``."""
    T = topk_idx.shape[0]
    member = torch.zeros(T, in_features, dtype=torch.bool)
    member.scatter_(1, topk_idx, True)
    return member[:, C_r]


def npmi_similarity(O: torch.Tensor) -> np.ndarray:
    """Eq. 8-10: NPMI between columns of the co-occurrence matrix ``O [T, m]`` -> ``[m, m]``.

    ``S_ij = log(p_ij / (p_i p_j)) / -log p_ij`` in ``[-1, 1]``; ``p_ij = 0`` -> ``-1``,
    ``p_ij = 1`` -> ``1``.  The diagonal is 1 where ``p_i > 0``.
    """
    Of = O.detach().double().numpy()
    T = max(Of.shape[0], 1)
    p = Of.mean(0)
    pij = (Of.T @ Of) / T
    S = np.full(pij.shape, -1.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        pmi = np.log(pij) - np.log(p)[:, None] - np.log(p)[None, :]
        denom = -np.log(pij)
        ok = (pij > 0) & (pij < 1)
        S[ok] = pmi[ok] / denom[ok]
    S[pij >= 1] = 1.0
    return np.clip(S, -1.0, 1.0)


def spectral_clusters(S: np.ndarray, n_clusters: int, seed: int = 0, floor: float = 1e-6) -> np.ndarray:
    """Cluster channels from an NPMI similarity ``S [m, m]`` (Alg. 2 lines 5-8).

    Affinity ``max(S, 0)`` (zero diagonal, ``floor`` added off-diagonal); normalized Laplacian
    ``I - D^-1/2 S D^-1/2`` (``scipy.sparse.csgraph.laplacian(normed=True)``); eigenvectors
    ``u_2..u_{n+1}`` of the smallest eigenvalues (``numpy.linalg.eigh``), as the paper says;
    each row scaled to unit length (Ng-Jordan-Weiss; without it low-degree channels collapse
    towards the origin and k-means mis-assigns them — measured ARI 0.69 vs 1.0 on planted data);
    ``sklearn.cluster.KMeans(n_clusters, n_init=10, random_state=seed)``.
    Returns int labels ``[m]`` in ``0..n'-1`` with no empty label (``n' <= n_clusters``).
    """
    from scipy.sparse.csgraph import laplacian
    from sklearn.cluster import KMeans

    m = S.shape[0]
    if m == 0:
        return np.zeros(0, dtype=int)
    n_clusters = max(1, min(int(n_clusters), m))
    if n_clusters == m:
        return np.arange(m)
    if n_clusters == 1:
        return np.zeros(m, dtype=int)
    Aff = np.clip(S, 0.0, None) + floor
    np.fill_diagonal(Aff, 0.0)
    Lap = laplacian(Aff, normed=True)
    _, vecs = np.linalg.eigh(Lap)
    emb = vecs[:, 1 : n_clusters + 1]
    emb = emb / np.maximum(np.linalg.norm(emb, axis=1, keepdims=True), 1e-12)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ConvergenceWarning when fewer distinct points than clusters
        labels = KMeans(n_clusters=n_clusters, n_init=10, random_state=seed).fit_predict(emb)
    _, labels = np.unique(labels, return_inverse=True)  # drop empty labels
    return labels.astype(int)


# ---------------------------------------------------------------------------------------------
# Step 3: shared expert (Alg. 3)


def build_shared_expert(
    W: torch.Tensor,
    X: torch.Tensor,
    C_s: torch.Tensor,
    w_quant: Callable[[torch.Tensor], torch.Tensor],
    rank: int,
    damp: float = 0.01,
    exempt: bool = True,
    scale: bool = True,
    factors=None,
):
    """Alg. 3.  Returns ``(omega [in], Wq [out, in], A_s [in, r], B_s [r, out], E_S [out, in])``.

    ``omega`` is the input divisor (``x' = x / omega``), ``Wq`` the quantized *scaled* weight
    (columns ``C_s`` zero when ``exempt``), ``E_S = W diag(omega) - Wq - (A_s B_s)^T`` the residual
    error handed to the routed experts.  ``rank = 0`` gives empty factors and ``E_S = E_q``.

    The whitening SVD is computed in the unscaled domain (``E_q diag(1/omega)`` against ``X``,
    then ``A_s = diag(omega) A``), which is the same problem as whitening ``X / omega`` up to the
    damping term, and lets linears that share an input (q/k/v, gate/up) share one Cholesky factor
    (``factors = whitening(X, damp)``; :func:`fit_qe` caches it).
    """
    out_f, in_f = W.shape
    W = W.detach().float()
    X = X.detach().float()
    omega = torch.ones(in_f)
    if scale and C_s.numel():
        xm = X.abs().mean(0).clamp(min=1e-8)
        omega[C_s] = xm[C_s] / xm[C_s].min()
    Ws = W * omega[None, :]
    mask = torch.ones(in_f)
    if exempt and C_s.numel():
        mask[C_s] = 0.0
    Wq = w_quant(Ws * mask[None, :]).float()
    E_q = Ws - Wq
    A, B = whitened_svd(E_q / omega[None, :], X, rank, damp=damp, factors=factors)
    A = omega[:, None] * A
    E_S = E_q - (A @ B).t()
    return omega, Wq, A, B, E_S


# ---------------------------------------------------------------------------------------------
# Step 4: routed experts (Alg. 2)


def build_routed_experts(E_S: torch.Tensor, Xs: torch.Tensor, C_r: torch.Tensor, labels, rank: int):
    """Alg. 2 lines 9-16.  ``E_S [out, in]`` residual error, ``Xs [T, in]`` (scaled) calibration
    inputs, ``C_r`` channel indices with cluster ``labels`` (same length).

    Returns ``A_r [Nr, in, r]``, ``B_r [Nr, r, out]``, ``R [in, Nr]`` (router), ``omegas [Nr, in]``.
    """
    out_f, in_f = E_S.shape
    labels = torch.as_tensor(np.asarray(labels), dtype=torch.long)
    n = int(labels.max()) + 1 if labels.numel() else 0
    xm = Xs.detach().float().abs().mean(0).clamp(min=1e-4)  # Mean_row(|X|), as LQER's clamp
    As, Bs, Rs, Ws = [], [], [], []
    for i in range(n):
        g = C_r[labels == i]
        om = xm.clone()
        om[g] = xm[g] * (xm[g] / xm[g].min())
        om = om / torch.sqrt(om.min() * om.max())
        A, B = weighted_svd(E_S, om, rank)
        resid = E_S - (A @ B).t()
        As.append(A)
        Bs.append(B)
        Rs.append(resid.abs().mean(0))
        Ws.append(om)
    if n == 0:
        r = 0
        return (torch.zeros(0, in_f, r), torch.zeros(0, r, out_f), torch.zeros(in_f, 0), torch.zeros(0, in_f))
    return torch.stack(As), torch.stack(Bs), torch.stack(Rs, dim=1), torch.stack(Ws)


# ---------------------------------------------------------------------------------------------
# The deployed module


class QELinear(nn.Module):
    """A QE-quantized linear: ``y = Qa(x/ω) Wq^T + b + shared(xq) + routed_{i*(xq)}(xq)``.

    Buffers / parameters (shapes): ``weight_q [out, in]`` (fake-quantized, scaled domain, C_s
    columns zero), ``bias [out]`` or None, ``omega [in]`` (input divisor), ``A_s [in, r_s]``,
    ``B_s [r_s, out]``, ``A_r [Nr, in, r_r]``, ``B_r [Nr, r_r, out]``, ``router [in, Nr]``,
    ``routing_counts`` LongTensor ``[Nr]`` (accumulated over forwards).  Inputs ``x [..., in]``.
    """

    def __init__(
        self,
        weight_q: torch.Tensor,
        bias: Optional[torch.Tensor],
        omega: torch.Tensor,
        A_s: torch.Tensor,
        B_s: torch.Tensor,
        A_r: torch.Tensor,
        B_r: torch.Tensor,
        router: torch.Tensor,
        a_bits: int = 16,
        random_routing: bool = False,
        seed: int = 0,
        route_log_tokens: int = 65536,
    ):
        super().__init__()
        self.out_features, self.in_features = weight_q.shape
        self.a_bits = int(a_bits)
        self.random_routing = bool(random_routing)
        self.register_buffer("weight_q", weight_q.detach().float().clone())
        self.register_buffer("bias", None if bias is None else bias.detach().float().clone())
        self.register_buffer("omega", omega.detach().float().clone())
        self.register_buffer("A_s", A_s.detach().float().clone())
        self.register_buffer("B_s", B_s.detach().float().clone())
        self.A_r = nn.Parameter(A_r.detach().float().clone(), requires_grad=False)
        self.B_r = nn.Parameter(B_r.detach().float().clone(), requires_grad=False)
        self.router = nn.Parameter(router.detach().float().clone(), requires_grad=False)
        self.register_buffer("routing_counts", torch.zeros(A_r.shape[0], dtype=torch.long))
        self._rng = torch.Generator().manual_seed(int(seed))
        self._route_log: list[torch.Tensor] = []
        self._route_log_tokens = int(route_log_tokens)
        # filled by fit_qe (informational)
        self.C_s: Optional[torch.Tensor] = None
        self.C_r: Optional[torch.Tensor] = None
        self.cluster_labels: Optional[np.ndarray] = None
        self.ablation: str = "full"
        self.refine_report: Optional[dict] = None

    # -- sizes
    @property
    def n_routed(self) -> int:
        return int(self.A_r.shape[0])

    @property
    def shared_rank(self) -> int:
        return int(self.A_s.shape[1])

    @property
    def routed_rank(self) -> int:
        return int(self.A_r.shape[2]) if self.n_routed else 0

    # -- pieces of the forward (all on 2-D inputs)
    def quant_input(self, x2: torch.Tensor) -> torch.Tensor:
        """``[T, in]`` -> ``xq = Qa(x / omega)`` (what the base GEMM, adapters and router see)."""
        return _quantize_act(x2 / self.omega, self.a_bits)

    def base_and_shared(self, xq: torch.Tensor) -> torch.Tensor:
        """Quantized GEMM + bias + shared adapter, ``[T, out]``."""
        y = F.linear(xq, self.weight_q, self.bias)
        if self.shared_rank:
            y = y + (xq @ self.A_s) @ self.B_s
        return y

    def router_scores(self, xq: torch.Tensor) -> torch.Tensor:
        """``l = |xq| R`` ``[T, Nr]`` (Eq. 6: the predicted error of each routed expert)."""
        return xq.abs() @ self.router

    def route(self, xq: torch.Tensor) -> torch.Tensor:
        """Expert index per token ``[T]``: ``argmin_i l_i`` (or uniform random for the ablation)."""
        if self.random_routing:
            return torch.randint(self.n_routed, (xq.shape[0],), generator=self._rng).to(xq.device)
        return self.router_scores(xq).argmin(dim=1)

    def expert_outputs(self, xq: torch.Tensor) -> torch.Tensor:
        """Every routed expert's output on every token, ``[T, Nr, out]`` (analysis/refinement)."""
        h = torch.einsum("ti,eir->ter", xq, self.A_r)
        return torch.einsum("ter,ero->teo", h, self.B_r)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shp = x.shape
        dt = x.dtype
        x2 = x.reshape(-1, self.in_features).float()
        xq = self.quant_input(x2)
        y = self.base_and_shared(xq)
        if self.n_routed:
            idx = self.route(xq)
            routed = torch.zeros_like(y)
            for e in torch.unique(idx).tolist():
                sel = torch.nonzero(idx == e).reshape(-1)
                routed[sel] = (xq[sel] @ self.A_r[e]) @ self.B_r[e]
            y = y + routed
            with torch.no_grad():
                self.routing_counts += torch.bincount(idx, minlength=self.n_routed)
                self._log_routes(idx.detach())
        return y.reshape(*shp[:-1], self.out_features).to(dt)

    # -- routing statistics
    def _log_routes(self, idx: torch.Tensor) -> None:
        self._route_log.append(idx.clone())
        total = sum(t.numel() for t in self._route_log)
        while self._route_log and total - self._route_log[0].numel() >= self._route_log_tokens:
            total -= self._route_log.pop(0).numel()

    def reset_routing_counts(self) -> None:
        """Zero ``routing_counts`` and forget the logged routing decisions."""
        self.routing_counts.zero_()
        self._route_log.clear()

    def touched_per_batch(self, batch_tokens: int = 128) -> Optional[float]:
        """Mean number of distinct routed experts used by ``batch_tokens`` consecutive tokens,
        measured on the routing decisions of the last forwards (up to ``route_log_tokens`` tokens,
        flattened in call order, ``[..., in]`` inputs flattened row-major).  Only full batches
        count unless fewer than ``batch_tokens`` tokens were seen.  None if nothing was routed."""
        if not self._route_log or not self.n_routed:
            return None
        idx = torch.cat(self._route_log)
        n_full = idx.numel() // batch_tokens
        if n_full == 0:
            return float(torch.unique(idx).numel())
        chunks = idx[: n_full * batch_tokens].reshape(n_full, batch_tokens)
        oh = torch.zeros(n_full, self.n_routed, dtype=torch.bool)
        oh.scatter_(1, chunks, True)
        return float(oh.sum(1).float().mean())

    def adapter_spec(self, batch_tokens: int = 128) -> dict:
        """Fields of :class:`qesim.graph.ir.LowRankAdapters` for this layer (adapters in 16 bit);
        includes ``routing`` (:class:`RoutingStats`) when tokens have been routed."""
        spec = {
            "shared_rank": self.shared_rank,
            "routed_experts": self.n_routed,
            "routed_rank": self.routed_rank,
            "active_per_token": 1,
            "router": bool(self.n_routed) and not self.random_routing,
            "adapter_bits": 16,
        }
        if self.n_routed and int(self.routing_counts.sum()) > 0:
            spec["routing"] = {
                "tokens_per_expert": [int(c) for c in self.routing_counts.tolist()],
                "batch_tokens": int(batch_tokens),
                "touched_per_batch": self.touched_per_batch(batch_tokens),
            }
        return spec

    def deploy_notes(self) -> dict:
        """Deployed-form costs not captured by ``adapter_spec``: the input scaling vector
        (``in`` elements stored; one multiply per input element and a quantize pass of its own,
        charged by the exported graph, see the module doc) and the number of weight columns
        exempted from quantization (zero in ``Wq``, carried by the shared adapter; no extra storage)."""
        return {
            "input_scale": bool((self.omega != 1).any()),
            "exempt_channels": int((self.weight_q.abs().sum(0) == 0).sum()),
        }

    def extra_repr(self) -> str:
        return (
            f"in={self.in_features}, out={self.out_features}, a_bits={self.a_bits}, "
            f"shared_rank={self.shared_rank}, routed={self.n_routed}x{self.routed_rank}, "
            f"random_routing={self.random_routing}"
        )


# ---------------------------------------------------------------------------------------------
# Refinement (Sec. 7.2)


def _calib_mse(qel: QELinear, Xq: torch.Tensor, base: torch.Tensor, y: torch.Tensor, chunk: int = 4096) -> float:
    """Deployed-form calibration MSE (router-chosen expert), mean over tokens and outputs."""
    tot = 0.0
    with torch.no_grad():
        for s in range(0, Xq.shape[0], chunk):
            xq = Xq[s : s + chunk]
            idx = qel.route(xq) if not qel.random_routing else torch.zeros(xq.shape[0], dtype=torch.long)
            out = base[s : s + chunk].clone()
            for e in torch.unique(idx).tolist():
                sel = idx == e
                out[sel] += (xq[sel] @ qel.A_r[e]) @ qel.B_r[e]
            tot += float(((out - y[s : s + chunk]) ** 2).sum())
    return tot / (Xq.shape[0] * y.shape[1])


def _refine_objective(qel, xq, base, y, tau, alpha, beta):
    out_e = base[:, None, :] + qel.expert_outputs(xq)  # [b, Nr, out]
    d = (out_e - y[:, None, :]).abs().sum(-1)  # [b, Nr]   d_i = ||ŷ_i - y||_1
    l_reg = d.min(dim=1).values.mean()
    dd = d.detach()
    P = F.softmax(-((dd - dd.mean(1, keepdim=True)) / (dd.std(1, keepdim=True) + 1e-8)) / tau, dim=1)
    lg = qel.router_scores(xq)
    logQ = F.log_softmax(-(lg - lg.mean(1, keepdim=True)) / tau, dim=1)
    kl = (P * (torch.log(P.clamp(min=1e-12)) - logQ)).sum(1).mean()
    l_cls = tau**2 * kl
    return alpha * l_reg + beta * l_cls, l_reg, l_cls


def refine_qe(qel: QELinear, X: torch.Tensor, W: torch.Tensor, bias: Optional[torch.Tensor], cfg: QEConfig) -> dict:
    """Sec. 7.2 layer-wise refinement of the routed experts and the router (in place).

    Target ``y = X W^T + b`` (full precision); inputs pass the deployed quantizer.  Per token
    ``d_i = ||ŷ_i - y||_1``; ``L_reg = mean_t min_i d_i``; ``L_cls = τ² KL(P || Q)`` with
    ``P = softmax(-z(d)/τ)`` (z = standardised over experts, detached) and
    ``Q = softmax(-(l - mean l)/τ)``, ``l = |xq| R``; ``L = α L_reg + β L_cls``.  AdamW
    (``cfg.refine_lr``, weight_decay 0), cosine annealing over ``cfg.refine_steps`` steps of
    ``cfg.refine_batch`` random calibration tokens.  The refined parameters are kept only if the
    deployed calibration MSE did not increase.  Returns a report dict (also ``qel.refine_report``).
    """
    if qel.n_routed == 0 or cfg.refine_steps <= 0:
        rep = {"skipped": True}
        qel.refine_report = rep
        return rep
    X = X.detach().float()
    with torch.no_grad():
        y = F.linear(X, W.detach().float(), None if bias is None else bias.detach().float())
        Xq = qel.quant_input(X)
        base = qel.base_and_shared(Xq)
    saved = {n: p.detach().clone() for n, p in (("A_r", qel.A_r), ("B_r", qel.B_r), ("router", qel.router))}
    before = _calib_mse(qel, Xq, base, y)
    params = [qel.A_r, qel.B_r, qel.router]
    for p in params:
        p.requires_grad_(True)
    opt = torch.optim.AdamW(params, lr=cfg.refine_lr, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=cfg.refine_steps)
    gen = torch.Generator().manual_seed(cfg.seed + 1)
    T = X.shape[0]
    bs = min(cfg.refine_batch, T)

    def full_obj():
        with torch.no_grad():
            tot = [0.0, 0.0, 0.0]
            for s in range(0, T, 2048):
                L, a, b = _refine_objective(
                    qel, Xq[s : s + 2048], base[s : s + 2048], y[s : s + 2048], cfg.tau, cfg.alpha, cfg.beta
                )
                n = min(2048, T - s)
                for j, v in enumerate((L, a, b)):
                    tot[j] += float(v) * n
            return [v / T for v in tot]

    obj_before = full_obj()
    hist = []
    for step in range(cfg.refine_steps):
        sel = torch.randperm(T, generator=gen)[:bs]
        L, l_reg, l_cls = _refine_objective(qel, Xq[sel], base[sel], y[sel], cfg.tau, cfg.alpha, cfg.beta)
        opt.zero_grad(set_to_none=True)
        L.backward()
        opt.step()
        sched.step()
        hist.append(float(L.detach()))
    for p in params:
        p.requires_grad_(False)
    obj_after = full_obj()
    after = _calib_mse(qel, Xq, base, y)
    accepted = after <= before
    if not accepted:
        with torch.no_grad():
            qel.A_r.copy_(saved["A_r"])
            qel.B_r.copy_(saved["B_r"])
            qel.router.copy_(saved["router"])
        log.info("QE refinement rejected: calibration MSE %.4g -> %.4g", before, after)
    rep = {
        "skipped": False,
        "steps": cfg.refine_steps,
        "calib_mse_before": before,
        "calib_mse_after_training": after,
        "calib_mse_final": after if accepted else before,
        "accepted": accepted,
        "objective_before": obj_before,  # [L, L_reg, L_cls] on all calibration tokens
        "objective_after": obj_after,
        "history": hist,
    }
    qel.refine_report = rep
    return rep


# ---------------------------------------------------------------------------------------------
# Entry point

_WHITEN_CACHE: dict = {}


def _whitening_key(X: torch.Tensor, damp: float):
    """Fingerprint of ``X^T X``: invariant to row order (so a row-permuted/subsampled-then-
    permuted copy with the same rows hits), sensitive to columns and cross-terms: shape, damping,
    per-column sums and sums of squares, and the sorted projections ``X r`` on a fixed random
    ``r``; all float64, hashed.  Costs O(T*in), vs O(T*in^2) for the Gram matrix."""
    import hashlib

    Xd = X.double()
    r = torch.randn(X.shape[1], generator=torch.Generator().manual_seed(1234), dtype=torch.float64)
    h = hashlib.sha1()
    # column sums rounded to float32: summation order (row permutation) changes the last float64
    # bits; a rounding-boundary straddle only causes a (harmless) cache miss
    for t in (Xd.sum(0).float(), (Xd * Xd).sum(0).float(), torch.sort(Xd @ r).values.float()):
        h.update(t.numpy().tobytes())
    return (tuple(X.shape), float(damp), h.hexdigest())


def _cached_whitening(X: torch.Tensor, damp: float):
    """``whitening(X, damp)`` memoised for the most recent input, so linears that share an input
    (q/k/v, gate/up) share one Gram matrix + Cholesky (see :func:`_whitening_key`)."""
    from qesim.quant.lowrank import whitening

    key = _whitening_key(X, damp)
    hit = _WHITEN_CACHE.get(key)
    if hit is None:
        _WHITEN_CACHE.clear()
        hit = whitening(X, damp=damp)
        _WHITEN_CACHE[key] = hit
    return hit


def fit_qe(
    W: torch.Tensor,
    bias: Optional[torch.Tensor],
    X: torch.Tensor,
    w_quant: Callable[[torch.Tensor], torch.Tensor],
    a_bits: int,
    cfg: Optional[QEConfig] = None,
) -> QELinear:
    """Build a :class:`QELinear` for one linear layer.

    ``W [out, in]`` full-precision weight, ``bias [out]`` or None, ``X [T, in]`` (or ``[..., in]``)
    calibration inputs of this linear, ``w_quant(W) -> Wq`` the weight fake-quantizer of the
    setting (e.g. ``QuantSetting.wq``), ``a_bits`` per-token activation bits at inference (16 =
    none), ``cfg`` hyper-parameters and ablation.  Deterministic for a fixed ``cfg.seed``.
    """
    cfg = cfg or QEConfig()
    W = W.detach().float()
    X = X.detach().reshape(-1, W.shape[1]).float()
    out_f, in_f = W.shape
    if X.shape[0] == 0:
        raise ValueError("fit_qe needs at least one calibration token")
    if not torch.isfinite(X).all() or not torch.isfinite(W).all():
        raise ValueError("non-finite weight or calibration input")

    # Alg. 1
    topk = important_channels(W, X, cfg.k)
    C_s, C_r, _ = partition_channels(topk, in_f, cfg.k, cfg.n_routed)

    # Alg. 3 (shared expert) or the plain quantized weight (re_only)
    if cfg.use_shared:
        omega, Wq, A_s, B_s, E_S = build_shared_expert(
            W,
            X,
            C_s,
            w_quant,
            cfg.shared_rank,
            cfg.damp,
            exempt=cfg.se_exempt,
            scale=cfg.se_scale,
            factors=_cached_whitening(X, cfg.damp),
        )
    else:
        omega = torch.ones(in_f)
        Wq = w_quant(W).float()
        A_s, B_s = torch.zeros(in_f, 0), torch.zeros(0, out_f)
        E_S = W - Wq
    Xs = X / omega[None, :]

    # Alg. 2 (routed experts)
    labels = np.zeros(0, dtype=int)
    if cfg.use_routed and C_r.numel() > 0:
        n_cl = min(cfg.n_routed, C_r.numel())
        if cfg.ablation == "se_random_clustering":
            rng = np.random.default_rng(cfg.seed)
            labels = np.arange(C_r.numel()) % n_cl
            rng.shuffle(labels)
        else:
            O = cooccurrence(topk, C_r, in_f)
            S = npmi_similarity(O)
            labels = spectral_clusters(S, n_cl, seed=cfg.seed, floor=cfg.affinity_floor)
        A_r, B_r, R, _ = build_routed_experts(E_S, Xs, C_r, labels, cfg.routed_rank)
    else:
        A_r, B_r, R = torch.zeros(0, in_f, 0), torch.zeros(0, 0, out_f), torch.zeros(in_f, 0)

    qel = QELinear(
        Wq,
        bias,
        omega,
        A_s,
        B_s,
        A_r,
        B_r,
        R,
        a_bits=a_bits,
        random_routing=cfg.ablation == "se_random_routing",
        seed=cfg.seed,
        route_log_tokens=cfg.route_log_tokens,
    )
    qel.C_s, qel.C_r, qel.cluster_labels, qel.ablation = C_s, C_r, labels, cfg.ablation
    if cfg.refine and qel.n_routed and not qel.random_routing:
        refine_qe(qel, X, W, bias, cfg)
    return qel
