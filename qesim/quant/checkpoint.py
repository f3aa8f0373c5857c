"""Real quantized checkpoints: packed integer weights + scales / zero points + adapters, one
safetensors file, and the reload that reproduces the fake-quantized model bit for bit.

Layout (``model.safetensors``; tensor names follow compressed-tensors' ``pack-quantized`` format,
``quantization_config`` in the file metadata follows its config schema):

For every quantized decoder linear ``P`` (its HF module path, e.g. ``model.layers.0.self_attn.q_proj``):

* ``P.weight_packed``  int32 ``[out, ceil(in / (32 // b))]``: the unsigned codes ``q`` in ``[0, 2^b - 1]``,
  ``32 // b`` codes per int32 along the input dimension, the first code in the lowest bits
  (compressed-tensors ``pack_to_int32``; 3-bit: 10 codes per word, 2 bits unused);
* ``P.weight_scale``  float32 ``[out, n_groups]`` and ``P.weight_zero_point`` int32 ``[out, n_groups]``:
  the weight is ``W[o, j] = (q[o, j] - zero[o, g(j)]) * scale[o, g(j)]`` computed in float32, groups of
  ``group_size`` input columns (one group per row for per-channel settings; the last group may be
  shorter when ``in`` is not a multiple, e.g. 576 = 4 x 128 + 64). Symmetric grids store their
  offset as the zero point (``2^(b-1)``), so the zero point is always present (compressed-tensors
  omits it for symmetric schemes: a reader of that format subtracts ``2^(b-1)`` itself);
* ``P.weight_shape`` int64 ``[2]``; ``P.bias`` float32 if the linear has one;
* qesim extensions (adapters, all float32): ``P.qesim_A [in, r]``, ``P.qesim_B [r, out]`` (LQER /
  ASER / QE's shared expert), ``P.qesim_in_scale [in]`` (input divisor: ASER smoothing, unfoldable
  SmoothQuant/AWQ scales), QE: ``P.qesim_omega [in]``, ``P.qesim_A_r [Nr, in, r_r]``,
  ``P.qesim_B_r [Nr, r_r, out]``, ``P.qesim_router [in, Nr]``.

Every other tensor of the quantized model's ``state_dict`` (embeddings, norms — which carry the
folded SmoothQuant/AWQ scales —, lm_head) is stored under its own name in float32. Metadata:
``quantization_config`` (JSON: ``quant_method: compressed-tensors``, ``format: pack-quantized``,
``config_groups.group_0.weights`` = bits / symmetric / strategy / group_size,
``input_activations`` = per-token dynamic symmetric at ``a`` bits or null, ``ignore``), ``qesim``
(JSON: method, setting, per-module kind and activation bits) and ``config`` (the HF config JSON).

Codes and scales are recovered exactly from each fake-quantized weight: per row and group, the
grid step ``s`` is found among ``range / D`` and ``max|v| / D`` for the code spans ``D`` of the
setting's grids (MBQ / llm-awq absmax and min-max grids, GPTQ's range-with-zero grid), then
moved by at most a few float32 ulps until ``float32(c * s)`` equals the stored value for every
element; export refuses (ValueError) if that fails, so a checkpoint that loads is exact.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import torch
import torch.nn as nn

from qesim.quant.model_utils import get_arch, set_submodule

FORMAT_VERSION = "1"


# ---------------------------------------------------------------------------------------------
# grid recovery


def _group_bounds(n_in: int, group_size: int) -> list[tuple[int, int]]:
    g = group_size if group_size and 0 < group_size < n_in else n_in
    return [(s, min(s + g, n_in)) for s in range(0, n_in, g)]


def _exact_scale(v: torch.Tensor, s: torch.Tensor, c: torch.Tensor, tries: int = 6) -> tuple[torch.Tensor, torch.Tensor]:
    """Per row: a float32 scale near ``s`` with ``float32(c * scale) == v`` exactly; returns
    (scale [rows], ok [rows])."""
    s = s.float().clone()
    ok = ((c * s[:, None]) == v).all(1)
    up, down = s.clone(), s.clone()
    inf = torch.tensor(float("inf"))
    for _ in range(tries):
        if bool(ok.all()):
            break
        up = torch.nextafter(up, inf)
        down = torch.nextafter(down, -inf)
        for cand in (up, down):
            hit = (~ok) & ((c * cand[:, None]) == v).all(1)
            s = torch.where(hit, cand, s)
            ok = ok | hit
    return s, ok


def grid_codes(W: torch.Tensor, bits: int, group_size: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Integer codes of a fake-quantized ``W [out, in]`` (float32 values on a per-row/group grid):
    ``(q [out, in] int32 in [0, 2^b - 1], scale [out, G] float32, zero [out, G] int32)`` with
    ``(q - zero) * scale == W`` exactly in float32. Raises ValueError when no exact grid is found."""
    W = W.detach().float()
    n_out, n_in = W.shape
    bounds = _group_bounds(n_in, group_size)
    maxq = 2**bits - 1
    half = 2 ** (bits - 1)
    q = torch.zeros(n_out, n_in, dtype=torch.int32)
    scales = torch.ones(n_out, len(bounds))
    zeros = torch.zeros(n_out, len(bounds), dtype=torch.int32)
    for j, (a, b) in enumerate(bounds):
        v = W[:, a:b]
        vmax, vmin = v.amax(1), v.amin(1)
        amax = v.abs().amax(1)
        rng = vmax - vmin
        cands = [amax / (half - 1) if half > 1 else amax, amax / half] + [rng / D for D in range(maxq, 0, -1)]
        cands += [amax / D for D in range(half - 2, 0, -1)]
        chosen = torch.zeros(n_out)
        found = torch.zeros(n_out, dtype=torch.bool)
        found |= amax == 0  # all-zero group: any scale, code = zero point
        chosen = torch.where(amax == 0, torch.ones(n_out), chosen)
        for s in cands:
            if bool(found.all()):
                break
            s = torch.where(s > 0, s, torch.ones_like(s))
            c = torch.round(v / s[:, None])
            integral = ((v / s[:, None] - c).abs() < 1e-3).all(1)
            span = (c.amax(1) - c.amin(1)) <= maxq
            good = (~found) & integral & span
            if bool(good.any()):
                s_ex, ok = _exact_scale(v, s, c)
                good = good & ok
                chosen = torch.where(good, s_ex, chosen)
                found |= good
        if not bool(found.all()):
            bad = int((~found).sum())
            raise ValueError(f"checkpoint: {bad} of {n_out} rows of group {j} are not on an exact {bits}-bit grid")
        c = torch.round(v / chosen[:, None])
        # zero point: symmetric-looking codes keep the 2^(b-1) offset; otherwise shift the minimum to 0
        z = torch.full((n_out,), half, dtype=torch.float32)
        fits = (c.amin(1) + z >= 0) & (c.amax(1) + z <= maxq)
        z = torch.where(fits, z, -c.amin(1))
        q[:, a:b] = (c + z[:, None]).to(torch.int32)
        scales[:, j] = chosen
        zeros[:, j] = z.to(torch.int32)
    return q, scales, zeros


