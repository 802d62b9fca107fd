#!/usr/bin/python3
"""Reference fixtures for tsdpo's Llama-family model, computed with PyTorch.

Writes test/fixtures/torch/{llama,qwen2,qwen3,gemma2,gemma3}.safetensors. Each file holds a tiny deterministic model
(Hugging Face tensor names), a fixed batch, and what tsdpo must reproduce from them: logits, per-token log-probs, the
summed completion log-prob S, dS/dparam for every parameter, and ten AdamW steps on loss = -S / sum(mask). The two
Gemma files also hold the gradient of a sigmoid DPO loss over the batch, and float64 copies of it and of the logits.

The models are written out by hand below (no transformers), following Hugging Face's modeling_llama / modeling_qwen2 /
modeling_qwen3 / modeling_gemma2 / modeling_gemma3 semantics. Everything is computed in float64 from float32 weights,
so the stored float32 results are the exact answer rounded once; tsdpo's float32 kernels are compared against them
with a tolerance.

Run with Debian's torch: apt-get install python3-torch && /usr/bin/python3 tools/torch_fixtures.py
"""

import json
import math
import os
import struct
import sys

import torch

FIXTURE_VERSION = "1"
GENERATOR = "tools/torch_fixtures.py"
OUT_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "test", "fixtures", "torch")

# Shape letters as in tsdpo: N sequences, T time, C channels, V vocabulary, L layers, NH heads, NKV KV heads,
# HS head size, FF MLP width.
N, T = 4, 12

# Written in Hugging Face config.json keys so the TypeScript side can feed them through its config.json loader.
CONFIGS = {
    "llama": {
        "model_type": "llama",
        "vocab_size": 61,
        "hidden_size": 48,
        "num_hidden_layers": 2,
        "num_attention_heads": 6,
        "num_key_value_heads": 2,
        "head_dim": 8,
        "intermediate_size": 72,
        "rope_theta": 10000.0,
        # With HS=8 and theta=1e4 the wavelengths 2*pi/inv_freq are 6.28, 62.8, 628, 6283. An original context of
        # 128 puts them in all three bands of the Llama 3.1 rule (< 32 unchanged, 32..128 interpolated, > 128
        # divided by factor); 8 would leave the unchanged band empty. check_llama3_bands() asserts this.
        "rope_scaling": {
            "rope_type": "llama3",
            "factor": 4.0,
            "low_freq_factor": 1.0,
            "high_freq_factor": 4.0,
            "original_max_position_embeddings": 128,
        },
        "rms_norm_eps": 1e-5,
        "tie_word_embeddings": False,
        "attention_bias": False,
        "max_position_embeddings": 512,  # factor * original, as Llama 3.1 configs have it
    },
    "qwen2": {
        "model_type": "qwen2",
        "vocab_size": 59,
        "hidden_size": 32,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "head_dim": 8,
        "intermediate_size": 56,
        "rope_theta": 1000000.0,
        "rope_scaling": None,
        "rms_norm_eps": 1e-6,
        "tie_word_embeddings": True,
        "attention_bias": True,  # Qwen2 always has q/k/v biases (and no o_proj bias)
        "max_position_embeddings": 64,
    },
    "qwen3": {
        "model_type": "qwen3",
        "vocab_size": 53,
        "hidden_size": 32,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "head_dim": 16,  # != hidden_size / num_attention_heads, as Qwen3 allows
        "intermediate_size": 48,
        "rope_theta": 1000000.0,
        "rope_scaling": {"rope_type": "linear", "factor": 2.0},
        "rms_norm_eps": 1e-6,
        "tie_word_embeddings": True,
        "attention_bias": False,
        "max_position_embeddings": 64,
    },
    # Gemma 2: sandwich norms with (1 + w) weights, sqrt(C)-scaled embeddings, GeGLU (tanh GELU), attention scaled
    # by query_pre_attn_scalar^-1/2 and soft-capped, a final logit soft-cap, sliding-window layers between global
    # ones. The caps are small enough that tanh bends the scores and logits of these weights (build() asserts it).
    "gemma2": {
        "model_type": "gemma2",
        "vocab_size": 67,
        "hidden_size": 32,
        "num_hidden_layers": 3,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "head_dim": 16,
        "intermediate_size": 48,
        "hidden_activation": "gelu_pytorch_tanh",
        "rope_theta": 10000.0,
        "rms_norm_eps": 1e-6,
        "tie_word_embeddings": True,
        "attention_bias": False,
        "max_position_embeddings": 64,
        "query_pre_attn_scalar": 24,
        "attn_logit_softcapping": 2.0,
        "final_logit_softcapping": 3.0,
        "sliding_window": 4,
        "layer_types": ["sliding_attention", "full_attention", "sliding_attention"],
    },
    # Gemma 3 (the text model): as Gemma 2 without the soft-caps, plus per-head q/k norms, and local (sliding)
    # layers with their own RoPE base rope_local_base_freq and no scaling; global layers use rope_theta with
    # rope_scaling.
    "gemma3": {
        "model_type": "gemma3_text",
        "vocab_size": 71,
        "hidden_size": 32,
        "num_hidden_layers": 4,
        "num_attention_heads": 4,
        "num_key_value_heads": 1,
        "head_dim": 16,
        "intermediate_size": 40,
        "hidden_activation": "gelu_pytorch_tanh",
        "rope_theta": 1000000.0,
        "rope_local_base_freq": 10000.0,
        "rope_scaling": {"rope_type": "linear", "factor": 2.0},
        "rms_norm_eps": 1e-6,
        "tie_word_embeddings": True,
        "attention_bias": False,
        "max_position_embeddings": 64,
        "query_pre_attn_scalar": 20,
        "attn_logit_softcapping": None,
        "final_logit_softcapping": None,
        "sliding_window": 5,
        "layer_types": ["sliding_attention", "sliding_attention", "full_attention", "sliding_attention"],
    },
}

