#!/usr/bin/python3
"""Reference fixtures for tsdpo's Llama-family model, computed with PyTorch.

Writes test/fixtures/torch/{llama,qwen2,qwen3,gemma2,gemma3,smollm3,granite,olmo2,gpt2,phi3,phi3-longrope,phi3-shortrope}.safetensors. Each file
holds a tiny deterministic model (Hugging Face tensor names), a fixed batch, and what tsdpo must reproduce from them:
logits, per-token log-probs, the summed completion log-prob S, dS/dparam for every parameter, and ten AdamW steps on
loss = -S / sum(mask). The Gemma, SmolLM3, Granite, OLMo 2, GPT-2 and Phi-3 files hold, instead of dS/dparam, the
gradient of a sigmoid DPO loss over the batch, in float64, with float64 copies of the logits and log-probs.

The models are written out by hand below (no transformers), following Hugging Face's modeling_llama / modeling_qwen2 /
modeling_qwen3 / modeling_gemma2 / modeling_gemma3 / modeling_smollm3 / modeling_granite / modeling_olmo2 /
modeling_gpt2 (GPT2LMHeadModel) / modeling_phi3 (Phi3ForCausalLM) semantics.
Everything is computed in float64 from float32 weights, so the stored float32 results are the exact answer rounded
once; tsdpo's float32 kernels are compared against them with a tolerance.

Run with Debian's torch: apt-get install python3-torch && /usr/bin/python3 tools/torch_fixtures.py

The float64 matrix products go through whichever libblas.so.3 Debian's alternatives select, and OpenBLAS (whose kernels
depend on the CPU and on OPENBLAS_CORETYPE) rounds differently from the reference BLAS in the last bits. The committed
files were made with Debian's reference BLAS (package libblas3), so the script re-executes itself with that library
first on LD_LIBRARY_PATH when it is installed (pin_reference_blas), whatever the alternatives say.
"""

import json
import math
import os
import struct
import sys
import sysconfig


def pin_reference_blas():
    """Re-execute this script with Debian's reference BLAS / LAPACK (libblas3, liblapack3) ahead of the alternatives
    on LD_LIBRARY_PATH, so that an installed OpenBLAS does not change the results' last bits. Must run before torch
    is imported (the dynamic loader reads LD_LIBRARY_PATH at process start). Without libblas3 it warns and carries
    on: the results are then right but may differ from the committed files in the last bits."""
    if os.environ.get("TSDPO_FIXTURES_BLAS") == "reference":
        return
    libdir = os.path.join("/usr/lib", sysconfig.get_config_var("MULTIARCH") or "x86_64-linux-gnu")
    blas, lapack = os.path.join(libdir, "blas"), os.path.join(libdir, "lapack")
    if not os.path.exists(os.path.join(blas, "libblas.so.3")):
        print(f"warning: no reference BLAS in {blas} (apt-get install libblas3 liblapack3); using the system "
              "libblas.so.3, whose last bits may differ from the committed fixtures'", file=sys.stderr)
        return
    paths = [blas, lapack] + [p for p in os.environ.get("LD_LIBRARY_PATH", "").split(":") if p]
    env = dict(os.environ, LD_LIBRARY_PATH=":".join(paths), TSDPO_FIXTURES_BLAS="reference")
    sys.stdout.flush()
    os.execve(sys.executable, [sys.executable, os.path.abspath(__file__)] + sys.argv[1:], env)


def loaded_blas():
    """The libblas / libopenblas files mapped into this process (read from /proc/self/maps)."""
    try:
        with open("/proc/self/maps") as f:
            names = {line.split()[-1] for line in f if "blas" in line.rsplit("/", 1)[-1]}
    except OSError:
        return []
    return sorted(names)


if __name__ == "__main__":
    pin_reference_blas()

import torch  # noqa: E402 (after pin_reference_blas)

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
    # SmolLM3: Llama, except that the layers l with no_rope_layers[l] == 0 ("NoPE" layers) use q and k as projected,
    # without RoPE. HF's default when the key is absent is a NoPE layer every no_rope_layer_interval (4) layers, i.e.
    # no_rope_layers[l] = int((l + 1) % 4 != 0); here the list is explicit, with two NoPE layers.
    "smollm3": {
        "model_type": "smollm3",
        "vocab_size": 61,
        "hidden_size": 32,
        "num_hidden_layers": 4,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "head_dim": 8,
        "intermediate_size": 48,
        "hidden_act": "silu",
        "rope_theta": 10000.0,
        "rope_scaling": None,
        "rms_norm_eps": 1e-6,
        "tie_word_embeddings": True,
        "attention_bias": False,
        "mlp_bias": False,
        "max_position_embeddings": 64,
        "use_sliding_window": False,
        "no_rope_layers": [1, 0, 1, 0],
    },
    # Granite: Llama with four multipliers: embeddings times embedding_multiplier, scores q.k times
    # attention_multiplier (instead of 1/sqrt(head size)), each sublayer's output times residual_multiplier before
    # the residual add, logits divided by logits_scaling. GraniteConfig has no head_dim key (the head size is
    # hidden_size / num_attention_heads = 8), so there is none here.
    "granite": {
        "model_type": "granite",
        "vocab_size": 59,
        "hidden_size": 32,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "intermediate_size": 56,
        "hidden_act": "silu",
        "rope_theta": 10000.0,
        "rope_scaling": None,
        "rms_norm_eps": 1e-6,
        "tie_word_embeddings": True,
        "attention_bias": False,
        "mlp_bias": False,
        "max_position_embeddings": 64,
        "embedding_multiplier": 12.0,
        "attention_multiplier": 0.2,
        "residual_multiplier": 0.22,
        "logits_scaling": 8.0,
    },
    # OLMo 2: no norm before the sublayers; each sublayer's output is normalised (post_attention_layernorm,
    # post_feedforward_layernorm) before the residual add; q_norm / k_norm are RMSNorms over the whole q / k
    # projections (NH*HS and NKV*HS features), applied before the split into heads and before RoPE; untied lm_head.
    "olmo2": {
        "model_type": "olmo2",
        "vocab_size": 53,
        "hidden_size": 32,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "intermediate_size": 40,
        "hidden_act": "silu",
        "rope_theta": 500000.0,
        "rope_scaling": None,
        "rms_norm_eps": 1e-6,
        "tie_word_embeddings": False,
        "attention_bias": False,
        "max_position_embeddings": 64,
    },
    # GPT-2 (GPT2LMHeadModel): learned absolute position embeddings (wpe) added to the token embeddings, no RoPE;
    # LayerNorm with bias (biased variance) before each sublayer and at the end; one Conv1D c_attn (weights stored
    # [in, out]) giving q, k, v; biases on every projection; plain MLP c_fc -> gelu_new -> c_proj; tied lm_head. The
    # keys are GPT2Config's own (n_embd, n_layer, n_head, n_positions, n_inner, layer_norm_epsilon).
    "gpt2": {
        "model_type": "gpt2",
        "vocab_size": 61,
        "n_embd": 32,
        "n_layer": 2,
        "n_head": 4,
        "n_positions": 64,
        "n_inner": 80,
        "activation_function": "gelu_new",
        "layer_norm_epsilon": 1e-5,
        "tie_word_embeddings": True,
        "scale_attn_weights": True,
        "scale_attn_by_inverse_layer_idx": False,
        "reorder_and_upcast_attn": False,
    },
    # Phi-3 (Phi3ForCausalLM): Llama's computation with fused projections: one qkv_proj whose output rows are
    # [q (NH*HS) | k (NKV*HS) | v (NKV*HS)], one gate_up_proj whose output is [gate (FF) | up (FF)]; a sliding
    # window on every layer (a query at i sees keys j with 0 <= i - j < sliding_window; 5 < T, so it matters and
    # phi3_checks() asserts the reach); RoPE on the whole head (partial_rotary_factor 1.0), no rope_scaling; untied.
    # Phi3Config has no head_dim key (head size hidden_size / num_attention_heads = 8).
    "phi3": {
        "model_type": "phi3",
        "vocab_size": 59,
        "hidden_size": 32,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "intermediate_size": 48,
        "hidden_act": "silu",
        "rope_theta": 10000.0,
        "rope_scaling": None,
        "rms_norm_eps": 1e-5,
        "tie_word_embeddings": False,
        "max_position_embeddings": 64,
        "original_max_position_embeddings": 64,
        "sliding_window": 5,
        "partial_rotary_factor": 1.0,
        "attention_bias": False,
    },
}

