"""Vision encoders, mergers/projectors and the image -> token rules of the VLM presets.

A whole vision-language request is one :class:`~qesim.graph.ir.LayerGraph` whose ops carry a
``component``: ``vision`` (the ViT over the image patches), ``merger`` (the patch merger /
projector into the LLM's hidden size) and ``language`` (the LLM over text + image tokens, built by
:func:`qesim.graph.builders.build_graph`). Everything is made of the existing op kinds: the patch
embedding (a Conv2d/Conv3d with stride = kernel, i.e. a GEMM over flattened patches) and the MLPs
are :class:`LinearOp`, the ViT attention is a non-causal :class:`AttentionOp` over the patches of
one image (or tile), norms / activations / RoPE / position and layer-scale products are
:class:`SfuOp`.

Sizes are in elements (pixels, patches, tokens, features); precisions in bits.

With ``qe`` / ``aser`` each quantized linear's input is first scaled by its own per-channel vector
(an ``eltwise_mul`` SFU op ``<linear>_omega``), as :func:`qesim.graph.builders.build_graph` does for the LLM.

Which parts are quantized is ``quantize`` (a subset of ``{"L", "V", "M"}``, QE paper Sec. 8.3 /
Table 12: L = the LLM, V = the visual encoder, M = the merger): the quantized parts get the
setting's bits and the method's adapters on their linears (and per-token activation ``quantize``
SFU ops where a < 16), the others stay fp16. The patch-embedding GEMM stays fp16 in every case
(it is a convolution in the checkpoint; the quantizers modelled here act on ``nn.Linear``, like the
token embedding that MBQ / QE leave in fp16).

Not modelled (stated, not hidden): Qwen2.5-VL's window attention (no Qwen2.5-VL preset exists);
video (temporal patches > 1 frame pair); the vision start/end marker tokens around each image
(count them in ``--seq-len`` if wanted); the pixel-shuffle / patch-merge reshapes (pure data
movement through the activation buffer, no arithmetic). Image preprocessing (resize, normalise)
runs on the host and is not costed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Literal, Optional, Sequence

from qesim.errors import InputError
from qesim.graph.ir import AttentionOp, LayerGraph, LinearOp, SfuOp
from qesim.graph.settings import (INPUT_SCALING_METHODS, AdapterDefaults, linear_fields, method_adapters,
                                  parse_setting)

__all__ = [
    "VisionSpec", "ImageLayout", "vision_spec", "vision_presets", "qwen2vl_smart_resize", "internvl_tiles",
    "kimivl_grid", "image_layout", "parse_image_size", "parse_quantize", "vision_ops", "build_vlm_graph",
    "component_summary", "annotate_components", "COMPONENTS",
]

COMPONENTS = ("vision", "merger", "language")
TokenRule = Literal["qwen2vl", "internvl", "kimivl"]
MergerKind = Literal["qwen2vl", "qwen3vl", "internvl", "kimivl"]


@dataclass(frozen=True)
class VisionSpec:
    """Shape of a vision tower + merger (elements). One block: pre-norm LayerNorm, fused qkv linear
    (hidden -> 3 hidden, all four towers fuse it), optional 2D RoPE, non-causal attention, out
    projection, residual; LayerNorm, fc1 (hidden -> intermediate), GELU, fc2, residual."""

    name: str
    patch: int                       #: spatial patch size, pixels
    temporal_patch: int              #: frames per patch (Qwen: 2, a still image is repeated); 1 = 2D conv
    hidden: int
    layers: int
    heads: int
    intermediate: int
    merge: int                       #: spatial merge (2 = 2x2 patches -> one LLM token)
    merger: MergerKind
    token_rule: TokenRule
    rope_2d: bool = False            #: 2D rotary position embedding on q and k
    learned_pos: bool = False        #: learned absolute position embedding added after the patch embed
    cls_token: bool = False          #: one class token per image/tile (InternViT), dropped before the merger
    layer_scale: bool = False        #: per-channel layer-scale products (InternViT ls1/ls2)
    final_norm: bool = False         #: a LayerNorm after the last block (MoonViT)
    deepstack: int = 0               #: extra mergers on intermediate ViT layers (Qwen3-VL DeepStack)
    # token-rule parameters (pixels)
    min_pixels: int = 0
    max_pixels: int = 0
    tile: int = 448                  #: InternVL tile side
    max_tiles: int = 12              #: InternVL max_dynamic_patch
    thumbnail: bool = True           #: InternVL use_thumbnail
    max_patches: int = 0             #: Kimi-VL in_token_limit (patches per image before merging)
    sources: tuple[str, ...] = ()
    unverified: tuple[str, ...] = ()

    @property
    def head_dim(self) -> int:
        return self.hidden // self.heads

    @property
    def patch_in(self) -> int:
        """K of the patch-embedding GEMM: channels x temporal x patch x patch (3 RGB channels)."""
        return 3 * self.temporal_patch * self.patch * self.patch

    @property
    def merged_width(self) -> int:
        """Width of one merged token before the merger MLP: hidden x merge^2."""
        return self.hidden * self.merge * self.merge


_QWEN2VL_VIT = VisionSpec(
    name="qwen2-vl-vit-675m", patch=14, temporal_patch=2, hidden=1280, layers=32, heads=16, intermediate=5120,
    merge=2, merger="qwen2vl", token_rule="qwen2vl", rope_2d=True, min_pixels=56 * 56, max_pixels=16384 * 28 * 28,
    sources=(
        "Qwen2-VL-{2B,7B,72B}-Instruct config.json vision_config (shared/design/seed-systems-facts.md §3 extra "
        "details: ViT-675M, embed 1280, depth 32, patch 14, 2x2 merge -> merger MLP 5120 -> LLM hidden); "
        "16 heads, mlp_ratio 4, temporal_patch_size 2, spatial_merge_size 2: transformers Qwen2VLVisionConfig / "
        "modeling_qwen2_vl.py (Qwen2VisionTransformerPretrainedModel: PatchEmbed Conv3d(3,1280,(2,14,14)), "
        "VisionBlock LayerNorm-attn(qkv 1280->3840)-LayerNorm-MLP(quick_gelu), VisionRotaryEmbedding over head_dim/2, "
        "PatchMerger ln_q + Linear(5120,5120) GELU Linear(5120, hidden))",
        "token rule: Qwen2VLImageProcessor smart_resize (factor 28 = patch 14 x merge 2, round to the factor, "
        "rescale by sqrt into [min_pixels, max_pixels]); preprocessor_config.json min_pixels 3136 = 56*56, "
        "max_pixels 12845056 = 16384*28*28 (qwen_vl_utils MIN_PIXELS = 4*28*28, MAX_PIXELS = 16384*28*28; "
        "keras_hub qwen2_vl smart_resize defaults agree)",
    ),
)
_INTERNVIT_300M = VisionSpec(
    name="internvit-300m-448px", patch=14, temporal_patch=1, hidden=1024, layers=24, heads=16, intermediate=4096,
    merge=2, merger="internvl", token_rule="internvl", learned_pos=True, cls_token=True, layer_scale=True,
    tile=448, max_tiles=12, thumbnail=True,
    sources=(
        "InternViT-300M-448px (vision tower of InternVL2-2B and -8B; seed-systems-facts §3: hidden 1024, fc1 4096): "
        "printed InternVisionModel (code search, InternVL3-1B module dump, same tower): Conv2d(3,1024,14,14), "
        "qkv Linear(1024,3072,bias), proj 1024->1024, fc1 1024->4096, GELU, fc2, LayerNorm eps 1e-6, "
        "layer scale ls1/ls2; 24 layers, 16 heads, 448-px input -> 32x32 patches + 1 class token",
        "projector (InternVLChatModel.mlp1): pixel shuffle with downsample_ratio 0.5 (2x2 patches -> 4096 wide), "
        "LayerNorm(4096), Linear(4096, LLM hidden), GELU, Linear(LLM hidden, LLM hidden); "
        "num_image_token = (448/14)^2 x 0.25 = 256 per tile",
        "token rule: InternVL dynamic_preprocess (min_num 1, max_num = max_dynamic_patch 12, image_size 448, "
        "use_thumbnail True) with find_closest_aspect_ratio (copied verbatim into lmdeploy/xtuner from "
        "huggingface.co/OpenGVLab/InternVL-Chat-V1-5)",
    ),
    unverified=("max_dynamic_patch_12",),
)
_MOONVIT = VisionSpec(
    name="moonvit-400m", patch=14, temporal_patch=1, hidden=1152, layers=27, heads=16, intermediate=4304,
    merge=2, merger="kimivl", token_rule="kimivl", rope_2d=True, learned_pos=True, final_norm=True,
    max_patches=4096,
    sources=(
        "Kimi-VL-A3B-Instruct configuration_kimi_vl.py MoonViTConfig (as adapted in vLLM "
        "transformers_utils/configs and NVIDIA-NeMo Automodel kimivl/model.py): patch 14, 27 layers, hidden 1152, "
        "16 heads, intermediate 4304, merge_kernel_size (2,2); learned pos-emb (64x64, interpolated) + 2D RoPE",
        "projector (KimiVLMultiModalProjector): pre_norm LayerNorm(1152) per patch, flatten 2x2 -> 4608, "
        "linear_1 4608->4608 + GELU, linear_2 4608 -> text hidden 2048",
    ),
    unverified=("in_token_limit_4096_and_pad_to_28",),
)
_QWEN3VL_VIT = VisionSpec(
    name="qwen3-vl-vit", patch=16, temporal_patch=2, hidden=1152, layers=27, heads=16, intermediate=4304,
    merge=2, merger="qwen3vl", token_rule="qwen2vl", rope_2d=True, learned_pos=True, deepstack=3,
    min_pixels=65536, max_pixels=16777216,
    sources=(
        "Qwen3-VL-30B-A3B-Instruct vision_config (seed-systems-facts §3: depth 27, hidden 1152, out_hidden 2048, "
        "patch 16); transformers Qwen3VLVisionConfig defaults: intermediate 4304, 16 heads, temporal_patch 2, "
        "spatial_merge 2, deepstack_visual_indexes [8, 16, 24] (three extra mergers whose outputs are added to the "
        "first LLM layers)",
        "token rule: the Qwen2-VL smart_resize with factor 32 (patch 16 x merge 2)",
    ),
    unverified=("min_pixels_65536_max_pixels_16777216",),
)

#: language-model preset -> its vision tower
_TOWERS: dict[str, VisionSpec] = {
    "qwen2vl-2b": _QWEN2VL_VIT, "qwen2vl-7b": _QWEN2VL_VIT, "qwen2vl-72b": _QWEN2VL_VIT,
    "internvl2-2b": _INTERNVIT_300M, "internvl2-8b": _INTERNVIT_300M,
    "kimi-vl-a3b": _MOONVIT, "qwen3-vl-30b-a3b": _QWEN3VL_VIT,
}


def vision_presets() -> list[str]:
    """Language-model presets that have a vision tower."""
    return list(_TOWERS)


def vision_spec(model: str) -> VisionSpec:
    if model not in _TOWERS:
        raise InputError(f"model {model!r} has no vision tower in qesim; --images works with "
                         f"{', '.join(_TOWERS)}")
    return _TOWERS[model]


# --- image -> tokens ------------------------------------------------------------------------
def qwen2vl_smart_resize(height: int, width: int, factor: int = 28, min_pixels: int = 56 * 56,
                         max_pixels: int = 16384 * 28 * 28) -> tuple[int, int]:
    """(height, width) in pixels after Qwen2-VL's ``smart_resize``: both multiples of ``factor``,
    area within [min_pixels, max_pixels], aspect ratio kept as closely as possible (Python's
    ``round`` = round-half-even, as the reference uses)."""
    if height < factor or width < factor:
        raise InputError(f"image {width}x{height}: both sides must be >= {factor} px for this model")
    if max(height, width) / min(height, width) > 200:
        raise InputError(f"image {width}x{height}: aspect ratio must be < 200")
    h_bar = round(height / factor) * factor
    w_bar = round(width / factor) * factor
    if h_bar * w_bar > max_pixels:
        beta = math.sqrt((height * width) / max_pixels)
        h_bar = math.floor(height / beta / factor) * factor
        w_bar = math.floor(width / beta / factor) * factor
    elif h_bar * w_bar < min_pixels:
        beta = math.sqrt(min_pixels / (height * width))
        h_bar = math.ceil(height * beta / factor) * factor
        w_bar = math.ceil(width * beta / factor) * factor
    return h_bar, w_bar


def _closest_aspect_ratio(aspect_ratio: float, target_ratios, width: int, height: int,
                          image_size: int) -> tuple[int, int]:
    best_diff = float("inf")
    best = (1, 1)
    area = width * height
    for ratio in target_ratios:
        diff = abs(aspect_ratio - ratio[0] / ratio[1])
        if diff < best_diff:
            best_diff, best = diff, ratio
        elif diff == best_diff and area > 0.5 * image_size * image_size * ratio[0] * ratio[1]:
            best = ratio
    return best


def internvl_tiles(width: int, height: int, *, image_size: int = 448, min_num: int = 1, max_num: int = 12,
                   use_thumbnail: bool = True) -> tuple[int, int, int]:
    """(cols, rows, tiles) of InternVL's ``dynamic_preprocess``: the grid of ``image_size`` tiles
    closest to the image's aspect ratio (ties go to the larger grid when the image covers more than
    half of it), plus one thumbnail tile when the grid has more than one tile."""
    ratios = {(i, j) for n in range(min_num, max_num + 1) for i in range(1, n + 1) for j in range(1, n + 1)
              if min_num <= i * j <= max_num}
    ratios = sorted(ratios, key=lambda r: r[0] * r[1])
    cols, rows = _closest_aspect_ratio(width / height, ratios, width, height, image_size)
    tiles = cols * rows
    if use_thumbnail and tiles != 1:
        tiles += 1
    return cols, rows, tiles


def kimivl_grid(width: int, height: int, *, patch: int = 14, merge: int = 2, max_patches: int = 4096) -> tuple[int, int]:
    """(patch rows, patch cols) of Kimi-VL's image processor: scale down by sqrt if the image has
    more than ``max_patches`` patches (in_token_limit), then pad each side to a multiple of
    patch x merge."""
    w, h = width, height
    if (w // patch) * (h // patch) > max_patches:
        s = math.sqrt(max_patches / ((w // patch) * (h // patch)))
        w, h = int(w * s), int(h * s)
    unit = patch * merge
    h = -(-h // unit) * unit
    w = -(-w // unit) * unit
    return h // patch, w // patch


@dataclass(frozen=True)
class ImageLayout:
    """What one image becomes. ``crops`` ViT inputs (InternVL tiles; 1 otherwise) of
    ``patches_per_crop`` patches each (+ a class token for InternViT); ``tokens`` LLM tokens."""

    width: int
    height: int
    crops: int
    patches_per_crop: int
    tokens: int
    detail: str

    @property
    def patches(self) -> int:
        return self.crops * self.patches_per_crop


def image_layout(vs: VisionSpec, width: int, height: int) -> ImageLayout:
    """Patches and LLM tokens of one ``width`` x ``height`` image by the model's own rule."""
    if width < 1 or height < 1:
        raise InputError(f"image size {width}x{height}: both sides must be >= 1 px")
    m2 = vs.merge * vs.merge
    if vs.token_rule == "qwen2vl":
        factor = vs.patch * vs.merge
        h, w = qwen2vl_smart_resize(height, width, factor, vs.min_pixels, vs.max_pixels)
        gh, gw = h // vs.patch, w // vs.patch
        return ImageLayout(width, height, 1, gh * gw, gh * gw // m2, f"resized to {w}x{h}, {gw}x{gh} patches")
    if vs.token_rule == "internvl":
        cols, rows, tiles = internvl_tiles(width, height, image_size=vs.tile, max_num=vs.max_tiles,
                                           use_thumbnail=vs.thumbnail)
        g = vs.tile // vs.patch
        per_tile = g * g
        thumb = " + thumbnail" if tiles != cols * rows else ""
        return ImageLayout(width, height, tiles, per_tile, tiles * per_tile // m2,
                           f"{cols}x{rows} tiles of {vs.tile} px{thumb}")
    gh, gw = kimivl_grid(width, height, patch=vs.patch, merge=vs.merge, max_patches=vs.max_patches)
    return ImageLayout(width, height, 1, gh * gw, gh * gw // m2, f"padded to {gw}x{gh} patches")


def parse_image_size(text: str) -> tuple[int, int]:
    """``'896x672'`` -> (width 896, height 672)."""
    parts = str(text).lower().replace(" ", "").split("x")
    try:
        w, h = (int(p) for p in parts)
    except ValueError:
        raise InputError(f"--image-size {text!r} must be WIDTHxHEIGHT in pixels, e.g. 448x448") from None
    if w < 1 or h < 1:
        raise InputError(f"--image-size {text!r}: width and height must be >= 1")
    return w, h


def parse_quantize(text: str | Sequence[str] | None) -> frozenset[str]:
    """``'L,V,M'`` -> {'L','V','M'} (the quantized parts); None -> {'L'} (the paper's main tables)."""
    if text is None:
        return frozenset("L")
    items = text.split(",") if isinstance(text, str) else list(text)
    parts = {p.strip().upper() for p in items if p.strip()}
    bad = sorted(parts - {"L", "V", "M"})
    if bad:
        raise InputError(f"--quantize: unknown part(s) {', '.join(bad)}; use a comma list of "
                         "L (language model), V (visual encoder), M (merger)")
    return frozenset(parts)


# --- vision + merger ops --------------------------------------------------------------------
class _Ops:
    """Op factory for one component at one setting (fp16 or quantized with adapters)."""

    def __init__(self, prefix: str, component: str, quantized: bool, setting: str, method: str,
                 defaults: AdapterDefaults, group_size: Optional[int] = None, input_scaling: Optional[bool] = None):
        qs = parse_setting(setting if quantized else "W16A16", group_size)
        self.prefix, self.component = prefix, component
        self.fields = linear_fields(qs)
        ad = method_adapters(method, defaults)
        self.adapters = ad if (ad is not None and not qs.is_fp16) else None
        self.a_bits = qs.a_bits
        # QE's omega / ASER's smoothing: a per-linear input scaling before its quantizer (as build_graph does)
        rule = self.adapters is not None and method.lower() in INPUT_SCALING_METHODS
        self.scaling = rule if input_scaling is None else (bool(input_scaling) and not qs.is_fp16)
        self.ops: list[Any] = []

    def lin(self, name: str, k: int, n: int, tokens: int, repeat: int = 1, *, fp16: bool = False) -> None:
        f = linear_fields(parse_setting("W16A16")) if fp16 else self.fields
        ad = None if fp16 else self.adapters
        self.ops.append(LinearOp(name=f"{self.prefix}.{name}", in_features=k, out_features=n, tokens=tokens,
                                 repeat=repeat, adapters=ad, component=self.component, **f))

    def sfu(self, name: str, func: str, rows: int, width: int, repeat: int = 1, *, inputs: int = 1,
            out_bits: int = 16, const_elems: int = 0) -> None:
        self.ops.append(SfuOp(name=f"{self.prefix}.{name}", func=func, rows=rows, width=width, inputs=inputs,
                              out_bits=out_bits, repeat=repeat, component=self.component, const_elems=const_elems))

    def quant(self, name: str, rows: int, width: int, repeat: int = 1) -> None:
        """The input quantizer of the next linear (a < 16), preceded by its omega scaling (qe/aser)."""
        if self.scaling:
            # its width-element omega vector is a constant operand loaded per call (as build_graph does)
            self.sfu(name.replace("_quant", "_omega"), "eltwise_mul", rows, width, repeat, const_elems=width)
        if self.a_bits < 16:
            self.sfu(name, "quantize", rows, width, repeat, out_bits=self.a_bits)


def vision_ops(vs: VisionSpec, layout: ImageLayout, *, images: int, llm_hidden: int, setting: str = "W16A16",
               method: str = "none", quantize: frozenset[str] = frozenset("L"),
               adapter_defaults: AdapterDefaults = AdapterDefaults(), group_size: Optional[int] = None,
               input_scaling: Optional[bool] = None) -> list:
    """The ops of the vision tower (component ``vision``) and merger (``merger``) for ``images``
    images of ``layout`` (all requests of a batch together: pass images = batch x images)."""
    crops = images * layout.crops
    seq = layout.patches_per_crop + (1 if vs.cls_token else 0)   # ViT tokens per crop
    P = crops * layout.patches_per_crop                          # patches through the patch embed
    T = crops * seq                                              # rows through the blocks
    h, I, L = vs.hidden, vs.intermediate, vs.layers
    v = _Ops("vision", "vision", "V" in quantize, setting, method, adapter_defaults, group_size, input_scaling)

    v.lin("patch_embed", vs.patch_in, h, P, fp16=True)
    if vs.learned_pos:
        v.sfu("pos_add", "eltwise_add", T, h, inputs=2)
    v.sfu("block.norm1", "layernorm", T, h, L)
    v.quant("block.qkv_quant", T, h, L)
    v.lin("block.qkv", h, 3 * h, T, L)
    if vs.rope_2d:
        v.sfu("block.rope", "rope", T, 2 * h, L)
    v.ops.append(AttentionOp(name="vision.block.attention", batch=crops, heads=vs.heads, kv_heads=vs.heads,
                             head_dim=vs.head_dim, q_len=seq, kv_len=seq, causal=False, repeat=L,
                             component="vision"))
    v.quant("block.proj_quant", T, h, L)
    v.lin("block.proj", h, h, T, L)
    if vs.layer_scale:
        v.sfu("block.ls1", "eltwise_mul", T, h, L)
    v.sfu("block.attn_residual", "eltwise_add", T, h, L, inputs=2)
    v.sfu("block.norm2", "layernorm", T, h, L)
    v.quant("block.fc1_quant", T, h, L)
    v.lin("block.fc1", h, I, T, L)
    v.sfu("block.act", "gelu", T, I, L)
    v.quant("block.fc2_quant", T, I, L)
    v.lin("block.fc2", I, h, T, L)
    if vs.layer_scale:
        v.sfu("block.ls2", "eltwise_mul", T, h, L)
    v.sfu("block.mlp_residual", "eltwise_add", T, h, L, inputs=2)
    if vs.final_norm:
        v.sfu("final_norm", "layernorm", T, h)

    m = _Ops("merger", "merger", "M" in quantize, setting, method, adapter_defaults, group_size, input_scaling)
    tok = P // (vs.merge * vs.merge)   # merged tokens (class tokens dropped)
    W = vs.merged_width
    if vs.merger in ("qwen2vl", "qwen3vl", "kimivl"):
        # LayerNorm per patch (hidden wide), then the 2x2 concat -> MLP(W -> W) GELU -> LLM hidden
        _merger_mlp(m, "", (P, h), tok, W, W, llm_hidden)
        if vs.deepstack:   # Qwen3-VL DeepStack: post-shuffle LayerNorm(W), same MLP, on 3 ViT layers
            _merger_mlp(m, "deepstack.", (tok, W), tok, W, W, llm_hidden, vs.deepstack)
            m.sfu("deepstack.add", "eltwise_add", tok, llm_hidden, vs.deepstack, inputs=2)
    else:  # InternVL mlp1: pixel shuffle (reshape), LayerNorm(W), Linear(W, H), GELU, Linear(H, H)
        _merger_mlp(m, "", (tok, W), tok, W, llm_hidden, llm_hidden)
    return v.ops + m.ops


def _merger_mlp(m: "_Ops", prefix: str, norm: tuple[int, int], tok: int, w_in: int, w_mid: int, w_out: int,
                repeat: int = 1) -> None:
    """A merger's LayerNorm (``norm`` = (rows, width)) then MLP ``w_in -> w_mid`` GELU ``-> w_out``
    over ``tok`` merged tokens, each linear preceded by its activation quantization; ``repeat``
    copies (DeepStack's extra mergers). Op names: PREFIX + norm, fc1_quant, fc1, act, fc2_quant, fc2."""
    m.sfu(prefix + "norm", "layernorm", norm[0], norm[1], repeat)
    m.quant(prefix + "fc1_quant", tok, w_in, repeat)
    m.lin(prefix + "fc1", w_in, w_mid, tok, repeat)
    m.sfu(prefix + "act", "gelu", tok, w_mid, repeat)
    m.quant(prefix + "fc2_quant", tok, w_mid, repeat)
    m.lin(prefix + "fc2", w_mid, w_out, tok, repeat)


def build_vlm_graph(
    model: str,
    *,
    stage: str,
    images: int,
    image_size: tuple[int, int],
    text_tokens: int = 64,
    context_len: int = 0,
    batch: int = 1,
    setting: str = "W16A16",
    method: str = "none",
    quantize: str | Sequence[str] | None = None,
    density: Any = 1.0,
    adapter_defaults: AdapterDefaults = AdapterDefaults(),
    kv_bits: Optional[int] = None,
    group_size: Optional[int] = None,
    linear_overrides: Optional[dict] = None,
    input_scaling: Optional[bool] = None,
) -> LayerGraph:
    """One whole request: vision tower + merger + the LLM over ``text_tokens`` + image tokens.

    ``images`` images of ``image_size`` = (width, height) px per sequence, ``batch`` sequences.
    Prefill: the vision and merger ops run, the LLM prefills ``text_tokens + image_tokens``
    tokens per sequence (its token-embedding gather covers only the text tokens; the image tokens
    come from the merger). Decode: the images are already encoded, their tokens sit in the KV
    cache (``context_len`` is the text context; the image tokens are added to it) and only the
    LLM runs. ``density`` applies to the LLM linears only. ``quantize`` picks the quantized parts
    (default ``L``). ``input_scaling`` (None = the method's rule, see build_graph) applies to every part.
    """
    from qesim.graph.builders import build_graph
    from qesim.graph.presets import get_spec

    parts = parse_quantize(quantize)
    if not isinstance(images, int) or images < 0:
        raise InputError(f"--images must be an integer >= 0 (got {images!r})")
    if not isinstance(text_tokens, int) or text_tokens < 1:
        raise InputError(f"--seq-len (text tokens) must be an integer >= 1 (got {text_tokens!r})")
    spec = get_spec(model)
    vs = vision_spec(spec.name)
    lay = image_layout(vs, *image_size)
    img_tok = images * lay.tokens
    lang_setting = setting if "L" in parts else "W16A16"
    lang_method = method if "L" in parts else "none"
    if stage == "prefill":
        g = build_graph(spec.name, stage=stage, seq_len=text_tokens + img_tok, context_len=context_len, batch=batch,
                        setting=lang_setting, method=lang_method, density=density,
                        adapter_defaults=adapter_defaults, kv_bits=kv_bits, group_size=group_size,
                        linear_overrides=linear_overrides, input_scaling=input_scaling)
        lang = []
        for op in g.ops:
            if op.kind == "embedding" and op.name == "embedding":
                op = op.model_copy(update={"tokens": batch * text_tokens})
            lang.append(op)
        front = vision_ops(vs, lay, images=batch * images, llm_hidden=spec.hidden, setting=setting, method=method,
                           quantize=parts, adapter_defaults=adapter_defaults,
                           group_size=group_size, input_scaling=input_scaling) if images else []
        ops = front + lang
    else:
        g = build_graph(spec.name, stage=stage, seq_len=1, context_len=context_len + img_tok, batch=batch,
                        setting=lang_setting, method=lang_method, density=density,
                        adapter_defaults=adapter_defaults, kv_bits=kv_bits, group_size=group_size,
                        linear_overrides=linear_overrides, input_scaling=input_scaling)
        ops = list(g.ops)
    qs = parse_setting(setting)
    qtag = "".join(p for p in "LVM" if p in parts)
    meta = dict(g.meta)
    meta.update(images=images, image_width=image_size[0], image_height=image_size[1], image_tokens=img_tok,
                text_tokens=text_tokens, image_crops=lay.crops, image_patches=lay.patches,
                image_detail=lay.detail, vision_tower=vs.name, quantize=",".join(p for p in "LVM" if p in parts),
                vision_unverified=",".join(vs.unverified) or None)
    return LayerGraph(
        name=f"{spec.name}-{stage}-{qs.name}-{method.lower()}-img{images}x{image_size[0]}x{image_size[1]}-q{qtag}",
        model=spec.name, stage=stage, batch=batch, seq_len=g.seq_len, context_len=g.context_len,
        setting=qs.name, method=method.lower(), ops=ops, meta=meta)


def workload_graph(w: dict) -> LayerGraph:
    """The graph of one sweep workload (``qesim.dse.space.WORKLOAD_FIELDS``): a whole VLM request when
    ``images`` > 0 or ``quantize`` is not ``L``, else the text-only :func:`qesim.graph.builders.build_graph`."""
    from qesim.graph.builders import build_graph

    images = int(w.get("images") or 0)
    quantize = w.get("quantize") or "L"
    if images or parse_quantize(quantize) != frozenset("L"):
        return build_vlm_graph(w["model"], stage=w["stage"], images=images,
                               image_size=parse_image_size(w.get("image_size") or "448x448"),
                               text_tokens=int(w["seq_len"]), context_len=int(w["context_len"]), batch=int(w["batch"]),
                               setting=w["setting"], method=w["method"], quantize=quantize, density=w["density"],
                               group_size=int(w.get("group_size") or 0) or None)
    return build_graph(w["model"], stage=w["stage"], seq_len=int(w["seq_len"]), context_len=int(w["context_len"]),
                       batch=int(w["batch"]), setting=w["setting"], method=w["method"], density=w["density"],
                       group_size=int(w.get("group_size") or 0) or None)


# --- per-component totals --------------------------------------------------------------------
def annotate_components(d: dict, graph: LayerGraph, frequency_hz: float) -> dict:
    """Add to an estimate's ``--json`` dict (in place): ``component`` on every op record and, for a
    vision-language request graph, ``images``, ``image_tokens``, ``text_tokens``, ``quantize`` and
    ``components`` (:func:`component_summary`). Needs ``d['ops']`` and ``d['fused_into']``."""
    comp = {op.name: op.component for op in graph.ops}
    for o in d["ops"]:
        o["component"] = comp.get(o["name"], "language")
    if "image_tokens" in graph.meta:
        d.update(images=graph.meta["images"], image_tokens=graph.meta["image_tokens"],
                 text_tokens=graph.meta["text_tokens"], quantize=graph.meta["quantize"])
        d["components"] = component_summary(graph, d, frequency_hz, d.get("fused_into"))
    return d

def component_summary(graph: LayerGraph, est: dict, frequency_hz: float,
                      fused_into: Optional[dict] = None) -> dict:
    """Per component: ``latency_s``, ``cycles``, ``bytes`` (off-chip, whole pass), ``macs`` and
    ``bound`` (the per-op bound holding most of the component's cycles), from the per-op records
    of an estimate (``est['ops']``, the ``--json`` list) and each op's ``component`` in the graph.
    Fused SFU ops (no cycles of their own) belong to the component of the op they fuse into."""
    comp = {op.name: op.component for op in graph.ops}
    for sfu, into in (fused_into or {}).items():
        comp[sfu] = comp.get(into, comp.get(sfu, "language"))
    out: dict[str, dict] = {}
    weights: dict[str, dict[str, float]] = {}
    for o in est["ops"]:
        c = comp.get(o["name"], "language")
        d = out.setdefault(c, dict(cycles=0.0, bytes=0.0, macs=0, ops=0))
        d["cycles"] += o["total_cycles"]
        d["bytes"] += o["bytes"] * o["repeat"]
        d["macs"] += o["macs"] * o["repeat"]
        d["ops"] += 1
        w = weights.setdefault(c, {})
        w[o["bound"]] = w.get(o["bound"], 0.0) + o["total_cycles"]
    res = {}
    for c in COMPONENTS:
        if c not in out:
            continue
        d = out[c]
        d["latency_s"] = d["cycles"] / frequency_hz
        d["bound"] = max(weights[c], key=weights[c].get) if weights[c] else ""
        res[c] = d
    return res