GEMMA_TYPES = ("gemma2", "gemma3_text")

INIT_FORMULA = (
    "Parameter k (0-based, in the order of the HF names: model.embed_tokens.weight; per layer l: input_layernorm, "
    "q_proj.weight, [q_proj.bias], k_proj.weight, [k_proj.bias], v_proj.weight, [v_proj.bias], [q_norm, k_norm], "
    "o_proj, post_attention_layernorm, gate_proj, up_proj, down_proj; model.norm.weight; [lm_head.weight]) with n "
    "elements: base = sin(arange(n, float64) * 0.37 + 1.3 * k); matrices, embeddings and biases = 0.3 * base, norm "
    "weights = 1 + 0.1 * base; reshaped row-major to the HF shape and rounded to float32 (the float32 values are the "
    "model)."
)

INIT_FORMULA_GEMMA = (
    "Parameter k (0-based, in the order of the HF names: model.embed_tokens.weight; per layer l: input_layernorm, "
    "q_proj, k_proj, v_proj, [q_norm, k_norm (gemma3)], o_proj, post_attention_layernorm, pre_feedforward_layernorm, "
    "gate_proj, up_proj, down_proj, post_feedforward_layernorm; model.norm.weight) with n elements: base = "
    "sin(arange(n, float64) * 0.37 + 1.3 * k); matrices and embeddings = 0.3 * base, norm weights = 0.1 * base "
    "(Gemma stores RMSNorm weights as deviations from 1 and multiplies by 1 + w, so this is the same 1 + 0.1 * base "
    "norm scale as the Llama files); reshaped row-major to the HF shape and rounded to float32 (the float32 values "
    "are the model)."
)

ADAMW = {"lr": 1e-2, "beta1": 0.9, "beta2": 0.95, "eps": 1e-8, "weight_decay": 0.1, "steps": 10}

# The DPO loss stored in the Gemma files: rows 0, 1 are the chosen and rows 2, 3 the rejected sequences of the pairs
# (0, 2) and (1, 3). The reference log-probs are the policy's own (per-row masked sums of logp) plus these offsets,
# so that the margins, and with them the gradient, are not those of the trivial policy = reference start.
DPO = {"beta": 0.5, "chosen_rows": [0, 1], "rejected_rows": [2, 3], "ref_offsets": [0.8, -1.1, -0.5, 1.3]}


# ----------------------------------------------------------------------------------------------------------------
# parameters


def derived(cfg):
    """The shape letters of a config, plus the two architecture switches HF encodes in model_type."""
    return dict(
        V=cfg["vocab_size"],
        C=cfg["hidden_size"],
        L=cfg["num_hidden_layers"],
        NH=cfg["num_attention_heads"],
        NKV=cfg["num_key_value_heads"],
        HS=cfg["head_dim"],
        FF=cfg["intermediate_size"],
        qkv_bias=cfg["attention_bias"],
        qk_norm=cfg["model_type"] in ("qwen3", "gemma3_text"),
        tied=cfg["tie_word_embeddings"],
        gemma=cfg["model_type"] in GEMMA_TYPES,
    )


def param_specs(cfg):
    """(HF name, shape, is_norm) in the order that fixes each parameter's index k in the init formula."""
    d = derived(cfg)
    V, C, L, NH, NKV, HS, FF = d["V"], d["C"], d["L"], d["NH"], d["NKV"], d["HS"], d["FF"]
    if d["gemma"]:
        return gemma_param_specs(d)
    specs = [("model.embed_tokens.weight", (V, C), False)]
    for l in range(L):
        p = f"model.layers.{l}."
        specs.append((p + "input_layernorm.weight", (C,), True))
        for proj, rows in (("q_proj", NH * HS), ("k_proj", NKV * HS), ("v_proj", NKV * HS)):
            specs.append((p + f"self_attn.{proj}.weight", (rows, C), False))
            if d["qkv_bias"]:
                specs.append((p + f"self_attn.{proj}.bias", (rows,), False))
        if d["qk_norm"]:
            specs.append((p + "self_attn.q_norm.weight", (HS,), True))
            specs.append((p + "self_attn.k_norm.weight", (HS,), True))
        specs.append((p + "self_attn.o_proj.weight", (C, NH * HS), False))
        specs.append((p + "post_attention_layernorm.weight", (C,), True))
        specs.append((p + "mlp.gate_proj.weight", (FF, C), False))
        specs.append((p + "mlp.up_proj.weight", (FF, C), False))
        specs.append((p + "mlp.down_proj.weight", (C, FF), False))
    specs.append(("model.norm.weight", (C,), True))
    if not d["tied"]:
        specs.append(("lm_head.weight", (V, C), False))
    return specs


