#!/usr/bin/python3
"""Reference fixtures for tsdpo's Llama-family model, computed with PyTorch.

Writes test/fixtures/torch/{llama,qwen2,qwen3}.safetensors. Each file holds a tiny deterministic model (Hugging Face
tensor names), a fixed batch, and what tsdpo must reproduce from them: logits, per-token log-probs, the summed
completion log-prob S, dS/dparam for every parameter, and ten AdamW steps on loss = -S / sum(mask).

The model is written out by hand below (no transformers), following Hugging Face's modeling_llama / modeling_qwen2 /
modeling_qwen3 semantics. Everything is computed in float64 from float32 weights, so the stored float32 results are
the exact answer rounded once; tsdpo's float32 kernels are compared against them with a tolerance.

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
}

INIT_FORMULA = (
    "Parameter k (0-based, in the order of the HF names: model.embed_tokens.weight; per layer l: input_layernorm, "
    "q_proj.weight, [q_proj.bias], k_proj.weight, [k_proj.bias], v_proj.weight, [v_proj.bias], [q_norm, k_norm], "
    "o_proj, post_attention_layernorm, gate_proj, up_proj, down_proj; model.norm.weight; [lm_head.weight]) with n "
    "elements: base = sin(arange(n, float64) * 0.37 + 1.3 * k); matrices, embeddings and biases = 0.3 * base, norm "
    "weights = 1 + 0.1 * base; reshaped row-major to the HF shape and rounded to float32 (the float32 values are the "
    "model)."
)

ADAMW = {"lr": 1e-2, "beta1": 0.9, "beta2": 0.95, "eps": 1e-8, "weight_decay": 0.1, "steps": 10}


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
        qk_norm=cfg["model_type"] == "qwen3",
        tied=cfg["tie_word_embeddings"],
    )


def param_specs(cfg):
    """(HF name, shape, is_norm) in the order that fixes each parameter's index k in the init formula."""
    d = derived(cfg)
    V, C, L, NH, NKV, HS, FF = d["V"], d["C"], d["L"], d["NH"], d["NKV"], d["HS"], d["FF"]
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


def init_params(cfg):
    """Float32 weights by the sin formula (INIT_FORMULA), keyed by HF name, in spec order."""
    params = {}
    for k, (name, shape, is_norm) in enumerate(param_specs(cfg)):
        n = math.prod(shape)
        base = torch.sin(torch.arange(n, dtype=torch.float64) * 0.37 + 1.3 * k)
        value = 1.0 + 0.1 * base if is_norm else 0.3 * base
        params[name] = value.reshape(shape).to(torch.float32)
    return params


# ----------------------------------------------------------------------------------------------------------------
# model


def rope_inv_freq(cfg):
    """inv_freq (HS/2,) with HF's rope scaling applied (modeling_rope_utils), in float64."""
    HS = cfg["head_dim"]
    inv_freq = 1.0 / cfg["rope_theta"] ** (torch.arange(0, HS, 2, dtype=torch.float64) / HS)
    scaling = cfg["rope_scaling"]
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


def token_logps(logits, targets):
    """logp[n, t] = log_softmax(logits[n, t])[targets[n, t]], shape (N, T)."""
    return torch.log_softmax(logits, dim=-1).gather(-1, targets[..., None]).squeeze(-1)


def summed_logps(P, cfg, inputs):
    """S = sum over n, t of mask * logp: the summed completion log-probs of the batch."""
    logits = forward(P, cfg, inputs["ids"])
    logp = token_logps(logits, inputs["targets"])
    return (inputs["mask"] * logp).sum(), logits, logp


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