def dequantize(q: torch.Tensor, scale: torch.Tensor, zero: torch.Tensor, group_size: int) -> torch.Tensor:
    """``(q - zero) * scale`` in float32 with the group layout of :func:`grid_codes`."""
    n_out, n_in = q.shape
    out = torch.empty(n_out, n_in)
    for j, (a, b) in enumerate(_group_bounds(n_in, group_size)):
        out[:, a:b] = (q[:, a:b].float() - zero[:, j : j + 1].float()) * scale[:, j : j + 1]
    return out


def pack_int32(q: torch.Tensor, bits: int) -> torch.Tensor:
    """Pack unsigned codes ``q [out, in]`` (< 2^bits) into int32 words along ``in``, first code lowest."""
    per = 32 // bits
    n_out, n_in = q.shape
    n_words = -(-n_in // per)
    pad = torch.zeros(n_out, n_words * per, dtype=torch.int64)
    pad[:, :n_in] = q.to(torch.int64)
    pad = pad.view(n_out, n_words, per)
    shifts = torch.arange(per, dtype=torch.int64) * bits
    words = (pad << shifts).sum(-1)
    words = torch.where(words >= 2**31, words - 2**32, words)  # two's complement into int32
    return words.to(torch.int32)


def unpack_int32(words: torch.Tensor, bits: int, n_in: int) -> torch.Tensor:
    per = 32 // bits
    w = words.to(torch.int64) & 0xFFFFFFFF
    shifts = torch.arange(per, dtype=torch.int64) * bits
    q = (w.unsqueeze(-1) >> shifts) & (2**bits - 1)
    return q.reshape(words.shape[0], -1)[:, :n_in].to(torch.int32)


# ---------------------------------------------------------------------------------------------
# save / load


def _quant_modules(model: nn.Module) -> dict[str, nn.Module]:
    arch = get_arch(model)
    prefix = {id(b): n for n, b in model.named_modules()}
    out = {}
    for i in range(arch.num_blocks):
        bp = prefix[id(arch.blocks[i])]
        for path in arch.linear_paths.values():
            mod = arch.blocks[i].get_submodule(path)
            if hasattr(mod, "weight_q") or (hasattr(mod, "A") and hasattr(mod, "a_bits")):
                out[f"{bp}.{path}"] = mod
    return out


def save_checkpoint(qmodel: nn.Module, path: str | Path, *, setting, method: str) -> Path:
    """Write ``qmodel`` (quantized by ``method`` at ``setting``, a QuantSetting) as described in
    the module docstring. ``path`` is the .safetensors file (its directory is created)."""
    from safetensors.torch import save_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    qmods = _quant_modules(qmodel)
    if not qmods:
        raise ValueError("checkpoint: the model has no quantized linears")
    tensors: dict[str, torch.Tensor] = {}
    g = setting.group_size if setting.group_size and setting.group_size > 0 else -1
    mod_meta = {}
    for p, m in qmods.items():
        W = (m.weight_q if hasattr(m, "weight_q") else m.weight).detach().float()
        if setting.w_bits < 16:
            q, s, z = grid_codes(W, setting.w_bits, g)
            tensors[f"{p}.weight_packed"] = pack_int32(q, setting.w_bits)
            tensors[f"{p}.weight_scale"] = s
            tensors[f"{p}.weight_zero_point"] = z
        else:
            tensors[f"{p}.weight"] = W.clone()
        tensors[f"{p}.weight_shape"] = torch.tensor(list(W.shape), dtype=torch.int64)
        if m.bias is not None:
            tensors[f"{p}.bias"] = m.bias.detach().float().clone()
        if hasattr(m, "weight_q"):  # QELinear
            for k in ("omega", "A_s", "B_s", "A_r", "B_r", "router"):
                t = getattr(m, k).detach().float().contiguous()
                tensors[f"{p}.qesim_{ {'A_s': 'A', 'B_s': 'B'}.get(k, k)}"] = t.clone()
            mod_meta[p] = {"kind": "QELinear", "a_bits": m.a_bits, "random_routing": m.random_routing}
        else:
            if m.A is not None:
                tensors[f"{p}.qesim_A"] = m.A.detach().float().contiguous().clone()
                tensors[f"{p}.qesim_B"] = m.B.detach().float().contiguous().clone()
            if m.in_scale is not None:
                tensors[f"{p}.qesim_in_scale"] = m.in_scale.detach().float().clone()
            mod_meta[p] = {"kind": "QuantLinear", "a_bits": m.a_bits}
    skip = tuple(f"{p}." for p in qmods)
    for k, v in qmodel.state_dict().items():
        if k.startswith(skip) or k in tensors:
            continue
        tensors[k] = v.detach().float().contiguous().clone()
    # tied weights (lm_head = embedding) appear twice in state_dict; safetensors refuses shared storage
    tensors = {k: v.clone() for k, v in tensors.items()}
    qc = {
        "quant_method": "compressed-tensors",
        "format": "pack-quantized",
        "config_groups": {"group_0": {
            "targets": ["Linear"],
            "weights": {"num_bits": setting.w_bits, "type": "int", "symmetric": bool(setting.symmetric),
                        "strategy": "channel" if g == -1 else "group", "group_size": None if g == -1 else g,
                        "dynamic": False},
            "input_activations": None if setting.a_bits >= 16 else {
                "num_bits": setting.a_bits, "type": "int", "symmetric": True, "strategy": "token", "dynamic": True},
        }},
        "ignore": ["lm_head"],
    }
    meta = {
        "format": "pt",
        "qesim_checkpoint": FORMAT_VERSION,
        "quantization_config": json.dumps(qc),
        "qesim": json.dumps({"method": method, "setting": setting.name, "group_size": g, "w_bits": setting.w_bits,
                             "modules": mod_meta}),
        "config": qmodel.config.to_json_string() if hasattr(qmodel, "config") else "{}",
    }
    save_file(tensors, str(path), metadata=meta)
    return path


def load_checkpoint(path: str | Path, model: Optional[nn.Module] = None) -> nn.Module:
    """Rebuild the quantized model from a checkpoint. ``model``: an FP model of the same
    architecture to fill (modified in place); None = built from the stored HF config."""
    from safetensors import safe_open

    from qesim.quant.qe import QELinear
    from qesim.quant.qlinear import QuantLinear

    path = Path(path)
    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata() or {}
        if meta.get("qesim_checkpoint") != FORMAT_VERSION:
            raise ValueError(f"{path}: not a qesim checkpoint (format {meta.get('qesim_checkpoint')!r})")
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    info = json.loads(meta["qesim"])
    if model is None:
        import transformers

        cfg = transformers.AutoConfig.for_model(**json.loads(meta["config"]))
        cls = transformers.AutoModelForCausalLM if getattr(cfg, "is_decoder", False) or cfg.model_type in (
            "llama", "qwen2", "mistral") else transformers.AutoModel
        model = cls.from_config(cfg).eval()
    g, bits = int(info["group_size"]), int(info["w_bits"])
    for p, mm in info["modules"].items():
        shape = tuple(tensors[f"{p}.weight_shape"].tolist())
        if f"{p}.weight_packed" in tensors:
            q = unpack_int32(tensors[f"{p}.weight_packed"], bits, shape[1])
            W = dequantize(q, tensors[f"{p}.weight_scale"], tensors[f"{p}.weight_zero_point"], g)
        else:
            W = tensors[f"{p}.weight"]
        bias = tensors.get(f"{p}.bias")
        if mm["kind"] == "QELinear":
            mod = QELinear(W, bias, tensors[f"{p}.qesim_omega"], tensors[f"{p}.qesim_A"], tensors[f"{p}.qesim_B"],
                           tensors[f"{p}.qesim_A_r"], tensors[f"{p}.qesim_B_r"], tensors[f"{p}.qesim_router"],
                           a_bits=int(mm["a_bits"]), random_routing=bool(mm.get("random_routing", False)))
        else:
            mod = QuantLinear(W, bias, int(mm["a_bits"]), A=tensors.get(f"{p}.qesim_A"), B=tensors.get(f"{p}.qesim_B"),
                              in_scale=tensors.get(f"{p}.qesim_in_scale"))
        set_submodule(model, p, mod)
    rest = {k: v for k, v in tensors.items() if not any(k.startswith(f"{p}.") for p in info["modules"])}
    missing, unexpected = model.load_state_dict(rest, strict=False)
    bad_missing = [k for k in missing if not any(k.startswith(f"{p}.") for p in info["modules"])
                   and not k.endswith("lm_head.weight")]
    if bad_missing or unexpected:
        raise ValueError(f"{path}: checkpoint does not match the model (missing {bad_missing[:3]}, unexpected {unexpected[:3]})")
    if hasattr(model, "tie_weights"):
        model.tie_weights()
    return model.eval()