def gemma_param_specs(d):
    """Gemma 2/3: sandwich norms around attention and MLP, q/k norms on Gemma 3, tied embeddings, no biases."""
    V, C, L, NH, NKV, HS, FF = d["V"], d["C"], d["L"], d["NH"], d["NKV"], d["HS"], d["FF"]
    assert d["tied"] and not d["qkv_bias"], "the Gemma fixtures are tied and bias-free"
    specs = [("model.embed_tokens.weight", (V, C), False)]
    for l in range(L):
        p = f"model.layers.{l}."
        specs.append((p + "input_layernorm.weight", (C,), True))
        specs.append((p + "self_attn.q_proj.weight", (NH * HS, C), False))
        specs.append((p + "self_attn.k_proj.weight", (NKV * HS, C), False))
        specs.append((p + "self_attn.v_proj.weight", (NKV * HS, C), False))
        if d["qk_norm"]:
            specs.append((p + "self_attn.q_norm.weight", (HS,), True))
            specs.append((p + "self_attn.k_norm.weight", (HS,), True))
        specs.append((p + "self_attn.o_proj.weight", (C, NH * HS), False))
        specs.append((p + "post_attention_layernorm.weight", (C,), True))
        specs.append((p + "pre_feedforward_layernorm.weight", (C,), True))
        specs.append((p + "mlp.gate_proj.weight", (FF, C), False))
        specs.append((p + "mlp.up_proj.weight", (FF, C), False))
        specs.append((p + "mlp.down_proj.weight", (C, FF), False))
        specs.append((p + "post_feedforward_layernorm.weight", (C,), True))
    specs.append(("model.norm.weight", (C,), True))
    return specs


def init_params(cfg):
    """Float32 weights by the sin formula (INIT_FORMULA, INIT_FORMULA_GEMMA), keyed by HF name, in spec order."""
    gemma = derived(cfg)["gemma"]
    params = {}
    for k, (name, shape, is_norm) in enumerate(param_specs(cfg)):
        n = math.prod(shape)
        base = torch.sin(torch.arange(n, dtype=torch.float64) * 0.37 + 1.3 * k)
        if is_norm:
            value = 0.1 * base if gemma else 1.0 + 0.1 * base  # Gemma's norms multiply by 1 + w
        else:
            value = 0.3 * base
        params[name] = value.reshape(shape).to(torch.float32)
    return params


# ----------------------------------------------------------------------------------------------------------------
# model


def rope_inv_freq(cfg, theta=None, scaling="config"):
    """inv_freq (HS/2,) with HF's rope scaling applied (modeling_rope_utils), in float64. theta and scaling default
    to the config's rope_theta and rope_scaling (a Gemma 3 local layer passes rope_local_base_freq and None)."""
    HS = cfg["head_dim"]
    theta = cfg["rope_theta"] if theta is None else theta
    inv_freq = 1.0 / theta ** (torch.arange(0, HS, 2, dtype=torch.float64) / HS)
    scaling = cfg.get("rope_scaling") if scaling == "config" else scaling
    if scaling is None:
        return inv_freq
    kind = scaling["rope_type"]
    if kind == "linear":
        return inv_freq / scaling["factor"]
    if kind == "llama3":
        # Llama 3.1: frequencies whose wavelength is shorter than original/high_freq_factor keep their value, those
        # longer than original/low_freq_factor are divided by factor, and the band between blends the two linearly
        # in original/wavelen.
        factor = scaling["factor"]
        lo, hi = scaling["low_freq_factor"], scaling["high_freq_factor"]
        orig = scaling["original_max_position_embeddings"]
        wavelen = 2 * math.pi / inv_freq
        out = torch.empty_like(inv_freq)
        for i in range(inv_freq.numel()):
            w, f = wavelen[i].item(), inv_freq[i].item()
            if w < orig / hi:
                out[i] = f
            elif w > orig / lo:
                out[i] = f / factor
            else:
                smooth = (orig / w - lo) / (hi - lo)
                out[i] = (1 - smooth) * f / factor + smooth * f
        return out
    raise ValueError(f"rope_type {kind!r} is not implemented here")


def llama3_bands(cfg):
    """Which branch of the llama3 rule each frequency takes: 'keep', 'blend' or 'divide'."""
    s = cfg["rope_scaling"]
    HS = cfg["head_dim"]
    inv_freq = 1.0 / cfg["rope_theta"] ** (torch.arange(0, HS, 2, dtype=torch.float64) / HS)
    bands = []
    for f in inv_freq.tolist():
        w = 2 * math.pi / f
        if w < s["original_max_position_embeddings"] / s["high_freq_factor"]:
            bands.append("keep")
        elif w > s["original_max_position_embeddings"] / s["low_freq_factor"]:
            bands.append("divide")
        else:
            bands.append("blend")
    return bands


def rmsnorm(x, w, eps):
    # x (..., D), w (D,)
    return x / torch.sqrt(x.pow(2).mean(dim=-1, keepdim=True) + eps) * w


def rotate_half(x):
    # HF layout: element i pairs with element i + HS/2
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