# Phi-4-mini's RoPE on the Phi-3 fixture's model: partial RoPE (partial_rotary_factor 0.75: the first int(8 * 0.75)
# = 6 of each head's 8 features rotate, pairs (i, i + 3), at theta^(-2i/6); features 6, 7 pass) and LongRoPE
# (rope_scaling longrope: frequency i divided by short_factor[i] when the sequence, max(position_ids) + 1 = T = 12,
# is at most original_max_position_embeddings, by long_factor[i] when it is longer; cos and sin times
# sqrt(1 + ln(max_position_embeddings / original) / ln(original))). phi3-longrope has original 8 < 12: long factors,
# attention factor sqrt(2); phi3-shortrope has original 16 >= 12: short factors, attention factor sqrt(1.5). No
# sliding window (Phi-4-mini's 262144 never bites); untied like the Phi-3 fixture. Appended after the other files so
# that their inputs (seeded by position in CONFIGS) stay as they were.
for _name, _original in (("phi3-longrope", 8), ("phi3-shortrope", 16)):
    CONFIGS[_name] = dict(
        CONFIGS["phi3"],
        sliding_window=None,
        partial_rotary_factor=0.75,
        original_max_position_embeddings=_original,
        rope_scaling={"type": "longrope", "short_factor": [1.0, 1.3, 2.1], "long_factor": [1.7, 4.5, 11.0]},
    )

GEMMA_TYPES = ("gemma2", "gemma3_text")
# The files that store the DPO gradient (float64 dpo64.grad.*, logits64, logp64, "dpo" metadata) instead of the
# float32 summed-log-prob gradient grad.*.
DPO64_TYPES = GEMMA_TYPES + ("smollm3", "granite", "olmo2", "gpt2", "phi3")
LONGROPE = ("phi3-longrope", "phi3-shortrope")

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

INIT_FORMULA_OLMO2 = (
    "Parameter k (0-based, in the order of the HF names: model.embed_tokens.weight; per layer l: q_proj, k_proj, "
    "v_proj, o_proj, q_norm (NH*HS features), k_norm (NKV*HS features), post_attention_layernorm, gate_proj, up_proj, "
    "down_proj, post_feedforward_layernorm; model.norm.weight; lm_head.weight) with n elements: base = "
    "sin(arange(n, float64) * 0.37 + 1.3 * k); matrices and embeddings = 0.3 * base, norm weights = 1 + 0.1 * base "
    "(OLMo 2's RMSNorm multiplies by plain w); reshaped row-major to the HF shape and rounded to float32 (the float32 "
    "values are the model)."
)

INIT_FORMULA_GPT2 = (
    "Parameter k (0-based, in the order of the HF names: transformer.wte.weight, transformer.wpe.weight; per layer l "
    "(transformer.h.{l}.): ln_1.weight, ln_1.bias, attn.c_attn.weight, attn.c_attn.bias, attn.c_proj.weight, "
    "attn.c_proj.bias, ln_2.weight, ln_2.bias, mlp.c_fc.weight, mlp.c_fc.bias, mlp.c_proj.weight, mlp.c_proj.bias; "
    "transformer.ln_f.weight, transformer.ln_f.bias) with n elements: base = sin(arange(n, float64) * 0.37 + 1.3 * "
    "k); LayerNorm weights = 1 + 0.1 * base; embeddings (wte and wpe), Conv1D weights and every bias (LayerNorm "
    "biases included) = 0.3 * base; reshaped row-major to the HF shape (Conv1D weights are [in, out]: c_attn.weight "
    "(n_embd, 3 * n_embd), attn.c_proj.weight (n_embd, n_embd), c_fc.weight (n_embd, n_inner), mlp.c_proj.weight "
    "(n_inner, n_embd)) and rounded to float32 (the float32 values are the model)."
)

INIT_FORMULA_PHI3 = (
    "Parameter k (0-based, in the order of the HF names: model.embed_tokens.weight; per layer l: input_layernorm, "
    "self_attn.qkv_proj.weight ((NH + 2 * NKV) * HS rows: q, then k, then v), self_attn.o_proj.weight, "
    "post_attention_layernorm, mlp.gate_up_proj.weight (2 * FF rows: gate, then up), mlp.down_proj.weight; "
    "model.norm.weight; lm_head.weight) with n elements: base = sin(arange(n, float64) * 0.37 + 1.3 * k); matrices "
    "and embeddings = 0.3 * base, norm weights = 1 + 0.1 * base (Phi-3's RMSNorm multiplies by plain w); reshaped "
    "row-major to the HF shape (the fused matrices as whole tensors) and rounded to float32 (the float32 values are "
    "the model)."
)

ADAMW = {"lr": 1e-2, "beta1": 0.9, "beta2": 0.95, "eps": 1e-8, "weight_decay": 0.1, "steps": 10}

# The DPO loss stored in the Gemma, SmolLM3, Granite, OLMo 2, GPT-2 and Phi-3 files: rows 0, 1 are the chosen and rows
# 2, 3 the rejected sequences of the pairs (0, 2) and (1, 3). The reference log-probs are the policy's own (per-row
# masked sums of logp) plus these offsets, so that the margins, and with them the gradient, are not those of the
# trivial policy = reference start.
DPO = {"beta": 0.5, "chosen_rows": [0, 1], "rejected_rows": [2, 3], "ref_offsets": [0.8, -1.1, -0.5, 1.3]}


# ----------------------------------------------------------------------------------------------------------------
# parameters


def head_dim(cfg):
    """HF's head size: config.head_dim when the config has it, else hidden_size // num_attention_heads (Granite and
    OLMo 2 and Phi-3 configs have no head_dim key; GPT-2's n_embd // n_head)."""
    if cfg["model_type"] == "gpt2":
        return cfg["n_embd"] // cfg["n_head"]
    return cfg.get("head_dim") or cfg["hidden_size"] // cfg["num_attention_heads"]


def derived(cfg):
    """The shape letters of a config, plus the two architecture switches HF encodes in model_type."""
    if cfg["model_type"] == "gpt2":
        # GPT2Config's keys; n_inner None would mean 4 * n_embd (the fixture sets it)
        return dict(
            V=cfg["vocab_size"],
            C=cfg["n_embd"],
            L=cfg["n_layer"],
            NH=cfg["n_head"],
            NKV=cfg["n_head"],
            HS=head_dim(cfg),
            FF=cfg["n_inner"] or 4 * cfg["n_embd"],
            qkv_bias=True,
            qk_norm=False,
            tied=cfg["tie_word_embeddings"],
            gemma=False,
            dpo64=True,
        )
    return dict(
        V=cfg["vocab_size"],
        C=cfg["hidden_size"],
        L=cfg["num_hidden_layers"],
        NH=cfg["num_attention_heads"],
        NKV=cfg["num_key_value_heads"],
        HS=head_dim(cfg),
        FF=cfg["intermediate_size"],
        qkv_bias=cfg["attention_bias"],
        qk_norm=cfg["model_type"] in ("qwen3", "gemma3_text"),
        tied=cfg["tie_word_embeddings"],
        gemma=cfg["model_type"] in GEMMA_TYPES,
        dpo64=cfg["model_type"] in DPO64_TYPES,
    )


def param_specs(cfg):
    """(HF name, shape, is_norm) in the order that fixes each parameter's index k in the init formula."""
    d = derived(cfg)
    V, C, L, NH, NKV, HS, FF = d["V"], d["C"], d["L"], d["NH"], d["NKV"], d["HS"], d["FF"]
    if d["gemma"]:
        return gemma_param_specs(d)
    if cfg["model_type"] == "olmo2":
        return olmo2_param_specs(d)
    if cfg["model_type"] == "gpt2":
        return gpt2_param_specs(cfg, d)
    if cfg["model_type"] == "phi3":
        return phi3_param_specs(d)
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


