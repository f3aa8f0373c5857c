"""``quantize_model(model, method, setting, calib, **opts)``: the quantization driver.

Walks the decoder blocks in order; for each block it hands the method the block's FP linears
and their FP calibration inputs (from a shared :class:`~qesim.quant.calib.Calibration`), lets the
method fold scales / fit adapters, and swaps the returned modules into the block. Only the
decoder linears are replaced; embeddings, lm_head (and BERT's pooler) stay fp32.

``opts``: ``progress`` (default False: True shows a progress bar over the blocks), ``inplace`` (default False: works on a deep copy), ``sequential`` (True: block i+1 is
calibrated on the outputs of the quantized blocks 0..i; False: FP inputs everywhere, see
calib.py; None/absent: the method's reference default, :data:`SEQUENTIAL_BY_DEFAULT` — GPTQ's
``llama.py`` is sequential, llm-awq / LQER / SmoothQuant calibrate on FP inputs), ``rank`` (low-rank methods, default 64), method-specific keys (see each method).
Returns ``(qmodel, report)`` with timings and any fallbacks logged by the method.
"""

from __future__ import annotations

import copy
import time
from typing import Any

import torch
import torch.nn as nn

from qesim.quant.calib import Calibration
from qesim.quant.methods import ALL_METHODS, BlockContext, get_method, is_method, needs_calls
from qesim.quant.model_utils import get_arch, run_block, set_submodule
from qesim.quant.primitives import QuantSetting, parse_setting


#: methods whose reference implementation calibrates each block on the quantized model's outputs
SEQUENTIAL_BY_DEFAULT = frozenset({"gptq"})


def is_sequential(method: str, opts: dict) -> bool:
    """Whether ``quantize_model(method, **opts)`` runs sequentially (see the module doc)."""
    v = opts.get("sequential")
    return method in SEQUENTIAL_BY_DEFAULT if v is None else bool(v)


class single_threaded_linalg:
    """Run the fitting with 1 torch thread and 1 BLAS thread (scipy's OpenBLAS).

    Measured on the 2-core box under load: a 1536x576 float64 ``torch.linalg.svd`` costs ~0.26
    CPU-s with 1 thread but ~4 CPU-s with 2 (OpenMP spin-waiting), and scipy's ``eigh`` ~40x
    more wall time with 2 OpenBLAS threads. The fits are many small factorisations, so one
    thread is both faster and kinder to a shared machine. Evaluation GEMMs keep 2 threads.
    """

    def __enter__(self):
        self._n = torch.get_num_threads()
        torch.set_num_threads(1)
        self._tp = None
        try:
            from threadpoolctl import threadpool_limits

            self._tp = threadpool_limits(limits=1, user_api="blas")
        except ImportError:  # pragma: no cover
            pass
        return self

    def __exit__(self, *exc):
        torch.set_num_threads(self._n)
        if self._tp is not None:
            self._tp.restore_original_limits()
        return False


def quantize_model(model: nn.Module, method: str, setting: QuantSetting | str, calib: Calibration,
                   **opts: Any) -> tuple[nn.Module, dict]:
    """See the module docstring. Fitting runs single-threaded unless ``opts['threads']`` says otherwise."""
    if opts.get("threads"):
        return _quantize_model(model, method, setting, calib, **opts)
    with single_threaded_linalg():
        return _quantize_model(model, method, setting, calib, **opts)


@torch.no_grad()
def _quantize_model(model: nn.Module, method: str, setting: QuantSetting | str, calib: Calibration,
                    **opts: Any) -> tuple[nn.Module, dict]:
    if isinstance(setting, str):
        setting = parse_setting(setting)
    if not is_method(method):  # built-in or a plug-in quantizer (qesim.quant.plugins)
        raise ValueError(f"unknown method {method!r}; choose from {', '.join(ALL_METHODS)}")
    if method == "qe":
        from qesim.quant.methods.qe_method import available

        ok, why = available()
        if not ok:
            raise RuntimeError(why)
    fn = get_method(method)
    from qesim.progress import bar

    opts = dict(opts)
    pbar = bar(get_arch(model).num_blocks, f"calibrate {method} {setting.name}", quiet=not opts.pop("progress", False),
               unit="block")
    t0 = time.time()
    qmodel = model if opts.get("inplace") else copy.deepcopy(model)
    arch = get_arch(qmodel)
    sequential = is_sequential(method, opts)
    awq_batches = int(opts.get("awq_batches", 2))  # AWQ searches on these calibration mini-batches
    # (and on at most ``awq_seqs`` sequences of each, if given)
    log: list[str] = []
    cur = calib.block_inputs[0]
    for i in range(arch.num_blocks):
        block = arch.blocks[i]
        linears = arch.linears(i)
        inputs = cur if sequential else calib.block_inputs[i]
        calls = {}
        if sequential:
            _, X, calls = run_block(block, inputs, capture=linears,
                                    capture_calls=_inspect_modules(arch, i, block) if needs_calls(method) else None,
                                    max_call_batches=awq_batches)
            batch_tokens = [int(bb.tokens.sum()) for bb in inputs]
        else:
            X = calib.linear_inputs(i, block, linears)
            batch_tokens = calib.batch_tokens
            if needs_calls(method):
                _, _, calls = run_block(block, inputs[:awq_batches], capture_calls=_inspect_modules(arch, i, block),
                                        max_call_batches=awq_batches)
        calls = _limit_calls(calls, opts.get("awq_seqs"))
        ctx = BlockContext(arch=arch, index=i, block=block, linears=linears, X=X, batch_tokens=batch_tokens,
                           setting=setting, opts=dict(opts), calls=calls, log=log)
        repl = fn(ctx)
        for name, mod in repl.items():
            set_submodule(block, arch.linear_paths[name], mod)
        if sequential:
            cur, _, _ = run_block(block, inputs)
        pbar.update()
    pbar.close()
    report = {"method": method, "setting": setting.name, "seconds": time.time() - t0, "log": log,
              "sequential": sequential}
    return qmodel, report


def _slice_batch(obj, n: int, B: int):
    if torch.is_tensor(obj):
        return obj[:n] if obj.dim() > 0 and obj.shape[0] == B and B > n else obj
    if isinstance(obj, tuple):
        return tuple(_slice_batch(o, n, B) for o in obj)
    if isinstance(obj, list):
        return [_slice_batch(o, n, B) for o in obj]
    if isinstance(obj, dict):
        return {k: _slice_batch(v, n, B) for k, v in obj.items()}
    return obj


def _limit_calls(calls: dict, n_seq: int | None) -> dict:
    """Keep the first ``n_seq`` sequences of each recorded sub-module call (AWQ search cost)."""
    if not n_seq:
        return calls
    out = {}
    for name, lst in calls.items():
        new = []
        for args, kwargs in lst:
            B = args[0].shape[0] if args and torch.is_tensor(args[0]) and args[0].dim() == 3 else None
            if B is None:
                new.append((args, kwargs))
            else:
                new.append((_slice_batch(args, n_seq, B), _slice_batch(kwargs, n_seq, B)))
        out[name] = new
    return out


def _inspect_modules(arch, i, block):
    return {g.inspect: block.get_submodule(g.inspect) for g in arch.groups(i)}