def forward(P, cfg, ids):
    """Logits (N, T, V) for token ids (N, T); P maps HF names to float64 tensors."""
    d = derived(cfg)
    C, L, NH, NKV, HS = d["C"], d["L"], d["NH"], d["NKV"], d["HS"]
    eps = cfg["rms_norm_eps"]
    n, t = ids.shape

    angles = torch.arange(t, dtype=torch.float64)[:, None] * rope_inv_freq(cfg)[None, :]  # (T, HS/2)
    cos = torch.cat((angles.cos(), angles.cos()), dim=-1)  # (T, HS)
    sin = torch.cat((angles.sin(), angles.sin()), dim=-1)  # (T, HS)
    causal = torch.ones(t, t, dtype=torch.bool).tril()  # (T, T) query row may see key column

    x = P["model.embed_tokens.weight"][ids]  # (N, T, C)
    for l in range(L):
        p = f"model.layers.{l}."
        h = rmsnorm(x, P[p + "input_layernorm.weight"], eps)
        q = h @ P[p + "self_attn.q_proj.weight"].T  # (N, T, NH*HS)
        k = h @ P[p + "self_attn.k_proj.weight"].T  # (N, T, NKV*HS)
        v = h @ P[p + "self_attn.v_proj.weight"].T  # (N, T, NKV*HS)
        if d["qkv_bias"]:
            q = q + P[p + "self_attn.q_proj.bias"]
            k = k + P[p + "self_attn.k_proj.bias"]
            v = v + P[p + "self_attn.v_proj.bias"]
        q = q.view(n, t, NH, HS).transpose(1, 2)  # (N, NH, T, HS)
        k = k.view(n, t, NKV, HS).transpose(1, 2)  # (N, NKV, T, HS)
        v = v.view(n, t, NKV, HS).transpose(1, 2)  # (N, NKV, T, HS)
        if d["qk_norm"]:
            q = rmsnorm(q, P[p + "self_attn.q_norm.weight"], eps)
            k = rmsnorm(k, P[p + "self_attn.k_norm.weight"], eps)
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        # query head h reads KV head h // (NH / NKV)
        k = k.repeat_interleave(NH // NKV, dim=1)  # (N, NH, T, HS)
        v = v.repeat_interleave(NH // NKV, dim=1)  # (N, NH, T, HS)
        scores = (q @ k.transpose(-1, -2)) / math.sqrt(HS)  # (N, NH, T, T)
        scores = scores.masked_fill(~causal, float("-inf"))
        att = torch.softmax(scores, dim=-1) @ v  # (N, NH, T, HS)
        att = att.transpose(1, 2).reshape(n, t, NH * HS)
        x = x + att @ P[p + "self_attn.o_proj.weight"].T

        h = rmsnorm(x, P[p + "post_attention_layernorm.weight"], eps)
        gate = torch.nn.functional.silu(h @ P[p + "mlp.gate_proj.weight"].T)  # (N, T, FF)
        up = h @ P[p + "mlp.up_proj.weight"].T  # (N, T, FF)
        x = x + (gate * up) @ P[p + "mlp.down_proj.weight"].T

    h = rmsnorm(x, P["model.norm.weight"], eps)
    lm_head = P["model.embed_tokens.weight"] if d["tied"] else P["lm_head.weight"]
    return h @ lm_head.T  # (N, T, V)


def rope_tables(inv_freq, t):
    """cos, sin (T, HS) in the rotate-half layout for positions 0..t-1."""
    angles = torch.arange(t, dtype=torch.float64)[:, None] * inv_freq[None, :]  # (T, HS/2)
    return torch.cat((angles.cos(), angles.cos()), dim=-1), torch.cat((angles.sin(), angles.sin()), dim=-1)


def gemma_rmsnorm(x, w, eps):
    # Gemma's RMSNorm: the weight is stored as a deviation from 1
    return x / torch.sqrt(x.pow(2).mean(dim=-1, keepdim=True) + eps) * (1.0 + w)


def gelu_tanh(x):
    # HF's gelu_pytorch_tanh = torch's gelu(approximate="tanh"); written out, checked against torch in build()
    return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x.pow(3))))


def softcap(x, cap):
    return cap * torch.tanh(x / cap) if cap else x


def gemma_layer_attention(cfg, l):
    """Layer l's (window or None, RoPE theta, RoPE scaling or None), from layer_types as HF's Gemma 2/3 read them."""
    sliding = cfg["layer_types"][l] == "sliding_attention"
    window = cfg["sliding_window"] if sliding else None
    if cfg["model_type"] == "gemma3_text" and sliding:
        return window, cfg["rope_local_base_freq"], None  # Gemma 3's local RoPE: its own base, default rope type
    return window, cfg["rope_theta"], cfg.get("rope_scaling")


