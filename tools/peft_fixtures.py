#!/usr/bin/python3
"""PEFT LoRA adapters for the fused-module families, made by hand as PEFT makes them, and what they compute.

Writes, for phi3 and gpt2:
  test/fixtures/peft/<name>/adapter_config.json        the keys PEFT's LoraConfig saves
  test/fixtures/peft/<name>/adapter_model.safetensors  the state dict PEFT's save_pretrained writes
  test/fixtures/peft/<name>-reference.safetensors      the tiny base model (HF names), a batch of ids, and the float64
                                                       logits of base + adapter

PEFT is not installed here (no PyPI), so the state dict is built from a reading of PEFT's source
(src/peft/tuners/lora/layer.py, tuners_utils.py, utils/save_and_load.py):
- a target module is any module whose path equals an entry of target_modules or ends with "." + the entry, so GPT-2's
  "c_proj" adapts both attn.c_proj and mlp.c_proj;
- a targeted module gets lora_A = nn.Linear(in_features, r) and lora_B = nn.Linear(r, out_features), saved as
  weights (r, in) and (out, r) under base_model.model.<module path>.lora_A.weight / .lora_B.weight (the adapter name
  dropped). in/out come from the base layer: nn.Linear's in/out_features; for transformers' Conv1D (GPT-2), whose
  weight is stored [in, out], from weight.shape, so A and B keep nn.Linear's orientation and fan_in_fan_out: true
  only transposes B @ A when it is merged into the Conv1D weight;
- a fused module (Phi-3's qkv_proj (rows q | k | v) and gate_up_proj (gate | up), GPT-2's c_attn (columns q | k | v))
  is one module like any other: one A, one B over the whole fused output;
- forward: result = base(x) + lora_B(lora_A(dropout(x))) * lora_alpha / r; merged: W += transpose(B @ A,
  fan_in_fan_out) * lora_alpha / r (get_delta_weight). The reference logits here use the merged weights, computed in
  float64 from the float32 tensors, with the base model forwards of tools/torch_fixtures.py.

The base models are torch_fixtures.py's phi3 and gpt2 fixtures (its sin initialisation), with their configs copied
below so that this file does not change when those do. Adapter tensor j (0-based, in state-dict order: per layer, the
modules in module order, lora_A before lora_B) with n elements is 0.2 * sin(arange(n) * 0.53 + 0.9 * j), reshaped
row-major and rounded to float32.

Run: /usr/bin/python3 tools/peft_fixtures.py
"""

import json
import math
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import torch  # noqa: E402
import torch_fixtures as tf  # noqa: E402

OUT_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "test", "fixtures", "peft")

R, ALPHA = 4, 8  # scaling alpha / r = 2

CASES = {
    "phi3": {
        "config": {
            "model_type": "phi3", "vocab_size": 59, "hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 4,
            "num_key_value_heads": 2, "intermediate_size": 48, "hidden_act": "silu", "rope_theta": 10000.0,
            "rope_scaling": None, "rms_norm_eps": 1e-5, "tie_word_embeddings": False, "max_position_embeddings": 64,
            "original_max_position_embeddings": 64, "sliding_window": 5, "partial_rotary_factor": 1.0,
            "attention_bias": False,
        },
        # in an order other than the model's: PEFT keeps target_modules as a set
        "target_modules": ["o_proj", "qkv_proj", "down_proj", "gate_up_proj"],
        "fan_in_fan_out": False,
    },
    "gpt2": {
        "config": {
            "model_type": "gpt2", "vocab_size": 61, "n_embd": 32, "n_layer": 2, "n_head": 4, "n_positions": 64,
            "n_inner": 80, "activation_function": "gelu_new", "layer_norm_epsilon": 1e-5, "tie_word_embeddings": True,
            "scale_attn_weights": True, "scale_attn_by_inverse_layer_idx": False, "reorder_and_upcast_attn": False,
        },
        # "c_proj" matches attn.c_proj and mlp.c_proj alike
        "target_modules": ["c_attn", "c_proj", "c_fc"],
        "fan_in_fan_out": True,
    },
}

