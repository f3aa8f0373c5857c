"""Model plumbing for the quantizers: find the decoder blocks and their linears, describe the
scaling groups (norm -> linears, linear -> linear) of each block, and capture block / linear /
sub-module inputs with hooks.

Supported families (the models qesim runs for accuracy):

* ``llama`` (``LlamaForCausalLM``, e.g. SmolLM2-135M): blocks ``model.model.layers``; linears
  ``self_attn.{q,k,v,o}_proj`` and ``mlp.{gate,up,down}_proj``; pre-norm, so
  ``input_layernorm -> q,k,v`` and ``post_attention_layernorm -> gate,up`` can absorb a
  per-channel scale (SmoothQuant/AWQ fold), as can ``v_proj -> o_proj`` (only when their shapes
  match, i.e. no GQA) and ``up_proj -> down_proj``.
* ``bert`` (``BertModel``, e.g. all-MiniLM-L6-v2): blocks ``encoder.layer``; linears
  ``attention.self.{query,key,value}``, ``attention.output.dense``, ``intermediate.dense``,
  ``output.dense``. BERT is post-LN: a LayerNorm output is also the residual stream, so a scale
  cannot be folded into it; only ``value -> attention.output.dense`` is foldable. Elsewhere the
  scale is kept as an explicit per-channel input multiply (``QuantLinear.in_scale``) — documented
  runtime cost, used for minilm only.

Embeddings, the lm_head and the BERT pooler are never touched.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Optional

import torch
import torch.nn as nn

#: canonical op names (graph export) for the llama family
LLAMA_LINEARS = {
    "q_proj": "self_attn.q_proj",
    "k_proj": "self_attn.k_proj",
    "v_proj": "self_attn.v_proj",
    "o_proj": "self_attn.o_proj",
    "gate_proj": "mlp.gate_proj",
    "up_proj": "mlp.up_proj",
    "down_proj": "mlp.down_proj",
}
BERT_LINEARS = {
    "query": "attention.self.query",
    "key": "attention.self.key",
    "value": "attention.self.value",
    "attn_out": "attention.output.dense",
    "intermediate": "intermediate.dense",
    "output": "output.dense",
}


@dataclass
class ScaleGroup:
    """Linears sharing one input that a per-channel scale ``s`` can be applied to.

    ``prev`` absorbs ``1/s`` (a norm: weight (and bias) /= s; a linear: its output rows /= s);
    ``prev=None`` means not foldable -> runtime ``in_scale``. ``inspect`` is the sub-module
    (path relative to the block) whose output AWQ measures.
    """

    linears: list[str]
    prev: Optional[nn.Module]
    prev_kind: Optional[str]  # 'norm' | 'linear' | None
    inspect: str
    from_norm: bool = False  # input is a norm's output (SmoothQuant's norm -> linear pairs)

    @property
    def foldable(self) -> bool:
        return self.prev is not None


@dataclass
class Arch:
    family: str
    blocks: nn.ModuleList
    linear_paths: dict[str, str]  # short name -> path inside the block
    groups_fn: Callable[[int], list[ScaleGroup]] = field(repr=False)

    def linears(self, i: int) -> dict[str, nn.Linear]:
        b = self.blocks[i]
        return {k: b.get_submodule(p) for k, p in self.linear_paths.items()}

    def groups(self, i: int) -> list[ScaleGroup]:
        return self.groups_fn(i)

    @property
    def num_blocks(self) -> int:
        return len(self.blocks)


def get_arch(model: nn.Module) -> Arch:
    """Describe a supported model (llama-family causal LM or BERT encoder)."""
    inner = getattr(model, "model", None)
    if inner is not None and hasattr(inner, "layers"):
        blocks = inner.layers

        def groups(i: int) -> list[ScaleGroup]:
            b = blocks[i]
            g = [ScaleGroup(["q_proj", "k_proj", "v_proj"], b.input_layernorm, "norm", "self_attn", True)]
            if b.self_attn.v_proj.weight.shape == b.self_attn.o_proj.weight.shape:
                g.append(ScaleGroup(["o_proj"], b.self_attn.v_proj, "linear", "self_attn.o_proj"))
            g.append(ScaleGroup(["gate_proj", "up_proj"], b.post_attention_layernorm, "norm", "mlp", True))
            g.append(ScaleGroup(["down_proj"], b.mlp.up_proj, "linear", "mlp.down_proj"))
            return g

        return Arch("llama", blocks, dict(LLAMA_LINEARS), groups)
    enc = getattr(model, "encoder", None)
    if enc is not None and hasattr(enc, "layer"):
        blocks = enc.layer

        def groups(i: int) -> list[ScaleGroup]:
            b = blocks[i]
            g = [ScaleGroup(["query", "key", "value"], None, None, "attention.self", True)]
            if b.attention.self.value.weight.shape == b.attention.output.dense.weight.shape:
                g.append(ScaleGroup(["attn_out"], b.attention.self.value, "linear", "attention.output.dense"))
            else:
                g.append(ScaleGroup(["attn_out"], None, None, "attention.output.dense"))
            g.append(ScaleGroup(["intermediate"], None, None, "intermediate", True))
            g.append(ScaleGroup(["output"], None, None, "output.dense"))
            return g

        return Arch("bert", blocks, dict(BERT_LINEARS), groups)
    raise ValueError(f"unsupported model type {type(model).__name__}: need a llama-style decoder or a BERT encoder")


def set_submodule(root: nn.Module, path: str, new: nn.Module) -> None:
    parent_path, _, attr = path.rpartition(".")
    parent = root.get_submodule(parent_path) if parent_path else root
    setattr(parent, attr, new)


class _Stop(Exception):
    pass


@dataclass
class BlockBatch:
    """One calibration mini-batch at a block's input: ``hidden`` [B, L, d] plus the keyword
    arguments the parent passes to every block (masks, rotary embeddings) and the valid-token
    mask ``tokens`` [B, L] (False on padding)."""

    hidden: torch.Tensor
    kwargs: dict[str, Any]
    tokens: torch.Tensor


@torch.no_grad()
def capture_block0_inputs(model: nn.Module, arch: Arch, batches: Iterable[dict[str, torch.Tensor]]) -> list[BlockBatch]:
    """Run the model up to block 0 on each batch (dict of model inputs) and keep its inputs."""
    out: list[BlockBatch] = []
    state: dict[str, Any] = {}

    def hook(mod, args, kwargs):
        h = args[0] if args else kwargs.pop("hidden_states")
        kw = dict(kwargs)
        for i, a in enumerate(args[1:]):  # bert passes attention_mask positionally
            kw[["attention_mask", "encoder_hidden_states"][i]] = a
        kw.pop("past_key_values", None)
        kw["use_cache"] = False if arch.family == "llama" else kw.get("use_cache", None)
        if kw.get("use_cache") is None:
            kw.pop("use_cache", None)
        state["v"] = (h.detach(), kw)
        raise _Stop

    handle = arch.blocks[0].register_forward_pre_hook(hook, with_kwargs=True)
    try:
        for b in batches:
            try:
                model(**b)
            except _Stop:
                pass
            h, kw = state.pop("v")
            mask = b.get("attention_mask")
            tokens = mask.bool() if mask is not None else torch.ones(h.shape[:2], dtype=torch.bool)
            out.append(BlockBatch(h, kw, tokens))
    finally:
        handle.remove()
    return out


def block_forward(block: nn.Module, bb: BlockBatch) -> torch.Tensor:
    y = block(bb.hidden, **bb.kwargs)
    return y[0] if isinstance(y, tuple) else y


@torch.no_grad()
def run_block(block: nn.Module, inputs: list[BlockBatch], capture: dict[str, nn.Module] | None = None,
              capture_calls: dict[str, nn.Module] | None = None, max_call_batches: int | None = None):
    """Run ``block`` on every mini-batch.

    Returns ``(outputs, X, calls)``:
    * ``outputs``: list of BlockBatch for the next block (same kwargs/tokens).
    * ``X``: for each name in ``capture`` (linears), the concatenated valid-token inputs
      ``[T, in]`` (float32). Linears fed by the same tensor share one stored tensor.
    * ``calls``: for each name in ``capture_calls`` (sub-modules), a list of ``(args, kwargs)``
      per mini-batch (only the first ``max_call_batches`` mini-batches).
    """
    capture = capture or {}
    capture_calls = capture_calls or {}
    parts: dict[str, list[torch.Tensor]] = {k: [] for k in capture}
    calls: dict[str, list] = {k: [] for k in capture_calls}
    handles = []
    cur: dict[str, Any] = {}

    def mk(name):
        def hook(mod, args):
            x = args[0]
            key = id(x)
            hit = cur.setdefault("batch_seen", {}).get(key)
            if hit is not None and hit[0] is x:  # same tensor object (kept alive below) -> share
                parts[name].append(hit[1])
                return
            v = x[cur["tokens"]] if x.dim() == 3 else x
            v = v.detach().float().reshape(-1, x.shape[-1])
            cur["batch_seen"][key] = (x, v)  # holding x keeps its id unique within the batch
            parts[name].append(v)
        return hook

    def mk_call(name):
        def hook(mod, args, kwargs):
            if max_call_batches is None or cur["i"] < max_call_batches:
                calls[name].append((tuple(a.detach() if torch.is_tensor(a) else a for a in args), dict(kwargs)))
        return hook

    for name, mod in capture.items():
        handles.append(mod.register_forward_pre_hook(mk(name)))
    for name, mod in capture_calls.items():
        handles.append(mod.register_forward_pre_hook(mk_call(name), with_kwargs=True))
    outs = []
    try:
        for i, bb in enumerate(inputs):
            cur.clear()
            cur["i"] = i
            cur["tokens"] = bb.tokens
            y = block_forward(block, bb)
            outs.append(BlockBatch(y.detach(), bb.kwargs, bb.tokens))
    finally:
        for h in handles:
            h.remove()
    X: dict[str, torch.Tensor] = {}
    shared: dict[tuple, torch.Tensor] = {}
    for name, ps in parts.items():
        if not ps:
            continue
        key = tuple(id(p) for p in ps)
        if key not in shared:
            shared[key] = torch.cat(ps, 0)
        X[name] = shared[key]
    return outs, X, calls