def gemma_forward(P, cfg, ids, stats=None):
    """Gemma 2 / Gemma 3 text logits (N, T, V), after the final soft-cap; P maps HF names to float64 tensors.
    stats, if given, receives the largest |score| before the attention soft-cap and |logit| before the final one."""
    d = derived(cfg)
    C, L, NH, NKV, HS = d["C"], d["L"], d["NH"], d["NKV"], d["HS"]
    eps = cfg["rms_norm_eps"]
    scale = cfg["query_pre_attn_scalar"] ** -0.5
    attn_cap, final_cap = cfg.get("attn_logit_softcapping"), cfg.get("final_logit_softcapping")
    n, t = ids.shape
    pos = torch.arange(t)
    back = pos[:, None] - pos[None, :]  # (T, T): query row minus key column

    x = P["model.embed_tokens.weight"][ids] * math.sqrt(C)  # (N, T, C); HF rounds sqrt(C) to the model's dtype
    for l in range(L):
        p = f"model.layers.{l}."
        window, theta, scaling = gemma_layer_attention(cfg, l)
        cos, sin = rope_tables(rope_inv_freq(cfg, theta, scaling), t)
        visible = back >= 0 if window is None else (back >= 0) & (back < window)  # (T, T)

        h = gemma_rmsnorm(x, P[p + "input_layernorm.weight"], eps)
        q = (h @ P[p + "self_attn.q_proj.weight"].T).view(n, t, NH, HS).transpose(1, 2)  # (N, NH, T, HS)
        k = (h @ P[p + "self_attn.k_proj.weight"].T).view(n, t, NKV, HS).transpose(1, 2)  # (N, NKV, T, HS)
        v = (h @ P[p + "self_attn.v_proj.weight"].T).view(n, t, NKV, HS).transpose(1, 2)  # (N, NKV, T, HS)
        if d["qk_norm"]:
            q = gemma_rmsnorm(q, P[p + "self_attn.q_norm.weight"], eps)
            k = gemma_rmsnorm(k, P[p + "self_attn.k_norm.weight"], eps)
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        k = k.repeat_interleave(NH // NKV, dim=1)  # (N, NH, T, HS)
        v = v.repeat_interleave(NH // NKV, dim=1)  # (N, NH, T, HS)
        scores = (q @ k.transpose(-1, -2)) * scale  # (N, NH, T, T)
        if stats is not None:
            raw = scores.detach()[..., visible].abs()  # the scores the softmax sees
            stats["max_abs_score"] = max(stats.get("max_abs_score", 0.0), raw.max().item())
            if attn_cap:
                stats.setdefault("scores_beyond_2cap", []).append(round((raw > 2 * attn_cap).double().mean().item(), 3))
        scores = softcap(scores, attn_cap)
        scores = scores.masked_fill(~visible, float("-inf"))
        att = (torch.softmax(scores, dim=-1) @ v).transpose(1, 2).reshape(n, t, NH * HS)
        x = x + gemma_rmsnorm(att @ P[p + "self_attn.o_proj.weight"].T, P[p + "post_attention_layernorm.weight"], eps)

        h = gemma_rmsnorm(x, P[p + "pre_feedforward_layernorm.weight"], eps)
        gate = gelu_tanh(h @ P[p + "mlp.gate_proj.weight"].T)  # (N, T, FF)
        up = h @ P[p + "mlp.up_proj.weight"].T  # (N, T, FF)
        mlp = (gate * up) @ P[p + "mlp.down_proj.weight"].T
        x = x + gemma_rmsnorm(mlp, P[p + "post_feedforward_layernorm.weight"], eps)

    h = gemma_rmsnorm(x, P["model.norm.weight"], eps)
    logits = h @ P["model.embed_tokens.weight"].T  # (N, T, V), tied
    if stats is not None:
        stats["max_abs_logit"] = logits.detach().abs().max().item()
    return softcap(logits, final_cap)


def model_forward(P, cfg, ids):
    return gemma_forward(P, cfg, ids) if derived(cfg)["gemma"] else forward(P, cfg, ids)


def token_logps(logits, targets):
    """logp[n, t] = log_softmax(logits[n, t])[targets[n, t]], shape (N, T)."""
    return torch.log_softmax(logits, dim=-1).gather(-1, targets[..., None]).squeeze(-1)


def summed_logps(P, cfg, inputs):
    """S = sum over n, t of mask * logp: the summed completion log-probs of the batch."""
    logits = model_forward(P, cfg, inputs["ids"])
    logp = token_logps(logits, inputs["targets"])
    return (inputs["mask"] * logp).sum(), logits, logp


def dpo_loss(P, cfg, inputs, ref_logps):
    """Sigmoid DPO loss over the pairs of DPO; ref_logps (N,) are constants. Returns loss, per-row policy logps."""
    logits = model_forward(P, cfg, inputs["ids"])
    policy = (inputs["mask"] * token_logps(logits, inputs["targets"])).sum(dim=1)  # (N,)
    c, r = DPO["chosen_rows"], DPO["rejected_rows"]
    margins = (policy[c] - ref_logps[c]) - (policy[r] - ref_logps[r])
    return -torch.nn.functional.logsigmoid(DPO["beta"] * margins).mean(), policy


# ----------------------------------------------------------------------------------------------------------------
# inputs


def make_inputs(cfg, seed):
    """Random ids; rows have different prompt lengths and some rows are right-padded."""
    V = cfg["vocab_size"]
    gen = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, V, (N, T), generator=gen, dtype=torch.int64)  # padding positions keep their random ids
    prompt_len = [3, 5, 2, 6]
    seq_len = [12, 9, 12, 10]  # < T means right padding
    # targets[n, t] = ids[n, t + 1]; the last position has no next token, so it gets id 0 under mask 0
    targets = torch.cat((ids[:, 1:], torch.zeros(N, 1, dtype=torch.int64)), dim=1)
    mask = torch.zeros(N, T, dtype=torch.float64)
    for r in range(N):
        # the target at t is token t + 1, a completion token when prompt_len <= t + 1 < seq_len
        mask[r, prompt_len[r] - 1 : seq_len[r] - 1] = 1.0
    return {"ids": ids, "targets": targets, "mask": mask, "prompt_len": prompt_len, "seq_len": seq_len}


# ----------------------------------------------------------------------------------------------------------------
# self-checks


def finite_difference_check(P, cfg, inputs, grads, count=3, h=1e-5, objective=None):
    """Autograd dS/dparam (or d objective/dparam) against central differences on a few entries per parameter;
    returns max abs/rel error."""
    objective = objective or (lambda P: summed_logps(P, cfg, inputs)[0])
    gen = torch.Generator().manual_seed(7)
    max_abs, max_rel = 0.0, 0.0
    with torch.no_grad():
        for name, value in P.items():
            flat = value.view(-1)
            for j in torch.randint(0, flat.numel(), (count,), generator=gen).tolist():
                old = flat[j].item()
                flat[j] = old + h
                s_plus = objective(P).item()
                flat[j] = old - h
                s_minus = objective(P).item()
                flat[j] = old
                numeric = (s_plus - s_minus) / (2 * h)
                analytic = grads[name].view(-1)[j].item()
                err = abs(numeric - analytic)
                max_abs = max(max_abs, err)
                max_rel = max(max_rel, err / max(abs(numeric), abs(analytic), 1e-2))
    return max_abs, max_rel


def rope_check(cfg, inv_freq=None):
    """Rotate-half RoPE against the same rotation written as complex multiplication on pairs (i, i + HS/2)."""
    HS = cfg["head_dim"]
    inv_freq = rope_inv_freq(cfg) if inv_freq is None else inv_freq
    x = torch.sin(torch.arange(T * HS, dtype=torch.float64)).view(T, HS)
    angles = torch.arange(T, dtype=torch.float64)[:, None] * inv_freq[None, :]
    cos = torch.cat((angles.cos(), angles.cos()), dim=-1)
    sin = torch.cat((angles.sin(), angles.sin()), dim=-1)
    rotated = x * cos + rotate_half(x) * sin
    z = torch.complex(x[:, : HS // 2], x[:, HS // 2 :]) * torch.polar(torch.ones_like(angles), angles)
    return (rotated - torch.cat((z.real, z.imag), dim=-1)).abs().max().item()


def padding_check(P, cfg, inputs):
    """Changing the ids on right-padding positions must not change S (causal attention, mask 0 there)."""
    ids = inputs["ids"].clone()
    for r in range(N):
        ids[r, inputs["seq_len"][r] :] = (ids[r, inputs["seq_len"][r] :] + 1) % cfg["vocab_size"]
    targets = torch.cat((ids[:, 1:], inputs["targets"][:, -1:]), dim=1)
    other = dict(inputs, ids=ids, targets=targets)
    with torch.no_grad():
        return abs(summed_logps(P, cfg, other)[0].item() - summed_logps(P, cfg, inputs)[0].item())


def sliding_window_check(P, cfg):
    """A token more than a window back reaches a position only through global layers. With the model cut to its
    first layer, made sliding, changing token 0 of row 0 must leave the logits of positions >= window exactly as they
    were and change those before; the whole model (with its global layers) must change the last position's logits.
    Returns (max change at >= window in the cut model, min over positions < window of the max change there, the
    last position's max change in the whole model)."""
    window = cfg["sliding_window"]
    cut = dict(cfg, num_hidden_layers=1, layer_types=["sliding_attention"])
    Pc = {n: w for n, w in P.items() if not n.startswith("model.layers.") or n.startswith("model.layers.0.")}
    ids = torch.randint(0, cfg["vocab_size"], (1, T), generator=torch.Generator().manual_seed(3))
    other = ids.clone()
    other[0, 0] = (other[0, 0] + 1) % cfg["vocab_size"]
    with torch.no_grad():
        cut_diff = (gemma_forward(Pc, cut, ids) - gemma_forward(Pc, cut, other)).abs().amax(dim=-1)[0]  # (T,)
        full_diff = (gemma_forward(P, cfg, ids) - gemma_forward(P, cfg, other)).abs().amax(dim=-1)[0]
    return cut_diff[window:].max().item(), cut_diff[:window].min().item(), full_diff[-1].item()


# ----------------------------------------------------------------------------------------------------------------
# AdamW


def adamw_trajectory(weights, cfg, inputs):
    """Ten torch AdamW steps on loss = -S / sum(mask); returns losses before each step, the final loss, the weights."""
    P = {name: w.to(torch.float64).clone().requires_grad_(True) for name, w in weights.items()}
    # One parameter group: weight decay applies to every tensor, norms and embeddings included, as torch does
    # when given model.parameters().
    opt = torch.optim.AdamW(
        list(P.values()),
        lr=ADAMW["lr"],
        betas=(ADAMW["beta1"], ADAMW["beta2"]),
        eps=ADAMW["eps"],
        weight_decay=ADAMW["weight_decay"],
    )
    count = inputs["mask"].sum()
    losses = []
    for _ in range(ADAMW["steps"]):
        opt.zero_grad()
        loss = -summed_logps(P, cfg, inputs)[0] / count
        losses.append(loss.item())
        loss.backward()
        opt.step()
    with torch.no_grad():
        loss_after = (-summed_logps(P, cfg, inputs)[0] / count).item()
    return losses, loss_after, {name: p.detach() for name, p in P.items()}


# ----------------------------------------------------------------------------------------------------------------
# safetensors


def write_safetensors(path, tensors, metadata):
    """tensors: name -> torch tensor (written as F32, F64 or I64 in insertion order); metadata: str -> str."""
    dtypes = {torch.float32: "F32", torch.float64: "F64", torch.int64: "I64"}
    header = {"__metadata__": metadata}
    blobs, offset = [], 0
    for name, t in tensors.items():
        t = t.detach().contiguous()
        data = t.numpy().astype(t.numpy().dtype.newbyteorder("<")).tobytes()
        header[name] = {"dtype": dtypes[t.dtype], "shape": list(t.shape), "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    head = json.dumps(header, separators=(",", ":")).encode("utf-8")
    head += b" " * (-len(head) % 8)  # data then starts 8-byte aligned
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(head)))
        f.write(head)
        for data in blobs:
            f.write(data)


def read_safetensors(path):
    """Inverse of write_safetensors, used to check the file round-trips."""
    with open(path, "rb") as f:
        raw = f.read()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + n])
    metadata = header.pop("__metadata__")
    body = raw[8 + n :]
    dtypes = {"F32": torch.float32, "F64": torch.float64, "I64": torch.int64}
    tensors = {}
    for name, info in header.items():
        a, b = info["data_offsets"]
        tensors[name] = torch.frombuffer(bytearray(body[a:b]), dtype=dtypes[info["dtype"]]).view(info["shape"])
    return tensors, metadata


