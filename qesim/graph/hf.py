"""Hugging Face ``config.json`` -> :class:`qesim.graph.presets.ModelSpec`.

A model that is not a preset is named by an HF ``config.json``, a directory holding one, or a hub
id that is already in the local HF cache (nothing is downloaded). The file is read offline with
transformers' ``AutoConfig`` when transformers is installed and knows the ``model_type`` (its
defaults then fill the fields the file leaves out); otherwise (no ``[quant]`` extra, or a
remote-code type such as ``internlm2`` / ``internvl_chat``) the JSON is read directly and the
defaults below -- the same as transformers' config classes -- apply. ``tests/test_hf_configs.py``
checks that both routes give the same spec for every test config.

Supported ``model_type`` (:data:`SUPPORTED_MODEL_TYPES`): llama, mistral, qwen2, qwen3, phi3,
gemma, gemma2, gemma3 / gemma3_text, internlm2, qwen2_vl / qwen2_5_vl and internvl /
internvl_chat (their language model), mixtral, qwen2_moe, qwen3_moe, deepseek_v2, deepseek_v3
(multi-head latent attention + MoE), opt, bert. Any other type is one error listing these.

What is costed from each config:

- sliding-window attention (Mistral, Mixtral, Phi-3, Gemma 2 every other layer, Gemma 3 five
  layers in six, Qwen2 with ``use_sliding_window``; or the per-layer ``layer_types`` list when
  present): ``ModelSpec.sliding_window`` / ``sliding_layers``; the builder gives those layers an
  attention op whose KV length is capped at the window.
- MoE: experts, top-k, shared experts (DeepSeek ``n_shared_experts``, Qwen2-MoE's fused
  ``shared_expert_intermediate_size``), and which layers are MoE (``first_k_dense_replace`` /
  ``moe_layer_freq``, ``mlp_only_layers`` / ``decoder_sparse_step``) as explicit layer ids.
- MLA (DeepSeek-V2/V3): ``q_lora_rank``, ``kv_lora_rank``, the nope/rope/value head dims.

Not costed (small SFU work, documented rather than guessed): Qwen3 / Gemma 3 q/k RMSNorm, Gemma 2
logit soft-capping, Gemma's embedding scaling, Qwen2-MoE's scalar shared-expert gate.
"""

from __future__ import annotations

import importlib.util
import json
import os
from functools import lru_cache
from pathlib import Path
from typing import Any, Mapping, Optional

from pydantic import ValidationError

from qesim.errors import InputError
from qesim.graph.spec import MLASpec, ModelSpec, MoESpec

SUPPORTED_MODEL_TYPES = (
    "llama", "mistral", "qwen2", "qwen3", "phi3", "gemma", "gemma2", "gemma3", "gemma3_text", "internlm2",
    "qwen2_vl", "qwen2_5_vl", "internvl", "internvl_chat", "mixtral", "qwen2_moe", "qwen3_moe", "deepseek_v2",
    "deepseek_v3", "opt", "bert",
)

_DENSE = {"llama", "mistral", "qwen2", "qwen3", "phi3", "gemma", "gemma2", "gemma3_text", "internlm2",
          "qwen2_vl", "qwen2_vl_text", "qwen2_5_vl", "qwen2_5_vl_text"}
_MOE = {"mixtral", "qwen2_moe", "qwen3_moe", "deepseek_v2", "deepseek_v3"}

#: defaults of transformers' config classes for the fields read here (used on the plain-JSON route)
_DEFAULTS: dict[str, dict[str, Any]] = {
    "mistral": {"sliding_window": 4096},
    "gemma": {"tie_word_embeddings": True, "head_dim": 256},
    "gemma2": {"tie_word_embeddings": True, "head_dim": 256, "sliding_window": 4096},
    "gemma3_text": {"tie_word_embeddings": True, "head_dim": 256, "sliding_window": 4096,
                    "sliding_window_pattern": 6},
    "internlm2": {"bias": True},
    "opt": {"tie_word_embeddings": True},
    "qwen2_moe": {"decoder_sparse_step": 1},
    "qwen3_moe": {"decoder_sparse_step": 1},
    "deepseek_v2": {"first_k_dense_replace": 0, "moe_layer_freq": 1},
    "deepseek_v3": {"first_k_dense_replace": 3, "moe_layer_freq": 1, "n_shared_experts": 1},
}