def olmo2_param_specs(d):
    """OLMo 2: no input norm; q/k norms over the whole projections; post-attention and post-feedforward norms."""
    V, C, L, NH, NKV, HS, FF = d["V"], d["C"], d["L"], d["NH"], d["NKV"], d["HS"], d["FF"]
    assert not d["tied"] and not d["qkv_bias"], "the OLMo 2 fixture is untied and bias-free"
    specs = [("model.embed_tokens.weight", (V, C), False)]
    for l in range(L):
        p = f"model.layers.{l}."
        specs.append((p + "self_attn.q_proj.weight", (NH * HS, C), False))
        specs.append((p + "self_attn.k_proj.weight", (NKV * HS, C), False))
        specs.append((p + "self_attn.v_proj.weight", (NKV * HS, C), False))
        specs.append((p + "self_attn.o_proj.weight", (C, NH * HS), False))
        specs.append((p + "self_attn.q_norm.weight", (NH * HS,), True))
        specs.append((p + "self_attn.k_norm.weight", (NKV * HS,), True))
        specs.append((p + "post_attention_layernorm.weight", (C,), True))
        specs.append((p + "mlp.gate_proj.weight", (FF, C), False))
        specs.append((p + "mlp.up_proj.weight", (FF, C), False))
        specs.append((p + "mlp.down_proj.weight", (C, FF), False))
        specs.append((p + "post_feedforward_layernorm.weight", (C,), True))
    specs.append(("model.norm.weight", (C,), True))
    specs.append(("lm_head.weight", (V, C), False))
    return specs


def gpt2_param_specs(cfg, d):
    """GPT-2: token and position embeddings; per block LayerNorm (weight, bias), Conv1D c_attn and c_proj, LayerNorm,
    Conv1D c_fc and c_proj, each Conv1D weight stored [in, out] with its bias after it; final LayerNorm; tied."""
    V, C, L, FF = d["V"], d["C"], d["L"], d["FF"]
    assert d["tied"] and d["NH"] * d["HS"] == C, "the GPT-2 fixture is tied and has n_embd = n_head * head size"
    specs = [("transformer.wte.weight", (V, C), False), ("transformer.wpe.weight", (cfg["n_positions"], C), False)]
    for l in range(L):
        p = f"transformer.h.{l}."
        specs += [(p + "ln_1.weight", (C,), True), (p + "ln_1.bias", (C,), False)]
        specs += [(p + "attn.c_attn.weight", (C, 3 * C), False), (p + "attn.c_attn.bias", (3 * C,), False)]
        specs += [(p + "attn.c_proj.weight", (C, C), False), (p + "attn.c_proj.bias", (C,), False)]
        specs += [(p + "ln_2.weight", (C,), True), (p + "ln_2.bias", (C,), False)]
        specs += [(p + "mlp.c_fc.weight", (C, FF), False), (p + "mlp.c_fc.bias", (FF,), False)]
        specs += [(p + "mlp.c_proj.weight", (FF, C), False), (p + "mlp.c_proj.bias", (C,), False)]
    specs += [("transformer.ln_f.weight", (C,), True), ("transformer.ln_f.bias", (C,), False)]
    return specs


def phi3_param_specs(d):
    """Phi-3: Llama's layer with the q, k, v projections fused into qkv_proj (rows q | k | v) and gate / up into
    gate_up_proj (rows gate | up); untied lm_head, no biases."""
    V, C, L, NH, NKV, HS, FF = d["V"], d["C"], d["L"], d["NH"], d["NKV"], d["HS"], d["FF"]
    assert not d["tied"] and not d["qkv_bias"], "the Phi-3 fixture is untied and bias-free"
    specs = [("model.embed_tokens.weight", (V, C), False)]
    for l in range(L):
        p = f"model.layers.{l}."
        specs.append((p + "input_layernorm.weight", (C,), True))
        specs.append((p + "self_attn.qkv_proj.weight", ((NH + 2 * NKV) * HS, C), False))
        specs.append((p + "self_attn.o_proj.weight", (C, NH * HS), False))
        specs.append((p + "post_attention_layernorm.weight", (C,), True))
        specs.append((p + "mlp.gate_up_proj.weight", (2 * FF, C), False))
        specs.append((p + "mlp.down_proj.weight", (C, FF), False))
    specs.append(("model.norm.weight", (C,), True))
    specs.append(("lm_head.weight", (V, C), False))
    return specs


def init_params(cfg):
    """Float32 weights by the sin formula (INIT_FORMULA, INIT_FORMULA_GEMMA, INIT_FORMULA_OLMO2, INIT_FORMULA_GPT2,
    INIT_FORMULA_PHI3), keyed by HF name, in spec order."""
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


def rotary_dim(cfg):
    """The rotated features per head: int(head size * partial_rotary_factor), as modeling_rope_utils computes dim."""
    return int(head_dim(cfg) * cfg.get("partial_rotary_factor", 1.0))


def longrope_attention_factor(cfg):
    """modeling_rope_utils._compute_longrope_parameters' attention factor (rope_scaling without attention_factor
    or factor): s = max_position_embeddings / original_max_position_embeddings, sqrt(1 + ln s / ln original) if
    s > 1 else 1."""
    original = cfg["original_max_position_embeddings"]
    s = cfg["max_position_embeddings"] / original
    return 1.0 if s <= 1.0 else math.sqrt(1 + math.log(s) / math.log(original))


def rope_inv_freq(cfg, theta=None, scaling="config", seq_len=None):
    """inv_freq (RD/2,) with HF's rope scaling applied (modeling_rope_utils), in float64, RD = rotary_dim(cfg).
    theta and scaling default to the config's rope_theta and rope_scaling (a Gemma 3 local layer passes
    rope_local_base_freq and None). seq_len: LongRoPE's long factors when it exceeds original_max_position_embeddings
    (HF's longrope_frequency_update, seq_len = max(position_ids) + 1), short ones otherwise."""
    RD = rotary_dim(cfg)
    theta = cfg["rope_theta"] if theta is None else theta
    inv_freq = 1.0 / theta ** (torch.arange(0, RD, 2, dtype=torch.float64) / RD)
    scaling = cfg.get("rope_scaling") if scaling == "config" else scaling
    if scaling is None:
        return inv_freq
    kind = scaling.get("rope_type", scaling.get("type"))
    if kind == "longrope":
        long = seq_len is not None and seq_len > cfg["original_max_position_embeddings"]
        factors = torch.tensor(scaling["long_factor" if long else "short_factor"], dtype=torch.float64)
        assert factors.numel() == RD // 2
        return inv_freq / factors
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


def uses_rope(cfg, l):
    """Whether layer l rotates q and k: SmolLM3's no_rope_layers[l] (1 = RoPE, 0 = NoPE; HF's default when the key is
    absent is a NoPE layer every no_rope_layer_interval layers), True for every other family here."""
    if cfg["model_type"] != "smollm3":
        return True
    flags = cfg.get("no_rope_layers")
    if flags is None:
        interval = cfg.get("no_rope_layer_interval", 4)
        flags = [int((i + 1) % interval != 0) for i in range(cfg["num_hidden_layers"])]
    return bool(flags[l])


