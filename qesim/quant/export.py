"""Export a quantized torch model as a qesim layer graph (``qesim.graph.ir.LayerGraph``).

The graph's shapes come from the model's HF config (``spec_from_hf_config``) and its bitwidths
from the quantizer setting; the adapters attached to each decoder linear come from the quantized
modules themselves:

* ``QuantLinear`` with a low-rank pair (LQER/ASER): ``shared_rank = rank``, no router;
* ``QELinear`` (QE): ``adapter_spec()`` — shared rank, Nr, routed rank, router — plus the
  routing statistics MEASURED on held-out tokens (the ``routing_counts`` accumulated by the
  forwards run after :func:`reset_routing`). The graph stores each decoder op once with
  ``repeat = layers``, so per-op stats aggregate the layers: ``tokens_per_expert`` = sum over
  layers of the tokens routed to expert i, ``touched_per_batch`` = mean over layers of the mean
  number of distinct experts touched per ``batch_tokens`` consecutive tokens. Per-layer detail
  goes to ``graph.meta['routing_per_layer']`` (a JSON string: op -> list over layers of
  ``{"tokens_per_expert": [...], "touched_per_batch": x}``).
"""

from __future__ import annotations

import json
import statistics
from typing import Any, Optional

import torch.nn as nn

from qesim.quant.model_utils import get_arch

#: our method names -> graph method names (adapter structure)
GRAPH_METHOD = {"rtn": "rtn", "smoothquant": "smoothquant", "awq": "awq", "gptq": "gptq", "lqer": "lqer",
                "aser": "aser", "qe": "qe", "fp": "none", "none": "none"}


def _is_qe(m: nn.Module) -> bool:
    return hasattr(m, "routing_counts") and hasattr(m, "adapter_spec")


def mapped_linears(model: nn.Module, linear_map: Optional[dict[str, str]] = None) -> list[tuple[str, nn.Module]]:
    """(graph op name, module) of every decoder linear of ``model``, in module order.

    ``linear_map``: module-name patterns (``fnmatch``, as in ``model.named_modules()``, e.g.
    ``'blocks.*.attn.wq'``) -> graph op names (``'layer.q_proj'``), for a plain ``nn.Module``
    whose names qesim does not know. Without it: the supported HF architectures by their layout
    (``get_arch``), else any module whose HF-style name :func:`qesim.graph.builders.graph_op_name`
    recognises."""
    from fnmatch import fnmatchcase

    from qesim.graph.builders import graph_op_name

    if linear_map:
        out = []
        for mname, mod in model.named_modules():
            for pat, op in linear_map.items():
                if fnmatchcase(mname, pat):
                    out.append((op, mod))
                    break
        if not out:
            from qesim.errors import InputError

            raise InputError(f"linear_map matches no module of {type(model).__name__} (patterns: "
                             f"{', '.join(linear_map)}; module names look like "
                             f"{', '.join(n for n, _ in list(model.named_modules())[1:4])})")
        return out
    try:
        arch = get_arch(model)
    except ValueError:
        out = []
        for mname, mod in model.named_modules():
            op = graph_op_name(mname) if mname else None
            if op is not None and op != "lm_head" and hasattr(mod, "weight"):
                out.append((op, mod))
        return out
    out = []
    for i in range(arch.num_blocks):
        for path in arch.linear_paths.values():
            op = graph_op_name(f"layers.{i}.{path}")
            if op is not None:
                out.append((op, arch.blocks[i].get_submodule(path)))
    return out


def has_input_scaling(model: nn.Module, linear_map: Optional[dict[str, str]] = None) -> bool:
    """Whether any decoder linear divides its input by a per-channel vector at run time (QE's
    ``omega`` != 1, ASER's smoothing, an unfoldable ``in_scale``): the exported graph then charges
    a per-linear ``eltwise_mul`` + ``quantize`` (see ``build_graph(input_scaling=...)``)."""
    for _, mod in mapped_linears(model, linear_map):
        om = getattr(mod, "omega", None)
        if om is None:
            om = getattr(mod, "in_scale", None)
        if om is not None and bool((om != 1).any()):
            return True
    return False