def _cfg_dict(cfg: Any) -> dict:
    """The language-model part of a config as a dict (VLM wrappers: text_config / llm_config)."""
    if isinstance(cfg, Mapping):
        d = dict(cfg)
    elif hasattr(cfg, "to_dict"):
        d = cfg.to_dict()
    else:
        d = dict(vars(cfg))
    for sub in ("text_config", "llm_config", "language_config"):
        inner = d.get(sub)
        if inner is not None and not d.get("hidden_size"):
            inner = _cfg_dict(inner)
            if not inner.get("_name_or_path"):
                inner["_name_or_path"] = d.get("_name_or_path") or d.get("name_or_path")
            return inner
    # Qwen2-VL keeps LM fields at the top level; a nested text_config (newer transformers) wins if complete
    inner = d.get("text_config")
    if inner is not None:
        inner = _cfg_dict(inner)
        if inner.get("hidden_size") and inner.get("num_hidden_layers"):
            merged = {**d, **{k: v for k, v in inner.items() if v is not None}}
            merged["model_type"] = d.get("model_type") or inner.get("model_type")
            merged["_name_or_path"] = d.get("_name_or_path") or inner.get("_name_or_path")
            return merged
    return d


def _act(name: Optional[str]) -> str:
    n = (name or "silu").lower()
    if n in ("silu", "swish"):
        return "silu"
    if n.startswith("gelu"):
        return "gelu"
    if n == "relu":
        return "relu"
    raise InputError(f"unsupported activation {name!r} (supported: silu, gelu*, relu)")


def _sliding(d: dict, mt: str, layers: int) -> tuple[Optional[int], int]:
    """(window in tokens, how many layers use it) from a config dict."""
    win = d.get("sliding_window")
    if mt.startswith("qwen") and not d.get("use_sliding_window", False):
        win = None  # Qwen configs carry a sliding_window that is off unless use_sliding_window
    if win is None or int(win) <= 0:
        return None, 0
    win = int(win)
    types = d.get("layer_types")
    if isinstance(types, list) and types:
        return win, sum(1 for t in types[:layers] if t == "sliding_attention")
    if mt == "gemma2":  # even layers slide (Gemma2DecoderLayer: is_sliding = not layer_idx % 2)
        return win, (layers + 1) // 2
    if mt == "gemma3_text":  # layer i is global iff (i + 1) % pattern == 0
        pat = int(d.get("sliding_window_pattern") or 6)
        return win, sum(1 for i in range(layers) if (i + 1) % pat)
    if mt.startswith("qwen"):  # layers from max_window_layers on slide
        first = int(d.get("max_window_layers") if d.get("max_window_layers") is not None else layers)
        return win, max(0, layers - first)
    return win, layers  # mistral, mixtral, phi3: every layer


def spec_from_hf_config(cfg: Any, name: Optional[str] = None) -> ModelSpec:
    """Turn a transformers config (object or dict) into a :class:`ModelSpec`.

    See the module docstring for the supported ``model_type`` values and what is read. Raises
    :class:`InputError` for an unsupported or incomplete config.
    """
    d = _cfg_dict(cfg)
    mt = str(d.get("model_type") or "").lower()
    if mt == "gemma3":
        mt = "gemma3_text"
    for k, v in _DEFAULTS.get(mt, {}).items():
        if d.get(k) is None and k not in d:
            d[k] = v
    nm = name or d.get("_name_or_path") or d.get("name_or_path") or mt or "hf-model"
    src = [f"HF config (model_type={mt or '?'}, source {nm})"]

    def need(key: str, *alts: str) -> int:
        for k in (key,) + alts:
            if d.get(k) is not None:
                return int(d[k])
        raise InputError(f"config of {nm!r} (model_type {mt!r}) has no {key!r}")

    try:
        if mt in _DENSE or mt in _MOE:
            return _decoder_spec(d, mt, str(nm), src, need)
        if mt == "opt":
            hidden = need("hidden_size")
            proj = d.get("word_embed_proj_dim")
            if proj is not None and int(proj) != hidden:
                raise InputError(f"OPT config of {nm!r}: word_embed_proj_dim {proj} != hidden_size {hidden} "
                                 "(project_in/out layers) is not supported")
            heads = need("num_attention_heads")
            bias = bool(d.get("enable_bias", True))
            return ModelSpec(
                name=str(nm), arch="opt", hidden=hidden, intermediate=need("ffn_dim"),
                layers=need("num_hidden_layers"), heads=heads, kv_heads=heads, head_dim=hidden // heads,
                vocab=need("vocab_size"), norm="layernorm", mlp="plain",
                act=_act(d.get("activation_function", "relu")), qkv_bias=bias, linear_bias=bias,
                tied_embeddings=bool(d.get("tie_word_embeddings", True)), position="learned",
                max_positions=need("max_position_embeddings") + 2,
                layout="pre_norm" if d.get("do_layer_norm_before", True) else "post_norm", sources=src,
            )
        if mt == "bert":
            hidden = need("hidden_size")
            heads = need("num_attention_heads")
            return ModelSpec(
                name=str(nm), arch="bert", hidden=hidden, intermediate=need("intermediate_size"),
                layers=need("num_hidden_layers"), heads=heads, kv_heads=heads, head_dim=hidden // heads,
                vocab=need("vocab_size"), norm="layernorm", mlp="plain", act=_act(d.get("hidden_act", "gelu")),
                qkv_bias=True, linear_bias=True, tied_embeddings=False, position="learned",
                max_positions=need("max_position_embeddings"), type_vocab=int(d.get("type_vocab_size") or 0),
                layout="post_norm", causal=False, lm_head=False, sources=src,
            )
    except ValidationError as e:
        raise InputError(f"config of {nm!r}: {e.errors()[0].get('msg')}") from None
    raise InputError(f"unsupported model_type {mt or None!r} in config of {nm!r}; supported: "
                     f"{', '.join(SUPPORTED_MODEL_TYPES)}")