# ----------------------------------------------------------------------------------------------------------------
# main


def gemma_extras(name, cfg, weights, inputs, logits):
    """The Gemma-only checks (GELU, soft-caps active, sliding window, local RoPE) and the DPO loss: its gradient
    (float32 and float64 tensors) checked against finite differences, and the "dpo" metadata."""
    gelu_err = (gelu_tanh(logits) - torch.nn.functional.gelu(logits, approximate="tanh")).abs().max().item()
    print(f"[{name}] gelu_tanh vs torch gelu(approximate='tanh'): max abs {gelu_err:.3e}")
    assert gelu_err < 1e-14

    if cfg["model_type"] == "gemma3_text":
        local = rope_inv_freq(cfg, cfg["rope_local_base_freq"], None)
        print(f"[{name}] local rope (base {cfg['rope_local_base_freq']}) vs complex rotation: max abs "
              f"{rope_check(cfg, local):.3e}")

    P = {n: w.to(torch.float64) for n, w in weights.items()}
    stats = {}
    with torch.no_grad():
        gemma_forward(P, cfg, inputs["ids"], stats)
    for key, cap_key in (("max_abs_score", "attn_logit_softcapping"), ("max_abs_logit", "final_logit_softcapping")):
        cap = cfg.get(cap_key)
        if cap:
            print(f"[{name}] {cap_key} {cap}: {key} before the cap {stats[key]:.4f} = {stats[key] / cap:.3f} x cap")
            if cap_key == "attn_logit_softcapping":
                print(f"[{name}] fraction of visible scores beyond 2 x cap (tanh' < 0.071), per layer: "
                      f"{stats['scores_beyond_2cap']}")
            assert stats[key] > 0.5 * cap, f"{cap_key}: tanh would be nearly linear on these values"
        else:
            print(f"[{name}] no {cap_key}; {key} {stats[key]:.4f}")

    cut_far, cut_near, full_far = sliding_window_check(P, cfg)
    print(f"[{name}] token 0 changed, sliding layer 0 alone: max logit change at positions >= window "
          f"{cut_far:.3e}, smallest at positions < window {cut_near:.3e}; whole model at the last position "
          f"{full_far:.3e}")
    assert cut_far == 0.0 and cut_near > 1e-6 and full_far > 1e-6, "sliding-window check failed"

    with torch.no_grad():
        _, policy = dpo_loss(P, cfg, inputs, torch.zeros(N, dtype=torch.float64))
    ref_logps = policy + torch.tensor(DPO["ref_offsets"], dtype=torch.float64)  # (N,), constants from here on
    Pg = {n: w.clone().requires_grad_(True) for n, w in P.items()}
    loss, _ = dpo_loss(Pg, cfg, inputs, ref_logps)
    loss.backward()
    dgrads = {n: p.grad.detach().clone() for n, p in Pg.items()}
    fd_abs, fd_rel = finite_difference_check(
        {n: w.clone() for n, w in P.items()}, cfg, inputs, dgrads, objective=lambda Q: dpo_loss(Q, cfg, inputs, ref_logps)[0]
    )
    print(f"[{name}] DPO loss {loss.item()!r}; autograd vs central differences: max abs {fd_abs:.3e}, "
          f"max rel {fd_rel:.3e}")
    assert fd_rel < 1e-6, "DPO gradient check failed"

    tensors = {}
    for n, g in dgrads.items():
        tensors["dpo64.grad." + n] = g
    meta = {
        "beta": DPO["beta"],
        "chosen_rows": DPO["chosen_rows"],
        "rejected_rows": DPO["rejected_rows"],
        "ref_offsets": DPO["ref_offsets"],
        "policy_logps": policy.tolist(),
        "ref_logps": ref_logps.tolist(),
        "loss": loss.item(),
    }
    return tensors, meta