def finite_difference_check(P, cfg, inputs, grads, count=3, h=1e-5):
    """Autograd dS/dparam against central differences on a few entries per parameter; returns max abs/rel error."""
    gen = torch.Generator().manual_seed(7)
    max_abs, max_rel = 0.0, 0.0
    with torch.no_grad():
        for name, value in P.items():
            flat = value.view(-1)
            for j in torch.randint(0, flat.numel(), (count,), generator=gen).tolist():
                old = flat[j].item()
                flat[j] = old + h
                s_plus = summed_logps(P, cfg, inputs)[0].item()
                flat[j] = old - h
                s_minus = summed_logps(P, cfg, inputs)[0].item()
                flat[j] = old
                numeric = (s_plus - s_minus) / (2 * h)
                analytic = grads[name].view(-1)[j].item()
                err = abs(numeric - analytic)
                max_abs = max(max_abs, err)
                max_rel = max(max_rel, err / max(abs(numeric), abs(analytic), 1e-2))
    return max_abs, max_rel


def rope_check(cfg):
    """Rotate-half RoPE against the same rotation written as complex multiplication on pairs (i, i + HS/2)."""
    HS = cfg["head_dim"]
    x = torch.sin(torch.arange(T * HS, dtype=torch.float64)).view(T, HS)
    angles = torch.arange(T, dtype=torch.float64)[:, None] * rope_inv_freq(cfg)[None, :]
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
    """tensors: name -> torch tensor (written as F32 or I64 in insertion order); metadata: str -> str."""
    dtypes = {torch.float32: "F32", torch.int64: "I64"}
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
    dtypes = {"F32": torch.float32, "I64": torch.int64}
    tensors = {}
    for name, info in header.items():
        a, b = info["data_offsets"]
        tensors[name] = torch.frombuffer(bytearray(body[a:b]), dtype=dtypes[info["dtype"]]).view(info["shape"])
    return tensors, metadata


# ----------------------------------------------------------------------------------------------------------------
# main


def build(name, index):
    cfg = CONFIGS[name]
    weights = init_params(cfg)
    inputs = make_inputs(cfg, seed=1000 + index)

    P = {n: w.to(torch.float64).requires_grad_(True) for n, w in weights.items()}
    S, logits, logp = summed_logps(P, cfg, inputs)
    S.backward()
    grads = {n: p.grad.detach().clone() for n, p in P.items()}

    print(f"[{name}] params {sum(w.numel() for w in weights.values())}, S = {S.item()!r}")
    if cfg["rope_scaling"] and cfg["rope_scaling"]["rope_type"] == "llama3":
        bands = llama3_bands(cfg)
        print(f"[{name}] llama3 rope bands per frequency: {bands}, inv_freq {rope_inv_freq(cfg).tolist()}")
        assert set(bands) == {"keep", "blend", "divide"}, "the llama3 config must exercise all three branches"
    print(f"[{name}] rope vs complex rotation: max abs {rope_check(cfg):.3e}")
    print(f"[{name}] S change when padding ids change: {padding_check(P, cfg, inputs):.3e}")
    fd_abs, fd_rel = finite_difference_check({n: p.detach().clone() for n, p in P.items()}, cfg, inputs, grads)
    print(f"[{name}] autograd vs central differences: max abs {fd_abs:.3e}, max rel {fd_rel:.3e}")
    assert fd_rel < 1e-6, "gradient check failed"

    losses, loss_after, final = adamw_trajectory(weights, cfg, inputs)
    print(f"[{name}] AdamW losses {losses} -> {loss_after}")
    assert abs(losses[0] + S.item() / inputs["mask"].sum().item()) < 1e-12

    tensors = dict(weights)
    for n, g in grads.items():
        tensors["grad." + n] = g.to(torch.float32)
    tensors["logits"] = logits.detach().to(torch.float32)
    tensors["logp"] = logp.detach().to(torch.float32)
    if name == "llama":
        for n, w in final.items():
            tensors["adamw_final." + n] = w.to(torch.float32)

    metadata = {
        "format": "tsdpo-torch-fixture",
        "fixture_version": FIXTURE_VERSION,
        "generator": GENERATOR,
        "torch_version": torch.__version__,
        "python_version": sys.version.split()[0],
        "config": json.dumps(cfg),
        "init": INIT_FORMULA,
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