def _decoder_spec(d: dict, mt: str, nm: str, src: list, need) -> ModelSpec:
    """Rotary decoder models, dense or MoE, with or without MLA."""
    hidden = need("hidden_size")
    heads = need("num_attention_heads")
    layers = need("num_hidden_layers")
    kv = int(d.get("num_key_value_heads") or heads)
    mla = None
    if mt.startswith("deepseek"):
        mla = MLASpec(kv_lora_rank=need("kv_lora_rank"),
                      q_lora_rank=int(d["q_lora_rank"]) if d.get("q_lora_rank") is not None else None,
                      qk_nope_head_dim=need("qk_nope_head_dim"), qk_rope_head_dim=need("qk_rope_head_dim"),
                      v_head_dim=need("v_head_dim"))
        hd = mla.qk_nope_head_dim + mla.qk_rope_head_dim  # query/key width per head (values: v_head_dim)
        kv = heads
    else:
        hd = int(d.get("head_dim") or hidden // heads)
    qwen2 = mt.startswith("qwen2")  # Qwen2, Qwen2-VL, Qwen2.5-VL, Qwen2-MoE: q/k/v carry a bias
    if mt == "internlm2":
        qkv_bias = linear_bias = bool(d.get("bias", True))
    else:
        qkv_bias = True if qwen2 else bool(d.get("attention_bias", False))
        linear_bias = False
    act_name = d.get("hidden_activation") if mt.startswith("gemma") and d.get("hidden_activation") else \
        d.get("hidden_act")
    if mt.startswith("gemma") and act_name is None:
        act_name = "gelu_pytorch_tanh"
    moe = None
    inter = need("intermediate_size")
    if mt == "mixtral":
        moe = MoESpec(experts=need("num_local_experts"), top_k=need("num_experts_per_tok"), moe_intermediate=inter)
    elif mt in ("qwen2_moe", "qwen3_moe"):
        step = int(d.get("decoder_sparse_step") or 1)
        only = set(d.get("mlp_only_layers") or [])
        n_exp = need("num_experts", "num_local_experts")  # transformers 5 renames it for qwen3_moe
        ids = [l for l in range(layers) if l not in only and n_exp > 0 and (l + 1) % step == 0]
        shared = int(d.get("shared_expert_intermediate_size") or 0)
        moe = MoESpec(experts=n_exp, top_k=need("num_experts_per_tok"), moe_intermediate=need("moe_intermediate_size"),
                      shared_experts=1 if shared else 0, shared_intermediate=shared or None,
                      moe_layer_ids=ids)
    elif mt.startswith("deepseek") and d.get("n_routed_experts"):
        first = int(d.get("first_k_dense_replace") or 0)
        freq = int(d.get("moe_layer_freq") or 1)
        ids = [l for l in range(layers) if l >= first and l % freq == 0]
        moe = MoESpec(experts=need("n_routed_experts"), top_k=need("num_experts_per_tok"),
                      moe_intermediate=need("moe_intermediate_size"), shared_experts=int(d.get("n_shared_experts") or 0),
                      moe_layer_ids=ids)
    win, n_sw = (None, 0) if mla is not None else _sliding(d, mt, layers)
    arch = "qwen2" if mt in ("qwen2", "qwen2_vl", "qwen2_vl_text", "qwen2_5_vl", "qwen2_5_vl_text") else mt
    return ModelSpec(
        name=nm, arch=arch, hidden=hidden, intermediate=inter, layers=layers, heads=heads, kv_heads=kv, head_dim=hd,
        vocab=need("vocab_size"), norm="rmsnorm", mlp="gated", act=_act(act_name), qkv_bias=qkv_bias,
        linear_bias=linear_bias, tied_embeddings=bool(d.get("tie_word_embeddings", False)), position="rope",
        moe=moe, mla=mla, sliding_window=win if n_sw else None, sliding_layers=n_sw,
        sandwich_norm=mt in ("gemma2", "gemma3_text"), sources=src,
    )


# --- reading config files --------------------------------------------------------------------------

def _config_file(source: str) -> Optional[Path]:
    """The config.json a string names (a file, a directory holding one, a cached hub id), or None."""
    p = Path(source).expanduser()
    if p.is_dir():
        return p / "config.json"
    if p.is_file() or p.suffix == ".json":
        return p
    if source.count("/") == 1 and not source.startswith((".", "/")) and importlib.util.find_spec("huggingface_hub"):
        try:  # a hub id already in the local cache (offline: nothing is downloaded)
            from huggingface_hub import try_to_load_from_cache

            hit = try_to_load_from_cache(source, "config.json")
            if isinstance(hit, str):
                return Path(hit)
        except Exception:  # noqa: BLE001 - any cache problem means "not cached"
            return None
    return None


def is_hf_source(source: str) -> bool:
    """Whether ``source`` names an HF config (a ``.json`` file, a directory, a cached hub id)."""
    return _config_file(source) is not None


def read_hf_config(source: str | Path) -> tuple[dict, str]:
    """(config dict, how it was read: ``'transformers AutoConfig'`` or ``'json'``) of an HF config
    file or a directory holding ``config.json``. Offline; raises :class:`InputError`."""
    f = _config_file(str(source))
    if f is None:
        raise InputError(f"{source}: not an HF config.json, a directory holding one, or a hub id in the local cache")
    if not f.is_file():
        where = f"{f.parent} holds no config.json" if Path(str(source)).is_dir() else f"{f}: file not found"
        raise InputError(where)
    from qesim.safeio import parse_json

    raw = parse_json(f, "HF config.json")
    if not isinstance(raw, dict):
        raise InputError(f"{f}: expected a JSON object (an HF config), got {type(raw).__name__}")
    if "ops" in raw and "schema_version" in raw:
        raise InputError(f"{f}: is a qesim layer graph, not an HF config")
    mt = raw.get("model_type")
    if not mt:
        raise InputError(f"{f}: has no 'model_type', so it is not an HF config.json (supported model types: "
                         f"{', '.join(SUPPORTED_MODEL_TYPES)})")
    if importlib.util.find_spec("transformers") is not None:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
        from transformers import AutoConfig
        from transformers.models.auto.configuration_auto import CONFIG_MAPPING

        if mt in CONFIG_MAPPING:
            try:
                cfg = AutoConfig.for_model(mt, **{k: v for k, v in raw.items() if k != "model_type"})
            except Exception as e:  # noqa: BLE001 - transformers raises many types for a bad config
                raise InputError(f"{f}: transformers could not read this {mt} config: "
                                 f"{str(e).splitlines()[0] if str(e) else type(e).__name__}") from None
            d = cfg.to_dict()
            if not d.get("_name_or_path"):
                d["_name_or_path"] = raw.get("_name_or_path")
            return d, "transformers AutoConfig"
    return raw, "json"


def _default_name(f: Path, d: dict) -> str:
    nop = str(d.get("_name_or_path") or "")
    if nop.count("/") == 1 and not nop.startswith((".", "/", "~")):
        return nop  # a hub id such as meta-llama/Meta-Llama-3-8B
    return f.parent.name if f.name == "config.json" else f.stem


@lru_cache(maxsize=128)
def _load(path: str, mtime: float, name: Optional[str]) -> ModelSpec:
    d, how = read_hf_config(path)
    f = _config_file(path)
    spec = spec_from_hf_config(d, name=name or _default_name(f, _cfg_dict(d) | {"_name_or_path": d.get("_name_or_path")}))
    return spec.model_copy(update={"sources": [f"{f} (read with {how})"] + list(spec.sources)})


def load_hf_spec(source: str | Path, name: Optional[str] = None) -> ModelSpec:
    """The :class:`ModelSpec` of an HF config file, a directory holding ``config.json``, or a
    cached hub id (cached per file and modification time)."""
    f = _config_file(str(source))
    if f is None or not f.is_file():
        read_hf_config(source)  # raises the specific error
    return _load(str(f.resolve()), f.stat().st_mtime, name)