def build(name, index):
    cfg = CONFIGS[name]
    gemma = derived(cfg)["gemma"]
    weights = init_params(cfg)
    inputs = make_inputs(cfg, seed=1000 + index)

    P = {n: w.to(torch.float64).requires_grad_(True) for n, w in weights.items()}
    S, logits, logp = summed_logps(P, cfg, inputs)
    S.backward()
    grads = {n: p.grad.detach().clone() for n, p in P.items()}

    print(f"[{name}] params {sum(w.numel() for w in weights.values())}, S = {S.item()!r}")
    if cfg.get("rope_scaling") and cfg["rope_scaling"]["rope_type"] == "llama3":
        bands = llama3_bands(cfg)
        print(f"[{name}] llama3 rope bands per frequency: {bands}, inv_freq {rope_inv_freq(cfg).tolist()}")
        assert set(bands) == {"keep", "blend", "divide"}, "the llama3 config must exercise all three branches"
    print(f"[{name}] rope vs complex rotation: max abs {rope_check(cfg):.3e}")
    print(f"[{name}] S change when padding ids change: {padding_check(P, cfg, inputs):.3e}")
    fd_abs, fd_rel = finite_difference_check({n: p.detach().clone() for n, p in P.items()}, cfg, inputs, grads)
    print(f"[{name}] autograd vs central differences: max abs {fd_abs:.3e}, max rel {fd_rel:.3e}")
    assert fd_rel < 1e-6, "gradient check failed"
    if gemma:
        extra_tensors, dpo_meta = gemma_extras(name, cfg, weights, inputs, logits.detach())

    losses, loss_after, final = adamw_trajectory(weights, cfg, inputs)
    print(f"[{name}] AdamW losses {losses} -> {loss_after}")
    assert abs(losses[0] + S.item() / inputs["mask"].sum().item()) < 1e-12

    tensors = dict(weights)
    # Gemma files carry the DPO gradient in float64 only (the float32 checks compare with it too): it keeps the files
    # small, and the summed-log-prob gradient is covered by the Llama-family files.
    for n, g in ([] if gemma else grads.items()):
        tensors["grad." + n] = g.to(torch.float32)
    tensors["logits"] = logits.detach().to(torch.float32)
    tensors["logp"] = logp.detach().to(torch.float32)
    if name == "llama":
        for n, w in final.items():
            tensors["adamw_final." + n] = w.to(torch.float32)
    if gemma:
        tensors.update(extra_tensors)
        tensors["logits64"] = logits.detach()
        tensors["logp64"] = logp.detach()

    metadata = {
        "format": "tsdpo-torch-fixture",
        "fixture_version": FIXTURE_VERSION,
        "generator": GENERATOR,
        "torch_version": torch.__version__,
        "python_version": sys.version.split()[0],
        "config": json.dumps(cfg),
        "init": INIT_FORMULA_GEMMA if gemma else INIT_FORMULA,
        "inputs": json.dumps(
            {
                "ids": inputs["ids"].tolist(),
                "targets": inputs["targets"].tolist(),
                "mask": [[int(m) for m in row] for row in inputs["mask"].tolist()],
            }
        ),
        "S": repr(S.item()),
        "adamw": json.dumps(dict(ADAMW, losses=losses, loss_after=loss_after)),
        "notes": (
            "float64 compute from the float32 weights, results rounded once to float32. inv_freq is computed in "
            "float64 (HF uses float32). AdamW: one parameter group, weight decay on every tensor, loss = -S / "
            "sum(mask), losses[i] is evaluated before step i + 1."
        ),
    }
    if gemma:
        metadata["notes"] = (
            "float64 compute from the float32 weights; logits and logp are the float64 results rounded once, "
            "logits64, logp64 and dpo64.grad.* are the float64 results themselves. inv_freq is computed in float64 "
            "(HF uses float32) and the embedding scale is sqrt(hidden_size) in float64 (HF rounds it to the model's "
            "dtype). logits and logp are after the final soft-cap. Sliding layers: a query at position i sees keys "
            "j with 0 <= i - j < sliding_window. Norm weights are deviations from 1 (init 0.1 * base, see init). "
            "AdamW: one parameter group, weight decay on every tensor, loss = -S / sum(mask), losses[i] is "
            "evaluated before step i + 1. dpo: policy_logps[r] = sum_t mask * logp (rows in order), ref_logps = "
            "policy_logps + ref_offsets (constants), loss = -mean over the pairs (chosen_rows[i], rejected_rows[i]) "
            "of logsigmoid(beta * ((pc - rc) - (pr - rr))); dpo64.grad.<name> is d loss / d param (float64 only)."
        )
        metadata["dpo"] = json.dumps(dpo_meta)
    path = os.path.join(OUT_DIR, f"{name}.safetensors")
    write_safetensors(path, tensors, metadata)

    back, meta_back = read_safetensors(path)
    assert meta_back == metadata and list(back) == list(tensors)
    assert all(torch.equal(back[n], tensors[n]) for n in tensors)
    print(f"[{name}] wrote {os.path.relpath(path)} ({os.path.getsize(path)} bytes, {len(tensors)} tensors)")


def main():
    torch.set_num_threads(1)  # reproducible reductions, and the machine is shared
    os.makedirs(OUT_DIR, exist_ok=True)
    for index, name in enumerate(CONFIGS):
        build(name, index)


if __name__ == "__main__":
    main()