# The adaptable modules of a layer (path under the layer) and whether their weight is a Conv1D [in, out].
MODULES = {
    "phi3": ["self_attn.qkv_proj", "self_attn.o_proj", "mlp.gate_up_proj", "mlp.down_proj"],
    "gpt2": ["attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj"],
}
LAYER = {"phi3": "model.layers.{l}.", "gpt2": "transformer.h.{l}."}

IDS = [[1, 7, 22, 3, 41, 9, 15, 30, 2, 11], [5, 5, 18, 40, 33, 27, 0, 12, 19, 8]]


def targeted(path, target_modules):
    """PEFT's check_target_module_exists for a list: the key itself, or a key ending in "." + an entry."""
    return any(path == t or path.endswith("." + t) for t in target_modules)


def build(name):
    case = CASES[name]
    cfg = case["config"]
    P32 = tf.init_params(cfg)
    L = tf.derived(cfg)["L"]
    conv1d = name == "gpt2"
    state, j = {}, 0
    merged = {k: v.to(torch.float64) for k, v in P32.items()}
    for l in range(L):
        for m in MODULES[name]:
            path = LAYER[name].format(l=l) + m
            if not targeted(path, case["target_modules"]):
                continue
            W = P32[path + ".weight"]
            fan_in, fan_out = (W.shape[0], W.shape[1]) if conv1d else (W.shape[1], W.shape[0])
            tensors = {}
            for which, shape in (("lora_A", (R, fan_in)), ("lora_B", (fan_out, R))):
                n = math.prod(shape)
                value = 0.2 * torch.sin(torch.arange(n, dtype=torch.float64) * 0.53 + 0.9 * j)
                tensors[which] = value.reshape(shape).to(torch.float32)
                state[f"base_model.model.{path}.{which}.weight"] = tensors[which]
                j += 1
            delta = (tensors["lora_B"].double() @ tensors["lora_A"].double()) * (ALPHA / R)  # (out, in)
            merged[path + ".weight"] = merged[path + ".weight"] + (delta.T if conv1d else delta)
    ids = torch.tensor(IDS, dtype=torch.int64)
    forward = tf.gpt2_forward if conv1d else tf.phi3_forward
    logits = forward(merged, cfg, ids)
    base_logits = forward({k: v.double() for k, v in P32.items()}, cfg, ids)
    print(f"{name}: {len(state)} adapter tensors; max |logits(base + adapter) - logits(base)| = "
          f"{(logits - base_logits).abs().max().item():.4f}")

    folder = os.path.join(OUT_DIR, name)
    os.makedirs(folder, exist_ok=True)
    adapter_config = {
        "alpha_pattern": {}, "auto_mapping": None, "base_model_name_or_path": f"tiny-{name}", "bias": "none",
        "fan_in_fan_out": case["fan_in_fan_out"], "inference_mode": True, "init_lora_weights": True,
        "layers_pattern": None, "layers_to_transform": None, "lora_alpha": ALPHA, "lora_dropout": 0.0,
        "modules_to_save": None, "peft_type": "LORA", "r": R, "rank_pattern": {}, "revision": None,
        "target_modules": case["target_modules"], "task_type": "CAUSAL_LM", "use_dora": False, "use_rslora": False,
    }
    with open(os.path.join(folder, "adapter_config.json"), "w") as f:
        json.dump(adapter_config, f, indent=2, sort_keys=True)
        f.write("\n")
    tf.write_safetensors(os.path.join(folder, "adapter_model.safetensors"), state, {"format": "pt"})
    reference = dict(P32)
    reference["logits"] = logits
    tf.write_safetensors(
        os.path.join(OUT_DIR, f"{name}-reference.safetensors"), reference,
        {"format": "tsdpo-peft-fixture", "generator": "tools/peft_fixtures.py", "config": json.dumps(cfg),
         "ids": json.dumps(IDS), "scaling": str(ALPHA / R)},
    )


def main():
    torch.set_num_threads(1)
    for name in CASES:
        build(name)


if __name__ == "__main__":
    main()