def forward(P, cfg, ids):
    """Logits (N, T, V) for token ids (N, T); P maps HF names to float64 tensors. Llama, Qwen2, Qwen3, SmolLM3 (NoPE
    layers, uses_rope) and Granite (its four multipliers)."""
    d = derived(cfg)
    C, L, NH, NKV, HS = d["C"], d["L"], d["NH"], d["NKV"], d["HS"]
    eps = cfg["rms_norm_eps"]
    n, t = ids.shape
    granite = cfg["model_type"] == "granite"

    angles = torch.arange(t, dtype=torch.float64)[:, None] * rope_inv_freq(cfg)[None, :]  # (T, HS/2)
    cos = torch.cat((angles.cos(), angles.cos()), dim=-1)  # (T, HS)
    sin = torch.cat((angles.sin(), angles.sin()), dim=-1)  # (T, HS)
    causal = torch.ones(t, t, dtype=torch.bool).tril()  # (T, T) query row may see key column

    x = P["model.embed_tokens.weight"][ids]  # (N, T, C)
    if granite:
        x = x * cfg["embedding_multiplier"]
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
        if uses_rope(cfg, l):  # a SmolLM3 NoPE layer keeps q and k as projected
            q = q * cos + rotate_half(q) * sin
            k = k * cos + rotate_half(k) * sin
        # query head h reads KV head h // (NH / NKV)
        k = k.repeat_interleave(NH // NKV, dim=1)  # (N, NH, T, HS)
        v = v.repeat_interleave(NH // NKV, dim=1)  # (N, NH, T, HS)
        if granite:
            scores = (q @ k.transpose(-1, -2)) * cfg["attention_multiplier"]  # (N, NH, T, T)
        else:
            scores = (q @ k.transpose(-1, -2)) / math.sqrt(HS)  # (N, NH, T, T)
        scores = scores.masked_fill(~causal, float("-inf"))
        att = torch.softmax(scores, dim=-1) @ v  # (N, NH, T, HS)
        att = att.transpose(1, 2).reshape(n, t, NH * HS)
        out = att @ P[p + "self_attn.o_proj.weight"].T
        x = x + (out * cfg["residual_multiplier"] if granite else out)

        h = rmsnorm(x, P[p + "post_attention_layernorm.weight"], eps)
        gate = torch.nn.functional.silu(h @ P[p + "mlp.gate_proj.weight"].T)  # (N, T, FF)
        up = h @ P[p + "mlp.up_proj.weight"].T  # (N, T, FF)
        out = (gate * up) @ P[p + "mlp.down_proj.weight"].T
        x = x + (out * cfg["residual_multiplier"] if granite else out)

    h = rmsnorm(x, P["model.norm.weight"], eps)
    lm_head = P["model.embed_tokens.weight"] if d["tied"] else P["lm_head.weight"]
    logits = h @ lm_head.T  # (N, T, V)
    return logits / cfg["logits_scaling"] if granite else logits


def olmo2_forward(P, cfg, ids, qk_norm_per_head=False):
    """OLMo 2 logits (N, T, V); P maps HF names to float64 tensors. qk_norm_per_head (a self-check only) normalises
    each head's q and k separately, Qwen3-style, instead of the whole projection as OLMo 2 does."""
    d = derived(cfg)
    C, L, NH, NKV, HS = d["C"], d["L"], d["NH"], d["NKV"], d["HS"]
    eps = cfg["rms_norm_eps"]
    n, t = ids.shape
    cos, sin = rope_tables(rope_inv_freq(cfg), t)  # (T, HS) each
    causal = torch.ones(t, t, dtype=torch.bool).tril()  # (T, T) query row may see key column

    x = P["model.embed_tokens.weight"][ids]  # (N, T, C), no embedding scale
    for l in range(L):
        p = f"model.layers.{l}."
        # no norm before attention: the projections read the residual stream itself
        q = x @ P[p + "self_attn.q_proj.weight"].T  # (N, T, NH*HS)
        k = x @ P[p + "self_attn.k_proj.weight"].T  # (N, T, NKV*HS)
        v = x @ P[p + "self_attn.v_proj.weight"].T  # (N, T, NKV*HS)
        if qk_norm_per_head:
            q = rmsnorm(q.view(n, t, NH, HS), P[p + "self_attn.q_norm.weight"].view(NH, HS), eps).reshape(n, t, -1)
            k = rmsnorm(k.view(n, t, NKV, HS), P[p + "self_attn.k_norm.weight"].view(NKV, HS), eps).reshape(n, t, -1)
        else:
            # one RMS over all NH*HS (NKV*HS) features, before the split into heads
            q = rmsnorm(q, P[p + "self_attn.q_norm.weight"], eps)
            k = rmsnorm(k, P[p + "self_attn.k_norm.weight"], eps)
        q = q.view(n, t, NH, HS).transpose(1, 2)  # (N, NH, T, HS)
        k = k.view(n, t, NKV, HS).transpose(1, 2)  # (N, NKV, T, HS)
        v = v.view(n, t, NKV, HS).transpose(1, 2)  # (N, NKV, T, HS)
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        k = k.repeat_interleave(NH // NKV, dim=1)  # (N, NH, T, HS)
        v = v.repeat_interleave(NH // NKV, dim=1)  # (N, NH, T, HS)
        scores = (q @ k.transpose(-1, -2)) / math.sqrt(HS)  # (N, NH, T, T)
        scores = scores.masked_fill(~causal, float("-inf"))
        att = (torch.softmax(scores, dim=-1) @ v).transpose(1, 2).reshape(n, t, NH * HS)
        x = x + rmsnorm(att @ P[p + "self_attn.o_proj.weight"].T, P[p + "post_attention_layernorm.weight"], eps)

        gate = torch.nn.functional.silu(x @ P[p + "mlp.gate_proj.weight"].T)  # (N, T, FF)
        up = x @ P[p + "mlp.up_proj.weight"].T  # (N, T, FF)
        mlp = (gate * up) @ P[p + "mlp.down_proj.weight"].T
        x = x + rmsnorm(mlp, P[p + "post_feedforward_layernorm.weight"], eps)

    h = rmsnorm(x, P["model.norm.weight"], eps)
    return h @ P["lm_head.weight"].T  # (N, T, V), untied


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


def layer_norm(x, w, b, eps):
    # torch.nn.LayerNorm: mean and biased variance over the last dimension (x (..., D), w and b (D,)); written out,
    # checked against torch's in gpt2_checks()
    mu = x.mean(dim=-1, keepdim=True)
    var = (x - mu).pow(2).mean(dim=-1, keepdim=True)
    return (x - mu) / torch.sqrt(var + eps) * w + b


def gpt2_forward(P, cfg, ids, positions=None):
    """GPT-2 logits (N, T, V); P maps HF names to float64 tensors. positions (T,) are the wpe rows read (default
    0..T-1, as GPT2Model without a cache)."""
    d = derived(cfg)
    C, L, NH, HS = d["C"], d["L"], d["NH"], d["HS"]
    eps = cfg["layer_norm_epsilon"]
    n, t = ids.shape
    positions = torch.arange(t) if positions is None else positions
    causal = torch.ones(t, t, dtype=torch.bool).tril()  # (T, T) query row may see key column

    x = P["transformer.wte.weight"][ids] + P["transformer.wpe.weight"][positions]  # (N, T, C)
    for l in range(L):
        p = f"transformer.h.{l}."
        h = layer_norm(x, P[p + "ln_1.weight"], P[p + "ln_1.bias"], eps)
        qkv = h @ P[p + "attn.c_attn.weight"] + P[p + "attn.c_attn.bias"]  # (N, T, 3C); Conv1D: x @ W[in, out] + b
        q, k, v = (z.reshape(n, t, NH, HS).transpose(1, 2) for z in qkv.split(C, dim=-1))  # (N, NH, T, HS) each
        scores = (q @ k.transpose(-1, -2)) / math.sqrt(HS)  # (N, NH, T, T); scale_attn_weights
        scores = scores.masked_fill(~causal, float("-inf"))
        att = (torch.softmax(scores, dim=-1) @ v).transpose(1, 2).reshape(n, t, C)
        x = x + (att @ P[p + "attn.c_proj.weight"] + P[p + "attn.c_proj.bias"])

        h = layer_norm(x, P[p + "ln_2.weight"], P[p + "ln_2.bias"], eps)
        m = gelu_tanh(h @ P[p + "mlp.c_fc.weight"] + P[p + "mlp.c_fc.bias"])  # (N, T, FF); gelu_new
        x = x + (m @ P[p + "mlp.c_proj.weight"] + P[p + "mlp.c_proj.bias"])

    h = layer_norm(x, P["transformer.ln_f.weight"], P["transformer.ln_f.bias"], eps)
    return h @ P["transformer.wte.weight"].T  # (N, T, V), tied


def phi3_forward(P, cfg, ids):
    """Phi-3 logits (N, T, V); P maps HF names to float64 tensors. Llama's computation with the fused qkv_proj and
    gate_up_proj split as Phi3Attention / Phi3MLP split their outputs, and HF's sliding-window causal mask
    (create_sliding_window_causal_mask: kv_idx <= q_idx and kv_idx > q_idx - sliding_window) on every layer;
    sliding_window None gives the plain causal mask."""
    d = derived(cfg)
    C, L, NH, NKV, HS, FF = d["C"], d["L"], d["NH"], d["NKV"], d["HS"], d["FF"]
    eps = cfg["rms_norm_eps"]
    window = cfg.get("sliding_window")
    n, t = ids.shape
    # Partial RoPE: the first RD features rotate (apply_rotary_pos_emb: rotary_dim = cos.shape[-1]), the rest pass.
    # LongRoPE picks its factors by the sequence length (position_ids = arange(t), so max + 1 = t) and multiplies
    # cos and sin by its attention factor (Phi3RotaryEmbedding.forward: emb.cos() * attention_scaling).
    RD = rotary_dim(cfg)
    scaling = cfg.get("rope_scaling")
    m = longrope_attention_factor(cfg) if scaling and scaling.get("rope_type", scaling.get("type")) == "longrope" else 1.0
    cos, sin = rope_tables(rope_inv_freq(cfg, seq_len=t), t)  # (T, RD) each
    cos, sin = cos * m, sin * m

    def rope(x):  # (N, heads, T, HS)
        return torch.cat((x[..., :RD] * cos + rotate_half(x[..., :RD]) * sin, x[..., RD:]), dim=-1)

    q_idx, kv_idx = torch.arange(t)[:, None], torch.arange(t)[None, :]
    visible = kv_idx <= q_idx  # (T, T) query row may see key column
    if window is not None:
        visible = visible & (kv_idx > q_idx - window)

    x = P["model.embed_tokens.weight"][ids]  # (N, T, C)
    for l in range(L):
        p = f"model.layers.{l}."
        h = rmsnorm(x, P[p + "input_layernorm.weight"], eps)
        qkv = h @ P[p + "self_attn.qkv_proj.weight"].T  # (N, T, (NH + 2 NKV) HS)
        q, k, v = qkv.split((NH * HS, NKV * HS, NKV * HS), dim=-1)  # query_pos = NH * HS, then NKV * HS each
        q = q.reshape(n, t, NH, HS).transpose(1, 2)  # (N, NH, T, HS)
        k = k.reshape(n, t, NKV, HS).transpose(1, 2)  # (N, NKV, T, HS)
        v = v.reshape(n, t, NKV, HS).transpose(1, 2)  # (N, NKV, T, HS)
        q, k = rope(q), rope(k)
        k = k.repeat_interleave(NH // NKV, dim=1)  # (N, NH, T, HS)
        v = v.repeat_interleave(NH // NKV, dim=1)  # (N, NH, T, HS)
        scores = (q @ k.transpose(-1, -2)) / math.sqrt(HS)  # (N, NH, T, T)
        scores = scores.masked_fill(~visible, float("-inf"))
        att = (torch.softmax(scores, dim=-1) @ v).transpose(1, 2).reshape(n, t, NH * HS)
        x = x + att @ P[p + "self_attn.o_proj.weight"].T

        h = rmsnorm(x, P[p + "post_attention_layernorm.weight"], eps)
        gate, up = (h @ P[p + "mlp.gate_up_proj.weight"].T).split(FF, dim=-1)  # chunk(2): gate first, then up
        x = x + (up * torch.nn.functional.silu(gate)) @ P[p + "mlp.down_proj.weight"].T

    h = rmsnorm(x, P["model.norm.weight"], eps)
    return h @ P["lm_head.weight"].T  # (N, T, V), untied


def model_forward(P, cfg, ids):
    if cfg["model_type"] == "gpt2":
        return gpt2_forward(P, cfg, ids)
    if cfg["model_type"] == "phi3":
        return phi3_forward(P, cfg, ids)
    if derived(cfg)["gemma"]:
        return gemma_forward(P, cfg, ids)
    if cfg["model_type"] == "olmo2":
        return olmo2_forward(P, cfg, ids)
    return forward(P, cfg, ids)


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
    """Rotate-half RoPE against the same rotation written as complex multiplication on pairs (i, i + RD/2), RD the
    rotated width (the head size unless partial_rotary_factor < 1)."""
    HS = rotary_dim(cfg)
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


def nope_check(P, cfg):
    """SmolLM3's NoPE layers are really unrotated. (1) With the model cut to one NoPE layer, the last position's
    logits depend on the earlier tokens only as a set (attention without positions is a weighted sum over the keys),
    so reversing tokens 0..T-2 of a row leaves them as they were, while the same cut layer with RoPE applied changes
    them. (2) Applying RoPE on every layer of the whole model changes its logits. Returns (the cut NoPE layer's
    change, the cut layer's change with RoPE, the whole model's max logit change with RoPE everywhere)."""
    L = cfg["num_hidden_layers"]
    nope = [l for l in range(L) if not uses_rope(cfg, l)]
    assert nope and len(nope) < L, "the smollm3 config must mix RoPE and NoPE layers"
    l = nope[0]
    src = f"model.layers.{l}."
    Pc = {n: w for n, w in P.items() if not n.startswith("model.layers.")}
    Pc.update({"model.layers.0." + n[len(src) :]: w for n, w in P.items() if n.startswith(src)})
    ids = torch.randint(0, cfg["vocab_size"], (1, T), generator=torch.Generator().manual_seed(5))
    other = torch.cat((ids[:, :-1].flip(1), ids[:, -1:]), dim=1)
    assert not torch.equal(ids, other)
    with torch.no_grad():
        diffs = []
        for flags in ([0], [1]):
            cut = dict(cfg, num_hidden_layers=1, no_rope_layers=flags)
            diffs.append((forward(Pc, cut, ids) - forward(Pc, cut, other))[0, -1].abs().max().item())
        all_rope = dict(cfg, no_rope_layers=[1] * L)
        whole = (forward(P, cfg, ids) - forward(P, all_rope, ids)).abs().max().item()
    return diffs[0], diffs[1], whole


def granite_check(P, cfg, ids):
    """Each Granite multiplier changes the logits: the max logit change when one of them is given its Llama value
    (embedding_multiplier 1, attention_multiplier 1/sqrt(head size), residual_multiplier 1, logits_scaling 1)."""
    neutral = {
        "embedding_multiplier": 1.0,
        "attention_multiplier": 1.0 / math.sqrt(head_dim(cfg)),
        "residual_multiplier": 1.0,
        "logits_scaling": 1.0,
    }
    with torch.no_grad():
        base = forward(P, cfg, ids)
        return {k: (forward(P, dict(cfg, **{k: v}), ids) - base).abs().max().item() for k, v in neutral.items()}


def olmo2_check(P, cfg, ids):
    """OLMo 2's norm placement. Returns (the max logit change when q/k are normalised per head instead of over the
    whole projection, and, with rms_norm_eps 0, the max change when every o_proj and down_proj weight is multiplied
    by 3: the post-sublayer norms undo that scale, which pre-sublayer norms would not)."""
    scaled = {n: (w * 3.0 if n.endswith(("o_proj.weight", "down_proj.weight")) else w) for n, w in P.items()}
    no_eps = dict(cfg, rms_norm_eps=0.0)
    with torch.no_grad():
        base = olmo2_forward(P, cfg, ids)
        per_head = (olmo2_forward(P, cfg, ids, qk_norm_per_head=True) - base).abs().max().item()
        rescaled = (olmo2_forward(scaled, no_eps, ids) - olmo2_forward(P, no_eps, ids)).abs().max().item()
    return per_head, rescaled


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


def gemma_checks(name, cfg, weights, inputs, logits):
    """The Gemma-only checks: GELU, soft-caps active, sliding window, local RoPE."""
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


def smollm3_checks(name, cfg, weights, inputs, logits):
    P = {n: w.to(torch.float64) for n, w in weights.items()}
    flags = [int(uses_rope(cfg, l)) for l in range(cfg["num_hidden_layers"])]
    cut_nope, cut_rope, whole = nope_check(P, cfg)
    print(f"[{name}] rope per layer {flags}; NoPE layer alone, earlier tokens reversed: last-position max logit "
          f"change {cut_nope:.3e} (the same layer with RoPE: {cut_rope:.3e}); whole model with RoPE on every layer: "
          f"max logit change {whole:.3e}")
    assert cut_nope < 1e-12 and cut_rope > 1e-6 and whole > 1e-6, "NoPE check failed"


def granite_checks(name, cfg, weights, inputs, logits):
    P = {n: w.to(torch.float64) for n, w in weights.items()}
    top = logits.abs().max().item()
    logp = token_logps(logits, inputs["targets"])
    print(f"[{name}] max |logit| {top:.4f} (before / logits_scaling: {top * cfg['logits_scaling']:.4f}), logp in "
          f"[{logp.min().item():.4f}, {logp.max().item():.4f}]")
    assert 0.1 < top < 10, "the granite logits should be O(1)"
    changes = granite_check(P, cfg, inputs["ids"])
    for key, change in changes.items():
        print(f"[{name}] {key} {cfg[key]} -> its Llama value: max logit change {change:.3e}")
    assert min(changes.values()) > 1e-3 * top, "a Granite multiplier has no effect"


def olmo2_checks(name, cfg, weights, inputs, logits):
    P = {n: w.to(torch.float64) for n, w in weights.items()}
    per_head, rescaled = olmo2_check(P, cfg, inputs["ids"])
    print(f"[{name}] q/k norm per head instead of over the whole projection: max logit change {per_head:.3e}; "
          f"with eps 0, o_proj and down_proj times 3 (the post-norms undo it): {rescaled:.3e}")
    assert per_head > 1e-6 and rescaled < 1e-12, "OLMo 2 norm placement check failed"


def gpt2_modules_forward(P, cfg, ids):
    """A second GPT-2 forward from torch.nn's own modules, in float64: nn.LayerNorm, nn.MultiheadAttention (its
    in_proj_weight is [out, in] with q, k, v stacked by rows, so c_attn.weight transposed; its default scale is
    1/sqrt(head size)), nn.Linear with the Conv1D weights transposed and nn.GELU(approximate="tanh"). Checks the
    Conv1D layout, the q/k/v split and the head split of gpt2_forward."""
    d = derived(cfg)
    C, L, NH, FF = d["C"], d["L"], d["NH"], d["FF"]
    eps = cfg["layer_norm_epsilon"]
    n, t = ids.shape
    f64 = dict(dtype=torch.float64)

    def ln(prefix):
        m = torch.nn.LayerNorm(C, eps=eps, **f64)
        m.weight.copy_(P[prefix + ".weight"])
        m.bias.copy_(P[prefix + ".bias"])
        return m

    def linear(prefix, n_in, n_out):
        m = torch.nn.Linear(n_in, n_out, **f64)
        m.weight.copy_(P[prefix + ".weight"].T)
        m.bias.copy_(P[prefix + ".bias"])
        return m

    hidden = torch.arange(t)[:, None] < torch.arange(t)[None, :]  # (T, T) True: the key is after the query
    x = torch.nn.functional.embedding(ids, P["transformer.wte.weight"]) + P["transformer.wpe.weight"][:t]
    for l in range(L):
        p = f"transformer.h.{l}."
        attn = torch.nn.MultiheadAttention(C, NH, bias=True, batch_first=True, **f64)
        attn.in_proj_weight.copy_(P[p + "attn.c_attn.weight"].T)
        attn.in_proj_bias.copy_(P[p + "attn.c_attn.bias"])
        attn.out_proj.weight.copy_(P[p + "attn.c_proj.weight"].T)
        attn.out_proj.bias.copy_(P[p + "attn.c_proj.bias"])
        h = ln(p + "ln_1")(x)
        x = x + attn(h, h, h, attn_mask=hidden, need_weights=False)[0]
        mlp = torch.nn.Sequential(
            linear(p + "mlp.c_fc", C, FF), torch.nn.GELU(approximate="tanh"), linear(p + "mlp.c_proj", FF, C)
        )
        x = x + mlp(ln(p + "ln_2")(x))
    return ln("transformer.ln_f")(x) @ P["transformer.wte.weight"].T


def gpt2_checks(name, cfg, weights, inputs, logits):
    """GPT-2: the hand-written LayerNorm and gelu_new against torch's, the whole forward against one made of torch.nn
    modules (gpt2_modules_forward); the positions matter (permuting wpe's rows
    0..T-1 changes the logits) and only positions 0..T-1 are read (changing wpe's later rows changes nothing)."""
    P = {n: w.to(torch.float64) for n, w in weights.items()}
    x = logits.reshape(-1, logits.shape[-1])
    D, eps = x.shape[-1], cfg["layer_norm_epsilon"]
    w, b = torch.linspace(0.5, 1.5, D, dtype=torch.float64), torch.linspace(-0.3, 0.2, D, dtype=torch.float64)
    ln_err = (layer_norm(x, w, b, eps) - torch.nn.functional.layer_norm(x, (D,), w, b, eps)).abs().max().item()
    gelu_err = (gelu_tanh(logits) - torch.nn.functional.gelu(logits, approximate="tanh")).abs().max().item()
    print(f"[{name}] layer_norm vs torch layer_norm: max abs {ln_err:.3e}; gelu_new vs torch gelu(approximate='tanh'): "
          f"max abs {gelu_err:.3e}")
    assert ln_err < 1e-13 and gelu_err < 1e-14

    ids = inputs["ids"]
    with torch.no_grad():
        modules = (gpt2_modules_forward(P, cfg, ids) - gpt2_forward(P, cfg, ids)).abs().max().item()
    print(f"[{name}] against torch.nn modules (LayerNorm, MultiheadAttention with the Conv1D weights transposed, "
          f"Linear, GELU('tanh')): max abs logit difference {modules:.3e}")
    assert modules < 1e-12, "the GPT-2 forward disagrees with torch.nn's modules"

    wpe = P["transformer.wpe.weight"]
    perm = torch.randperm(T, generator=torch.Generator().manual_seed(11))
    assert not torch.equal(perm, torch.arange(T))
    permuted = dict(P, **{"transformer.wpe.weight": torch.cat((wpe[:T][perm], wpe[T:]))})
    later = dict(P, **{"transformer.wpe.weight": torch.cat((wpe[:T], wpe[T:] + 1.0))})
    with torch.no_grad():
        base = gpt2_forward(P, cfg, ids)
        moved = (gpt2_forward(permuted, cfg, ids) - base).abs().max().item()
        unused = (gpt2_forward(later, cfg, ids) - base).abs().max().item()
    print(f"[{name}] wpe rows 0..{T - 1} permuted: max logit change {moved:.3e}; wpe rows >= {T} changed by 1: "
          f"{unused:.3e}; max |logit| {logits.abs().max().item():.4f}")
    assert moved > 1e-3 and unused == 0.0, "GPT-2 position check failed"


def phi3_split_weights(P, cfg):
    """The Phi-3 weights as a Llama checkpoint: qkv_proj's rows cut into q_proj, k_proj, v_proj and gate_up_proj's
    into gate_proj, up_proj (as io/phi3.ts does on load)."""
    d = derived(cfg)
    NH, NKV, HS, FF = d["NH"], d["NKV"], d["HS"], d["FF"]
    out = {}
    for n, w in P.items():
        if n.endswith("self_attn.qkv_proj.weight"):
            base = n[: -len("qkv_proj.weight")]
            q, k, v = w.split((NH * HS, NKV * HS, NKV * HS), dim=0)
            out.update({base + "q_proj.weight": q, base + "k_proj.weight": k, base + "v_proj.weight": v})
        elif n.endswith("mlp.gate_up_proj.weight"):
            base = n[: -len("gate_up_proj.weight")]
            gate, up = w.split(FF, dim=0)
            out.update({base + "gate_proj.weight": gate, base + "up_proj.weight": up})
        else:
            out[n] = w
    return out


def phi3_checks(name, cfg, weights, inputs, logits):
    """Phi-3: (1) with the window off, the forward equals the Llama forward on the split weights (checks the fused
    row layouts); sliding_window 64 (>= T) gives exactly the window-off logits and differs from sliding_window 5, and
    so do W - 1 and W + 1 (an off-by-one in the window shows in the fixture's logits). (2) The window's reach:
    changing token 0 of a row, the first layer alone must leave positions >= W exactly as they were and change
    position W - 1 (a key W - 1 back is seen, one W back is not; some positions < W change by only ~1e-15, as these
    weights' attention is peaked); the whole two-layer model must change positions W .. 2 (W - 1) (reachable only
    through the second layer) and leave positions >= 2 (W - 1) + 1 exactly unchanged; without the window the last
    position changes."""
    P = {n: w.to(torch.float64) for n, w in weights.items()}
    W, L = cfg["sliding_window"], cfg["num_hidden_layers"]
    ids = inputs["ids"]
    no_window = dict(cfg, sliding_window=None)
    with torch.no_grad():
        base = phi3_forward(P, cfg, ids)
        full = phi3_forward(P, no_window, ids)
        llama = forward(phi3_split_weights(P, cfg), dict(cfg, model_type="llama"), ids)
        split_err = (llama - full).abs().max().item()
        wide = (phi3_forward(P, dict(cfg, sliding_window=64), ids) - full).abs().max().item()
        window_change = (base - full).abs().max().item()
        off_by_one = [
            (phi3_forward(P, dict(cfg, sliding_window=w), ids) - base).abs().max().item() for w in (W - 1, W + 1)
        ]
    print(f"[{name}] window off vs the Llama forward on the split q/k/v and gate/up weights: max abs logit "
          f"difference {split_err:.3e}; sliding_window 64 vs off: {wide:.3e}; sliding_window {W} vs 64: max logit "
          f"change {window_change:.3e}; sliding_window {W - 1} / {W + 1} vs {W}: {off_by_one[0]:.3e} / "
          f"{off_by_one[1]:.3e}")
    assert split_err < 1e-12 and wide == 0.0 and window_change > 1e-3, "Phi-3 fused layout / window check failed"
    assert min(off_by_one) > 1e-3, "the fixture's logits do not pin the window size"

    row = torch.randint(0, cfg["vocab_size"], (1, T), generator=torch.Generator().manual_seed(13))
    other = row.clone()
    other[0, 0] = (other[0, 0] + 1) % cfg["vocab_size"]
    cut = dict(cfg, num_hidden_layers=1)
    Pc = {n: w for n, w in P.items() if not n.startswith("model.layers.") or n.startswith("model.layers.0.")}
    reach = L * (W - 1)  # the last position token 0 can reach through L windowed layers
    with torch.no_grad():
        cut_diff = (phi3_forward(Pc, cut, row) - phi3_forward(Pc, cut, other)).abs().amax(dim=-1)[0]  # (T,)
        whole_diff = (phi3_forward(P, cfg, row) - phi3_forward(P, cfg, other)).abs().amax(dim=-1)[0]
        open_diff = (phi3_forward(P, no_window, row) - phi3_forward(P, no_window, other)).abs().amax(dim=-1)[0]
    print(f"[{name}] token 0 changed, layer 0 alone: max logit change at positions >= {W} "
          f"{cut_diff[W:].max().item():.3e}, at position {W - 1} {cut_diff[W - 1].item():.3e}; whole "
          f"model: smallest at positions {W}..{reach} (only via layer 1) {whole_diff[W:reach + 1].min().item():.3e}, "
          f"largest at positions > {reach} {whole_diff[reach + 1:].max().item():.3e}; without the window, at the "
          f"last position {open_diff[-1].item():.3e}")
    assert cut_diff[W:].max().item() == 0.0 and cut_diff[W - 1].item() > 1e-6, "Phi-3 one-layer reach wrong"
    assert whole_diff[W : reach + 1].min().item() > 1e-6 and whole_diff[reach + 1 :].max().item() == 0.0
    assert open_diff[-1].item() > 1e-6


def phi3_rope_checks(name, cfg, weights, inputs, logits):
    """Phi-4-mini's RoPE on the Phi-3 model. (1) The switch (seq_len > original_max_position_embeddings = O,
    strictly): a run of k tokens and one of k - 1 give the same logits on the first k - 1 positions (causal attention)
    while both are short (k <= O), and differ when the k-token run takes the long factors (k = O + 1). (2) What the
    fixture's logits pin: swapping the short and long factors, and dropping the attention factor
    (max_position_embeddings = original), each move them by more than 1e-3."""
    P = {n: w.to(torch.float64) for n, w in weights.items()}
    ids = inputs["ids"]
    O = cfg["original_max_position_embeddings"]
    s = cfg["rope_scaling"]

    def prefix_change(k):  # max logit change on the first k - 1 positions, k tokens vs k - 1
        return (phi3_forward(P, cfg, ids[:, :k])[:, : k - 1] - phi3_forward(P, cfg, ids[:, : k - 1])).abs().max().item()

    with torch.no_grad():
        short_k = min(O, T)
        same = prefix_change(short_k)
        switch = prefix_change(O + 1) if O < T else None
        swapped = dict(cfg, rope_scaling=dict(s, short_factor=s["long_factor"], long_factor=s["short_factor"]))
        unscaled = dict(cfg, max_position_embeddings=O)
        moves = [(phi3_forward(P, c, ids) - logits).abs().max().item() for c in (swapped, unscaled)]
    print(f"[{name}] rotary dim {rotary_dim(cfg)} of {head_dim(cfg)}; {'long' if T > O else 'short'} factors at T = {T} "
          f"(original {O}); attention factor {longrope_attention_factor(cfg)!r}; {short_k} vs {short_k - 1} tokens "
          f"(both short): max logit change {same:.3e}"
          + (f"; {O + 1} (long) vs {O} tokens: {switch:.3e}" if switch is not None else "")
          + f"; factors swapped / no attention factor: {moves[0]:.3e} / {moves[1]:.3e}")
    assert same == 0.0, "short factors up to original_max_position_embeddings"
    assert switch is None or switch > 1e-3, "the long factors must apply past original_max_position_embeddings"
    assert min(moves) > 1e-3, "the fixture's logits do not pin the factors and the attention factor"


def dpo_reference(name, cfg, weights, inputs):
    """The DPO loss: its float64 gradient checked against finite differences, and the "dpo" metadata."""
    P = {n: w.to(torch.float64) for n, w in weights.items()}
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


# What the "notes" metadata of the SmolLM3, Granite, OLMo 2, GPT-2 and Phi-3 files says about the family, before the
# common DPO / AdamW text (DPO64_NOTES).
FAMILY_NOTES = {
    "smollm3": (
        "SmolLM3 = Llama except that layer l rotates q and k (RoPE) only when no_rope_layers[l] == 1; a layer with 0 "
        "(NoPE) uses q and k as projected. Norm weights multiply by plain w (init 1 + 0.1 * base, Llama parameter "
        "order, see init)."
    ),
    "granite": (
        "Granite = Llama except: embeddings times embedding_multiplier; scores q.k times attention_multiplier (no "
        "1/sqrt(head size)); x = x + residual_multiplier * o_proj(attention) and x = x + residual_multiplier * "
        "down_proj(mlp); logits = lm_head(model.norm(x)) / logits_scaling, and logits, logits64, logp, logp64 are "
        "after that division. Head size hidden_size / num_attention_heads = 8 (GraniteConfig has no head_dim). Norm "
        "weights multiply by plain w (init 1 + 0.1 * base, Llama parameter order, see init)."
    ),
    "olmo2": (
        "OLMo 2: no norm before the sublayers; x = x + post_attention_layernorm(o_proj(attention(x))); x = x + "
        "post_feedforward_layernorm(mlp(x)); final model.norm and an untied lm_head. q = q_norm(q_proj(x)) and k = "
        "k_norm(k_proj(x)) are RMSNorms over the whole projection (num_attention_heads * head size and "
        "num_key_value_heads * head size features), applied before the split into heads and before RoPE; scores "
        "times 1/sqrt(head size); head size hidden_size / num_attention_heads = 8. Norm weights multiply by plain w "
        "(init 1 + 0.1 * base; parameter order q, k, v, o, q_norm, k_norm, post_attention_layernorm, gate, up, "
        "down, post_feedforward_layernorm, see init)."
    ),
}

FAMILY_NOTES["gpt2"] = (
    "GPT-2 (GPT2LMHeadModel): x = wte[ids] + wpe[t] for t = 0..T-1 (learned positions, no RoPE); per block h = "
    "ln_1(x); q, k, v = split(h @ attn.c_attn.weight + attn.c_attn.bias) into n_embd columns each, in that order "
    "(Conv1D weights are stored [in, out]: y = x @ W + b), heads of n_embd / n_head = 8 consecutive columns, scores "
    "q.k / sqrt(8), causal softmax; x = x + (y @ attn.c_proj.weight + attn.c_proj.bias); x = x + gelu_new(ln_2(x) @ "
    "mlp.c_fc.weight + mlp.c_fc.bias) @ mlp.c_proj.weight + mlp.c_proj.bias, gelu_new(u) = 0.5 u (1 + tanh(sqrt(2 / "
    "pi) (u + 0.044715 u^3))); logits = ln_f(x) @ wte.weight^T (tied). LayerNorm: (x - mean) / sqrt(biased variance "
    "+ layer_norm_epsilon) * weight + bias. Init 1 + 0.1 * base for LayerNorm weights, 0.3 * base for everything "
    "else (see init)."
)

FAMILY_NOTES["phi3"] = (
    "Phi-3 (Phi3ForCausalLM) = Llama with fused projections: qkv = input_layernorm(x) @ self_attn.qkv_proj.weight^T, "
    "whose (NH + 2 * NKV) * HS output features are q (the first NH * HS), k (the next NKV * HS), v (the last NKV * "
    "HS); gate, up = the first and the second FF output features of post_attention_layernorm(x) @ "
    "mlp.gate_up_proj.weight^T; mlp = down_proj(up * silu(gate)). Every layer slides: a query at position i sees "
    "keys j with 0 <= i - j < sliding_window (HF's create_sliding_window_causal_mask). RoPE (rotate-half) on the "
    "whole head (partial_rotary_factor 1.0, no rope_scaling); scores times 1/sqrt(head size); head size hidden_size "
    "/ num_attention_heads = 8 (Phi3Config has no head_dim); untied lm_head. Norm weights multiply by plain w (init "
    "1 + 0.1 * base; parameter order input_layernorm, qkv_proj, o_proj, post_attention_layernorm, gate_up_proj, "
    "down_proj, see init)."
)

for _name in LONGROPE:
    FAMILY_NOTES[_name] = (
        "Phi-3 (Phi3ForCausalLM) as in phi3.safetensors (fused qkv_proj rows q | k | v, gate_up_proj rows gate | up, "
        "untied lm_head, same init), without a sliding window, with Phi-4-mini's RoPE: partial_rotary_factor 0.75, so "
        "RD = int(8 * 0.75) = 6 features of each head rotate, rotate-half within them (pairs (i, i + 3)) at inv_freq_i "
        "= 1 / (f_i * rope_theta^(2i / 6)), and features 6, 7 pass through; LongRoPE: f = long_factor when the "
        "sequence length T = 12 (max position + 1) exceeds original_max_position_embeddings, else short_factor, and "
        "cos and sin (not the pass-through features) are multiplied by sqrt(1 + ln(max_position_embeddings / "
        "original_max_position_embeddings) / ln(original_max_position_embeddings)). Scores times 1/sqrt(8)."
    )

DPO64_NOTES = (
    "float64 compute from the float32 weights; logits and logp are the float64 results rounded once, logits64, "
    "logp64 and dpo64.grad.* are the float64 results themselves. inv_freq is computed in float64 (HF uses float32). "
    "AdamW: one parameter group, weight decay on every tensor, loss = -S / sum(mask), losses[i] is evaluated before "
    "step i + 1. dpo: policy_logps[r] = sum_t mask * logp (rows in order), ref_logps = policy_logps + ref_offsets "
    "(constants), loss = -mean over the pairs (chosen_rows[i], rejected_rows[i]) of logsigmoid(beta * ((pc - rc) - "
    "(pr - rr))); dpo64.grad.<name> is d loss / d param (float64 only)."
)

FAMILY_CHECKS = {
    "gemma2": gemma_checks,
    "gemma3_text": gemma_checks,
    "smollm3": smollm3_checks,
    "granite": granite_checks,
    "olmo2": olmo2_checks,
    "gpt2": gpt2_checks,
    "phi3": phi3_checks,
}


def build(name, index):
    cfg = CONFIGS[name]
    gemma = derived(cfg)["gemma"]
    dpo64 = derived(cfg)["dpo64"]
    weights = init_params(cfg)
    inputs = make_inputs(cfg, seed=1000 + index)

    P = {n: w.to(torch.float64).requires_grad_(True) for n, w in weights.items()}
    S, logits, logp = summed_logps(P, cfg, inputs)
    S.backward()
    grads = {n: p.grad.detach().clone() for n, p in P.items()}

    print(f"[{name}] params {sum(w.numel() for w in weights.values())}, S = {S.item()!r}")
    if cfg.get("rope_scaling") and cfg["rope_scaling"].get("rope_type") == "llama3":
        bands = llama3_bands(cfg)
        print(f"[{name}] llama3 rope bands per frequency: {bands}, inv_freq {rope_inv_freq(cfg).tolist()}")
        assert set(bands) == {"keep", "blend", "divide"}, "the llama3 config must exercise all three branches"
    if cfg["model_type"] != "gpt2":  # GPT-2 has no RoPE
        print(f"[{name}] rope vs complex rotation: max abs {rope_check(cfg):.3e}")
    print(f"[{name}] S change when padding ids change: {padding_check(P, cfg, inputs):.3e}")
    fd_abs, fd_rel = finite_difference_check({n: p.detach().clone() for n, p in P.items()}, cfg, inputs, grads)
    print(f"[{name}] autograd vs central differences: max abs {fd_abs:.3e}, max rel {fd_rel:.3e}")
    assert fd_rel < 1e-6, "gradient check failed"
    if name in LONGROPE:
        phi3_rope_checks(name, cfg, weights, inputs, logits.detach())
    elif cfg["model_type"] in FAMILY_CHECKS:
        FAMILY_CHECKS[cfg["model_type"]](name, cfg, weights, inputs, logits.detach())
    if dpo64:
        extra_tensors, dpo_meta = dpo_reference(name, cfg, weights, inputs)

    losses, loss_after, final = adamw_trajectory(weights, cfg, inputs)
    print(f"[{name}] AdamW losses {losses} -> {loss_after}")
    assert abs(losses[0] + S.item() / inputs["mask"].sum().item()) < 1e-12

    tensors = dict(weights)
    # The Gemma, SmolLM3, Granite, OLMo 2, GPT-2 and Phi-3 files carry the DPO gradient in float64 only (the float32
    # checks compare with it too): it keeps the files small, and the summed-log-prob gradient is covered by the
    # llama/qwen files.
    for n, g in ([] if dpo64 else grads.items()):
        tensors["grad." + n] = g.to(torch.float32)
    tensors["logits"] = logits.detach().to(torch.float32)
    tensors["logp"] = logp.detach().to(torch.float32)
    if name == "llama":
        for n, w in final.items():
            tensors["adamw_final." + n] = w.to(torch.float32)
    if dpo64:
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
        "init": (
            INIT_FORMULA_GEMMA if gemma
            else INIT_FORMULA_OLMO2 if cfg["model_type"] == "olmo2"
            else INIT_FORMULA_GPT2 if cfg["model_type"] == "gpt2"
            else INIT_FORMULA_PHI3 if cfg["model_type"] == "phi3"
            else INIT_FORMULA
        ),
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
    elif dpo64:
        notes = DPO64_NOTES
        if cfg["model_type"] == "gpt2":  # no RoPE, so no inv_freq
            notes = notes.replace(" inv_freq is computed in float64 (HF uses float32).", "")
        metadata["notes"] = FAMILY_NOTES.get(name, FAMILY_NOTES[cfg["model_type"]]) + " " + notes
    if dpo64:
        metadata["dpo"] = json.dumps(dpo_meta)
    path = os.path.join(OUT_DIR, f"{name}.safetensors")
    write_safetensors(path, tensors, metadata)

    back, meta_back = read_safetensors(path)
    assert meta_back == metadata and list(back) == list(tensors)
    assert all(torch.equal(back[n], tensors[n]) for n in tensors)
    print(f"[{name}] wrote {os.path.relpath(path)} ({os.path.getsize(path)} bytes, {len(tensors)} tensors)")


def main():
    torch.set_num_threads(1)  # reproducible reductions, and the machine is shared
    print(f"torch {torch.__version__}; BLAS libraries loaded: {loaded_blas()}")
    os.makedirs(OUT_DIR, exist_ok=True)
    for index, name in enumerate(CONFIGS):
        build(name, index)


if __name__ == "__main__":
    main()