def reset_routing(model: nn.Module) -> None:
    for m in model.modules():
        if _is_qe(m):
            m.reset_routing_counts()


def collect_adapters(model: nn.Module, batch_tokens: int = 128,
                     linear_map: Optional[dict[str, str]] = None) -> tuple[dict[str, dict], dict[str, list]]:
    """Per graph op: aggregated LowRankAdapters fields (or {} when the op has no adapters), and
    the per-layer detail (``linear_map``: see :func:`mapped_linears`)."""
    per_op: dict[str, list] = {}
    for op, mod in mapped_linears(model, linear_map):
        if _is_qe(mod):
            spec = mod.adapter_spec(batch_tokens)
        elif getattr(mod, "A", None) is not None and mod.A.shape[1] > 0:
            spec = {"shared_rank": int(mod.A.shape[1]), "routed_experts": 0, "routed_rank": 0, "router": False,
                    "adapter_bits": 16}
        else:
            spec = None
        per_op.setdefault(op, []).append(spec)
    agg: dict[str, dict] = {}
    for op, specs in per_op.items():
        if all(s is None for s in specs):
            agg[op] = {}
            continue
        s0 = next(s for s in specs if s is not None)
        out = {k: v for k, v in s0.items() if k != "routing"}
        routed = [s.get("routing") for s in specs if s is not None and s.get("routing")]
        if out.get("routed_experts") and routed:
            n = out["routed_experts"]
            tot = [sum(r["tokens_per_expert"][e] for r in routed) for e in range(n)]
            touched = [r["touched_per_batch"] for r in routed if r.get("touched_per_batch") is not None]
            out["routing"] = {"tokens_per_expert": tot, "batch_tokens": batch_tokens,
                              "touched_per_batch": statistics.fmean(touched) if touched else None}
        agg[op] = out
    return agg, per_op


def export_graph(model: nn.Module, *, method: str, setting: str, name: str, stage: str = "prefill",
                 seq_len: int = 128, context_len: int = 0, batch: int = 1, batch_tokens: int = 128,
                 meta: Optional[dict[str, Any]] = None, spec: Any = None,
                 linear_map: Optional[dict[str, str]] = None):
    """Build the LayerGraph of ``model`` (quantized by ``method`` at ``setting``).

    Shapes come from ``spec`` (a ModelSpec, a preset name, an HF config mapping or config.json
    path: the shape map of a plain ``nn.Module``), else from ``model.config`` (HF-style models).
    ``linear_map`` names the module that is each graph linear (see :func:`mapped_linears`)."""
    from qesim.graph.builders import build_graph
    from qesim.graph.presets import get_spec, spec_from_hf_config

    if spec is not None:
        spec = get_spec(spec)
    elif getattr(model, "config", None) is not None:
        spec = spec_from_hf_config(model.config, name=name)
    else:
        from qesim.errors import InputError

        raise InputError(f"{type(model).__name__} has no HF .config: pass spec= (a ModelSpec, preset name or HF "
                         "config mapping with its shapes) and, if its module names are not HF-style, linear_map=")
    agg, per_op = collect_adapters(model, batch_tokens, linear_map)
    scaling = has_input_scaling(model, linear_map)
    gm = GRAPH_METHOD.get(method, method)
    overrides = {op: {"adapters": fields} if fields else {"adapters": None} for op, fields in agg.items()}
    if setting.upper() == "W16A16":
        overrides = {}
    g = build_graph(spec, stage=stage, seq_len=seq_len, context_len=context_len, batch=batch, setting=setting,
                    method=gm, input_scaling=scaling, linear_overrides=overrides)
    m = dict(meta or {})
    m["quantizer"] = method
    m["source_model"] = name
    routing = {op: [s.get("routing") if s else None for s in specs] for op, specs in per_op.items()
               if any(s and s.get("routing") for s in specs)}
    if routing:
        m["routing_per_layer"] = json.dumps(routing, separators=(",", ":"))
        m["routing_measured_on"] = m.get("routing_measured_on", "held-out evaluation tokens")
    g.meta.update(m)
    return g
