#!/usr/bin/python3
"""The PyTorch side of tsdpo's DPO-step benchmark: the same step as `tsdpo bench`, written as plain PyTorch.

    /usr/bin/python3 tools/bench_torch.py --preset smollm-135m [--prompt-len 128] [--completion-len 128] [--pairs 1]
        [--steps 5] [--warmup 1] [--threads N] [--logits all|completion] [--json]
    /usr/bin/python3 tools/bench_torch.py --self-test
    /usr/bin/python3 tools/bench_torch.py --print-presets

One step is a full DPO step on 2B rows of T = prompt_len + completion_len tokens (rows 0..B-1 chosen, B..2B-1
rejected, each row prompt + completion; no shared prefix): the frozen reference forward under no_grad, the policy
forward with the sigmoid DPO loss (beta 0.1), backward, gradient clipping to norm 1 and AdamW, as tsdpo's trainer
step. The model is a Llama-family decoder written out below in float32 (no transformers): RMSNorm, rotate-half
RoPE, GQA attention with a causal mask (matmul + softmax; PyTorch 1.13 has no F.scaled_dot_product_attention),
SwiGLU MLP, Qwen2's q/k/v biases, Qwen3's q/k norms, tied or untied lm_head; and Gemma 2/3's options: embeddings
scaled by embedScale, RMSNorm by (1 + w) (normOffset 1), sandwich norms (a second norm on each sublayer's output),
GeGLU with tanh GELU, the attention scale attnScale, tanh soft-caps of attention scores and output logits, and
per-layer attention (a sliding window and a RoPE base and scaling for each layer); and GPT-2's: LayerNorm with a bias
(normKind "layer"), learned absolute position embeddings added to the token embeddings instead of RoPE (positions
"learned"), a plain MLP (up, activation, down; mlp "plain") and biases on every projection (linearBiases).

Weights and tokens are tsdpo's (src/model/presets.ts presetModel and the bench command), so the first step's
log-probs of both programs must agree; scripts/bench-torch.mjs checks that.

Written for Debian's python3-torch (1.13). Threads: torch.set_num_threads(--threads); for the best speed run it with
LD_LIBRARY_PATH=/usr/lib/x86_64-linux-gnu/openblas-openmp and OMP_NUM_THREADS=N, as scripts/bench-torch.mjs does.
"""

import argparse
import copy
import json
import math
import os
import platform
import resource
import statistics
import sys
import time

import torch
import torch.nn.functional as F

# ----------------------------------------------------------------------------------------------------------------
# presets: the numbers of src/model/presets.ts (the published config.json values). scripts/bench-torch.mjs compares
# them with tsdpo's compiled PRESETS before it runs anything.

def _attention(window, theta):
    """One entry of a preset's per-layer `layers` list (tsdpo's LayerAttention)."""
    return dict(window=window, rope=True, ropeTheta=theta, ropeScaling=dict(type="none"))


PRESETS = {
    # HuggingFaceTB/SmolLM-135M
    "smollm-135m": dict(
        family="llama", V=49152, C=576, L=30, NH=9, NKV=3, HS=64, FF=1536, ropeTheta=10000, rmsEps=1e-5,
        tiedEmbeddings=True, qkvBias=False, qkNorm=False,
    ),
    # Qwen/Qwen2.5-0.5B
    "qwen2.5-0.5b": dict(
        family="qwen2", V=151936, C=896, L=24, NH=14, NKV=2, HS=64, FF=4864, ropeTheta=1000000, rmsEps=1e-6,
        tiedEmbeddings=True, qkvBias=True, qkNorm=False,
    ),
    # microsoft/Phi-3-mini-4k-instruct cut to 4 of its 32 layers (Llama's computation; its fused qkv_proj and
    # gate_up_proj are tsdpo's separate matrices here, as in tsdpo's own preset)
    "phi3-mini": dict(
        family="phi3", V=32064, C=3072, L=4, NH=32, NKV=32, HS=96, FF=8192, ropeTheta=10000, rmsEps=1e-5,
        tiedEmbeddings=False, qkvBias=False, qkNorm=False, slidingWindow=2047,
    ),
    # karpathy/tinyllamas stories260K (the shipped model's shape)
    "stories260k": dict(
        family="llama", V=512, C=64, L=5, NH=8, NKV=4, HS=8, FF=172, ropeTheta=10000, rmsEps=1e-5,
        tiedEmbeddings=False, qkvBias=False, qkNorm=False,
    ),
    # google/gemma-2-2b cut to 4 of its 26 layers: sliding (window 4096) and global layers alternate from a sliding
    # layer 0, query_pre_attn_scalar 256, attention soft-cap 50, final soft-cap 30
    "gemma2-2b": dict(
        family="gemma2", V=256000, C=2304, L=4, NH=8, NKV=4, HS=256, FF=9216, ropeTheta=10000,
        ropeScaling=dict(type="none"), rmsEps=1e-6, tiedEmbeddings=True, qkvBias=False, qkNorm=False, maxSeqLen=8192,
        slidingWindow=4096, layers=[_attention(4096 if l % 2 == 0 else None, 10000) for l in range(4)],
        norms="sandwich", normOffset=1, activation="gelu_tanh", embedScale=math.sqrt(2304), attnScale=1 / math.sqrt(256),
        attnSoftcap=50, finalSoftcap=30,
    ),
    # google/gemma-3-1b-pt cut to 4 of its 26 layers: with sliding_window_pattern 6 layer 5 is the first global
    # layer, so all four are local (window 512, RoPE base rope_local_base_freq 10000); no soft-caps
    "gemma3-1b": dict(
        family="gemma3", V=262144, C=1152, L=4, NH=4, NKV=1, HS=256, FF=6912, ropeTheta=1000000,
        ropeScaling=dict(type="none"), rmsEps=1e-6, tiedEmbeddings=True, qkvBias=False, qkNorm=True, maxSeqLen=32768,
        slidingWindow=512, layers=[_attention(512, 10000) for l in range(4)],
        norms="sandwich", normOffset=1, activation="gelu_tanh", embedScale=math.sqrt(1152), attnScale=1 / math.sqrt(256),
        attnSoftcap=0, finalSoftcap=0,
    ),
    # openai-community/gpt2 (GPT-2 small): n_embd 768, n_layer 12, n_head 12, n_positions 1024, n_inner null (so
    # 4 · 768), layer_norm_epsilon 1e-5 (as rmsEps), gelu_new (the tanh GELU), tied. ropeTheta and ropeScaling are
    # unused (no RoPE); maxSeqLen is n_positions, the number of rows of pos_embd.
    "gpt2-small": dict(
        family="gpt2", V=50257, C=768, L=12, NH=12, NKV=12, HS=64, FF=3072, ropeTheta=10000,
        ropeScaling=dict(type="none"), rmsEps=1e-5, tiedEmbeddings=True, qkvBias=True, qkNorm=False, maxSeqLen=1024,
        slidingWindow=None, normKind="layer", positions="learned", mlp="plain", linearBiases=True, activation="gelu_tanh",
    ),
}
# The Llama-family presets leave out the Gemma and GPT-2 keys (tsdpo's decoderOptions fills in the Llama values, as
# decoder_options below does), and ropeScaling, maxSeqLen and slidingWindow (none, unused and null for all three).

BETA = 0.1  # sigmoid DPO loss, as tsdpo bench
LR = 1e-6  # tsdpo's default learning_rate
WEIGHT_DECAY = 0.0  # tsdpo's default weight_decay (torch's AdamW default would be 0.01; 0 costs the same)
ADAM_BETAS = (0.9, 0.999)  # tsdpo's defaults, equal to torch's
ADAM_EPS = 1e-8
MAX_GRAD_NORM = 1.0  # tsdpo clips as its trainer does (and as Hugging Face's Trainer does by default): same work


# ----------------------------------------------------------------------------------------------------------------
# parameters and inputs


NO_SCALING = dict(type="none")


def decoder_options(cfg):
    """The family options of a config with the Llama values where it leaves them out (tsdpo's decoderOptions)."""
    return dict(
        norms=cfg.get("norms", "pre"),
        normOffset=cfg.get("normOffset", 0),
        activation=cfg.get("activation", "silu"),
        embedScale=cfg.get("embedScale", 1),
        attnScale=cfg.get("attnScale", 1.0 / math.sqrt(cfg["HS"])),
        attnSoftcap=cfg.get("attnSoftcap", 0),
        finalSoftcap=cfg.get("finalSoftcap", 0),
        normKind=cfg.get("normKind", "rms"),
        positions=cfg.get("positions", "rope"),
        mlp=cfg.get("mlp", "gated"),
        linearBiases=cfg.get("linearBiases", False),
    )


def layer_attention(cfg, l):
    """Layer l's window (None: the whole prefix), RoPE switch, base and scaling (tsdpo's layerAttention)."""
    if cfg.get("layers"):
        return cfg["layers"][l]
    return dict(window=cfg.get("slidingWindow"), rope=True, ropeTheta=cfg["ropeTheta"], ropeScaling=cfg.get("ropeScaling", NO_SCALING))


def param_specs(cfg):
    """(name, shape) in tsdpo's paramSpecs order (src/model/config.ts); the index k in this list seeds the weights.
    GPT-2's options add pos_embd after tok_embd (positions "learned"), a bias <norm>_b after each norm weight (normKind
    "layer"), bo after wo, b_up after w_up and b_down after w_down (linearBiases), and drop w_gate (mlp "plain"); its
    q/k/v biases come after wv, as Qwen2's. Weights are [out][in] as everywhere in tsdpo (Hugging Face's GPT-2 Conv1D
    stores [in][out], and its c_attn is wq, wk, wv side by side)."""
    V, C, L, NH, NKV, HS, FF = (cfg[x] for x in ("V", "C", "L", "NH", "NKV", "HS", "FF"))
    o = decoder_options(cfg)
    sandwich, biases = o["norms"] == "sandwich", o["linearBiases"]

    def norm(name):  # a LayerNorm has a bias beside its weight
        return [(name, (C,))] + ([(name + "_b", (C,))] if o["normKind"] == "layer" else [])

    specs = [("tok_embd", (V, C))] + ([("pos_embd", (cfg["maxSeqLen"], C))] if o["positions"] == "learned" else [])
    for l in range(L):
        p = f"layers.{l}."
        specs += norm(p + "attn_norm") + [(p + "wq", (NH * HS, C)), (p + "wk", (NKV * HS, C)), (p + "wv", (NKV * HS, C))]
        if cfg["qkvBias"]:
            specs += [(p + "bq", (NH * HS,)), (p + "bk", (NKV * HS,)), (p + "bv", (NKV * HS,))]
        if cfg["qkNorm"]:
            specs += [(p + "q_norm", (HS,)), (p + "k_norm", (HS,))]
        specs += [(p + "wo", (C, NH * HS))] + ([(p + "bo", (C,))] if biases else [])
        specs += (norm(p + "attn_post_norm") if sandwich else []) + norm(p + "ffn_norm")
        specs += [(p + "w_gate", (FF, C))] if o["mlp"] == "gated" else []
        specs += [(p + "w_up", (FF, C))] + ([(p + "b_up", (FF,))] if biases else [])
        specs += [(p + "w_down", (C, FF))] + ([(p + "b_down", (C,))] if biases else [])
        specs += norm(p + "ffn_post_norm") if sandwich else []
    specs += norm("out_norm")
    if not cfg["tiedEmbeddings"]:
        specs.append(("lm_head", (V, C)))
    return specs


def preset_weight(name, shape, k, norm_offset=0):
    """tsdpo's presetModel: element i (row-major) of tensor k is 0.02·sin(0.37·i + 1.3·k), or 1 + 0.1·sin(…) for
    names ending in "norm" (0.1·sin(…) when the config's normOffset is 1: Gemma's norms multiply by 1 + w, so the
    effective scale is the same); computed in float64 and rounded once to float32, as JS's Math.sin into a
    Float32Array. Biases (bq, bo, b_up, attn_norm_b, …) and pos_embd do not end in "norm": 0.02·sin(…)."""
    s = torch.sin(torch.arange(math.prod(shape), dtype=torch.float64) * 0.37 + 1.3 * k)
    if name.endswith("norm"):
        value = 0.1 * s if norm_offset else 1.0 + 0.1 * s
    else:
        value = 0.02 * s
    return value.to(torch.float32).view(shape)


def sequence_tokens(kind, n, V):
    """Token i of sequence kind s (prompt 0, chosen 1, rejected 2) is (i·2654435761 + s·40503 + 17) mod V, the same
    for every pair; tsdpo bench uses the same formula. (Python ints are exact; in JS the product stays below 2^53.)"""
    return [(i * 2654435761 + kind * 40503 + 17) % V for i in range(n)]


def make_batch(cfg, prompt_len, completion_len, pairs):
    """ids (2B, T): rows 0..B-1 prompt + chosen, rows B..2B-1 prompt + rejected."""
    V = cfg["V"]
    prompt = sequence_tokens(0, prompt_len, V)
    chosen = prompt + sequence_tokens(1, completion_len, V)
    rejected = prompt + sequence_tokens(2, completion_len, V)
    return torch.tensor([chosen] * pairs + [rejected] * pairs, dtype=torch.int64)


# ----------------------------------------------------------------------------------------------------------------
# model


def rope_inv_freq(HS, theta, scaling):
    """theta^(−2i/HS), i < HS/2, then scaled (as src/model/rope.ts ropeInvFreq); llama3 scaling is not implemented."""
    inv_freq = 1.0 / theta ** (torch.arange(0, HS, 2, dtype=torch.float64) / HS)
    if scaling["type"] == "linear":
        return inv_freq / scaling["factor"]
    if scaling["type"] != "none":
        raise NotImplementedError(f"ropeScaling {scaling['type']} is not implemented in tools/bench_torch.py")
    return inv_freq


def rope_tables(HS, theta, scaling, T, dtype):
    """cos, sin of shape (T, HS/2): angle = pos · inv_freq, in float64 then cast (as src/model/rope.ts)."""
    angles = torch.arange(T, dtype=torch.float64)[:, None] * rope_inv_freq(HS, theta, scaling)[None, :]
    return angles.cos().to(dtype), angles.sin().to(dtype)


def rmsnorm(x, w, eps):
    # x (..., D), w (D)
    return x * torch.rsqrt(x.pow(2).mean(dim=-1, keepdim=True) + eps) * w


def rope(x, cos, sin):
    # x (R, H, T, HS); element i rotates with element i + HS/2 (Hugging Face's rotate-half layout, as tsdpo)
    half = x.shape[-1] // 2
    a, b = x[..., :half], x[..., half:]
    return torch.cat((a * cos - b * sin, b * cos + a * sin), dim=-1)


class Llama(torch.nn.Module):
    """Parameters in tsdpo's order, one nn.Parameter each; forward returns the summed completion log-prob per row."""

    def __init__(self, cfg, dtype=torch.float32):
        super().__init__()
        self.cfg = cfg
        self.opts = decoder_options(cfg)
        self.names = [name for name, _ in param_specs(cfg)]
        self.index = {name: k for k, name in enumerate(self.names)}
        offset = self.opts["normOffset"]
        self.weights = torch.nn.ParameterList(
            [torch.nn.Parameter(preset_weight(name, shape, k, offset).to(dtype)) for k, (name, shape) in enumerate(param_specs(cfg))]
        )
        self.rope_cache = {}

    def w(self, name):
        return self.weights[self.index[name]]

    def opt(self, name):
        k = self.index.get(name)
        return None if k is None else self.weights[k]

    def norm(self, x, name):
        w = self.w(name)
        if self.opts["normKind"] == "layer":  # GPT-2: LayerNorm (biased variance) with the bias name + "_b"
            return F.layer_norm(x, (x.shape[-1],), w, self.w(name + "_b"), self.cfg["rmsEps"])
        return rmsnorm(x, 1 + w if self.opts["normOffset"] else w, self.cfg["rmsEps"])

    def tables(self, T, dtype):
        """Per layer: RoPE cos, sin (None when the layer has no RoPE) and the additive causal mask (with the layer's
        sliding window) for length T; tables shared by layers with equal settings, built once per length."""
        layers = []
        for l in range(self.cfg["L"]):
            a = layer_attention(self.cfg, l)
            rotate = a["rope"] and self.opts["positions"] == "rope"  # learned positions: no RoPE anywhere
            rope_key = ("rope", T, dtype, a["ropeTheta"], json.dumps(a["ropeScaling"], sort_keys=True)) if rotate else None
            if rope_key is not None and rope_key not in self.rope_cache:
                self.rope_cache[rope_key] = rope_tables(self.cfg["HS"], a["ropeTheta"], a["ropeScaling"], T, dtype)
            mask_key = ("mask", T, dtype, a["window"])
            if mask_key not in self.rope_cache:
                mask = torch.full((T, T), float("-inf"), dtype=dtype).triu(1)  # (T, T): key column > query row is hidden
                if a["window"] is not None:  # and so are keys `window` or more positions back
                    mask = mask + torch.full((T, T), float("-inf"), dtype=dtype).tril(-a["window"])
                self.rope_cache[mask_key] = mask
            cos, sin = self.rope_cache[rope_key] if rope_key is not None else (None, None)
            layers.append((cos, sin, self.rope_cache[mask_key]))
        return layers

    def hidden(self, ids):
        """Final-norm hidden states (R, T, C) for ids (R, T)."""
        cfg, o = self.cfg, self.opts
        NH, NKV, HS = cfg["NH"], cfg["NKV"], cfg["HS"]
        sandwich, cap = o["norms"] == "sandwich", o["attnSoftcap"]
        R, T = ids.shape
        dtype = self.weights[0].dtype
        tables = self.tables(T, dtype)
        x = F.embedding(ids, self.w("tok_embd"))  # (R, T, C)
        if o["positions"] == "learned":  # GPT-2: row t of pos_embd is added at position t
            x = x + self.w("pos_embd")[:T]
        if o["embedScale"] != 1:
            x = x * o["embedScale"]
        for l in range(cfg["L"]):
            p = f"layers.{l}."
            cos, sin, mask = tables[l]
            h = self.norm(x, p + "attn_norm")
            q = F.linear(h, self.w(p + "wq"), self.opt(p + "bq")).view(R, T, NH, HS).transpose(1, 2)  # (R, NH, T, HS)
            k = F.linear(h, self.w(p + "wk"), self.opt(p + "bk")).view(R, T, NKV, HS).transpose(1, 2)  # (R, NKV, T, HS)
            v = F.linear(h, self.w(p + "wv"), self.opt(p + "bv")).view(R, T, NKV, HS).transpose(1, 2)  # (R, NKV, T, HS)
            if cfg["qkNorm"]:
                q = self.norm(q, p + "q_norm")
                k = self.norm(k, p + "k_norm")
            if cos is not None:
                q, k = rope(q, cos, sin), rope(k, cos, sin)
            if NH != NKV:  # query head h reads KV head h // (NH / NKV)
                k = k.repeat_interleave(NH // NKV, dim=1)  # (R, NH, T, HS)
                v = v.repeat_interleave(NH // NKV, dim=1)
            scores = torch.matmul(q, k.transpose(-1, -2)) * o["attnScale"]  # (R, NH, T, T)
            if cap:
                scores = torch.tanh(scores / cap) * cap
            y = torch.matmul((scores + mask).softmax(dim=-1), v)  # (R, NH, T, HS)
            out = F.linear(y.transpose(1, 2).reshape(R, T, NH * HS), self.w(p + "wo"), self.opt(p + "bo"))
            x = x + (self.norm(out, p + "attn_post_norm") if sandwich else out)
            h = self.norm(x, p + "ffn_norm")
            if o["mlp"] == "plain":  # GPT-2: w_down(act(w_up h + b_up)) + b_down
                gate = F.linear(h, self.w(p + "w_up"), self.opt(p + "b_up"))
            else:
                gate = F.linear(h, self.w(p + "w_gate"))
            gate = F.gelu(gate, approximate="tanh") if o["activation"] == "gelu_tanh" else F.silu(gate)
            if o["mlp"] != "plain":
                gate = gate * F.linear(h, self.w(p + "w_up"))
            out = F.linear(gate, self.w(p + "w_down"), self.opt(p + "b_down"))
            x = x + (self.norm(out, p + "ffn_post_norm") if sandwich else out)
        return self.norm(x, "out_norm")

    def lm_head(self):
        return self.w("tok_embd") if self.cfg["tiedEmbeddings"] else self.w("lm_head")

    def completion_logps(self, ids, prompt_len, logits="all"):
        """Sum over completion tokens of log p(token | prefix), one per row: (R,). Position t predicts token t + 1,
        so positions prompt_len−1 … T−2 predict the completion. logits="all" runs lm_head on every position (as
        tsdpo and Hugging Face do); "completion" only on those that predict a completion token."""
        h = self.hidden(ids)  # (R, T, C)
        T = ids.shape[1]
        cap = self.opts["finalSoftcap"]
        if logits == "completion":
            pred = F.linear(h[:, prompt_len - 1 : T - 1], self.lm_head())  # (R, T−P, V)
            if cap:
                pred = torch.tanh(pred / cap) * cap
        else:
            pred = F.linear(h, self.lm_head())  # (R, T, V)
            if cap:
                pred = torch.tanh(pred / cap) * cap
            pred = pred[:, prompt_len - 1 : T - 1]  # (R, T−P, V)
        targets = ids[:, prompt_len:]  # (R, T−P)
        return pred.log_softmax(dim=-1).gather(-1, targets.unsqueeze(-1)).squeeze(-1).sum(dim=-1)


def dpo_loss(policy_logps, ref_logps, pairs, beta=BETA):
    """Sigmoid DPO loss (Rafailov et al. 2023, eq. 7), mean over pairs; rows 0..B-1 chosen, B..2B-1 rejected."""
    policy_chosen, policy_rejected = policy_logps[:pairs], policy_logps[pairs:]
    ref_chosen, ref_rejected = ref_logps[:pairs], ref_logps[pairs:]
    margins = (policy_chosen - ref_chosen) - (policy_rejected - ref_rejected)
    return -F.logsigmoid(beta * margins).mean()


# ----------------------------------------------------------------------------------------------------------------
# environment


def mapped_blas():
    """Paths of BLAS/LAPACK libraries this process has mapped (call after the first matmul)."""
    found = []
    try:
        with open("/proc/self/maps") as f:
            for line in f:
                parts = line.split()
                path = parts[5] if len(parts) >= 6 else ""
                base = os.path.basename(path)
                if ("blas" in base or "lapack" in base) and path not in found:
                    found.append(path)
    except OSError as e:
        found.append(f"unreadable /proc/self/maps: {e}")
    return found


def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def environment(threads):
    return {
        "torch_version": torch.__version__,
        "python_version": platform.python_version(),
        "torch_num_threads": torch.get_num_threads(),
        "threads_requested": threads,
        "blas_mapped": mapped_blas(),
        "OPENBLAS_CORETYPE": os.environ.get("OPENBLAS_CORETYPE"),
        "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS"),
        "LD_LIBRARY_PATH": os.environ.get("LD_LIBRARY_PATH"),
        "cpu": cpu_model(),
        "cpus": os.cpu_count(),
        "loadavg": list(os.getloadavg()),
    }


def gemm_gflops(M, K, N, reps=5):
    """Median GFLOP/s of an fp32 (M, K) · (N, K)ᵀ product, F.linear's layout, after one warm-up."""
    gen = torch.Generator().manual_seed(0)
    a = torch.rand(M, K, generator=gen)
    b = torch.rand(N, K, generator=gen)
    F.linear(a, b)
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        F.linear(a, b)
        times.append(time.perf_counter() - t0)
    return 2.0 * M * K * N / statistics.median(times) / 1e9


# ----------------------------------------------------------------------------------------------------------------
# the benchmark


def run_bench(args):
    cfg = PRESETS[args.preset]
    torch.set_num_threads(args.threads)
    B, P, T = args.pairs, args.prompt_len, args.prompt_len + args.completion_len
    if decoder_options(cfg)["positions"] == "learned" and T > cfg["maxSeqLen"]:
        raise SystemExit(f"bench_torch.py: {args.preset} has {cfg['maxSeqLen']} learned positions; prompt + completion is {T}")
    ids = make_batch(cfg, P, args.completion_len, B)  # (2B, T)
    policy = Llama(cfg)
    reference = copy.deepcopy(policy).requires_grad_(False)  # frozen copy; its forward runs under no_grad
    # zero_grad(set_to_none=True): backward then writes fresh gradients instead of adding into zeroed ones, which
    # skips a memset and an add over every parameter (PyTorch 2 made it the default). Against set_to_none=False on a
    # 4-layer SmolLM-shaped model (2 rows of 256 tokens, 2 threads) the two were within this machine's noise, about
    # 2.0 s per step each. AdamW runs its default per-tensor loop; 1.13 has no fused CPU AdamW.
    optimizer = torch.optim.AdamW(policy.parameters(), lr=LR, betas=ADAM_BETAS, eps=ADAM_EPS, weight_decay=WEIGHT_DECAY)

    check = None
    steps = []  # timed steps only: dicts of part → seconds
    for step in range(args.warmup + args.steps):
        t0 = time.perf_counter()
        with torch.no_grad():
            ref_logps = reference.completion_logps(ids, P, args.logits)  # (2B,)
        t1 = time.perf_counter()
        policy_logps = policy.completion_logps(ids, P, args.logits)  # (2B,)
        loss = dpo_loss(policy_logps, ref_logps, B)
        loss_value = loss.item()
        t2 = time.perf_counter()
        loss.backward()
        t3 = time.perf_counter()
        torch.nn.utils.clip_grad_norm_(policy.parameters(), MAX_GRAD_NORM)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        t4 = time.perf_counter()
        if check is None:  # the very first step (warm-up or not): the weights are still presetModel's
            check = {
                "chosen_logps": policy_logps[0].item(),
                "rejected_logps": policy_logps[B].item(),
                "loss": loss_value,
            }
        if step >= args.warmup:
            steps.append({"ref_fwd": t1 - t0, "policy_fwd": t2 - t1, "backward": t3 - t2, "optimizer": t4 - t3, "total": t4 - t0})

    env = environment(args.threads)  # after the first matmul, so the BLAS library is mapped
    gemm_shape = (2 * B * T, cfg["C"], cfg["FF"])  # the run's MLP up projection
    gflops = gemm_gflops(*gemm_shape)
    env["gemm_shape_MKN"] = list(gemm_shape)
    totals = [s["total"] for s in steps]
    step_s = statistics.median(totals)
    # the split of the step whose time is nearest the median, as tsdpo bench reports it
    median_step = min(steps, key=lambda s: abs(s["total"] - step_s))
    share = {part: median_step[part] / median_step["total"] for part in ("policy_fwd", "ref_fwd", "backward", "optimizer")}
    return {
        "ms_per_step": step_s * 1e3,
        "tokens_per_second": 2 * B * T / step_s,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,  # ru_maxrss is KB on Linux
        "gemm_gflops": gflops,
        "fma_peak_gflops": None,  # not measurable from Python; tsdpo reports its own
        "share": share,
        "check": check,
        "steps_ms": [t * 1e3 for t in totals],
        "config": {
            "preset": args.preset, "prompt_len": P, "completion_len": args.completion_len, "pairs": B,
            "steps": args.steps, "warmup": args.warmup, "threads": args.threads, "logits": args.logits,
            "beta": BETA, "lr": LR, "weight_decay": WEIGHT_DECAY, "adam_betas": list(ADAM_BETAS), "adam_eps": ADAM_EPS,
            "max_grad_norm": MAX_GRAD_NORM, "zero_grad_set_to_none": True, "model": cfg,
        },
        "env": env,
    }


def print_summary(r):
    c, e = r["config"], r["env"]
    print(f"PyTorch {e['torch_version']} DPO step, preset {c['preset']}: {2 * c['pairs']} rows × "
          f"({c['prompt_len']} + {c['completion_len']}) tokens, {c['threads']} threads (torch uses {e['torch_num_threads']})")
    print(f"  ms/step (median of {c['steps']}): {r['ms_per_step']:.1f}   tokens/s: {r['tokens_per_second']:.0f}   "
          f"peak RSS: {r['peak_rss_mb']:.0f} MB   GEMM {'×'.join(map(str, e['gemm_shape_MKN']))}: {r['gemm_gflops']:.1f} GFLOP/s")
    print("  share: " + "  ".join(f"{k} {v * 100:.1f}%" for k, v in r["share"].items()))
    print(f"  check (first step, pair 0): chosen {r['check']['chosen_logps']:.6f}  rejected "
          f"{r['check']['rejected_logps']:.6f}  loss {r['check']['loss']:.6f}")
    print(f"  steps ms: {', '.join(f'{t:.1f}' for t in r['steps_ms'])}")
    print(f"  BLAS: {', '.join(e['blas_mapped']) or 'none mapped'}   OMP_NUM_THREADS={e['OMP_NUM_THREADS']}   "
          f"OPENBLAS_CORETYPE={e['OPENBLAS_CORETYPE']}   LD_LIBRARY_PATH={e['LD_LIBRARY_PATH']}")
    print(f"  CPU: {e['cpu']} ({e['cpus']} cpus), load average {' '.join(f'{x:.2f}' for x in e['loadavg'])}")


# ----------------------------------------------------------------------------------------------------------------
# self-test: the batched model against a slow per-position loop, and autograd against finite differences


def slow_completion_logp(model, ids_row, prompt_len):
    """Summed completion log-prob of one sequence, written independently of Llama.hidden: one position at a time
    with a growing key/value list (no mask; a sliding layer reads the last `window` entries), per-head loops, RoPE
    as complex multiplication of the pairs (i, i + HS/2), tanh GELU, soft-caps and LayerNorm from their formulas,
    and log p = logit − logsumexp. Computes in the weights' dtype."""
    cfg = model.cfg
    o = decoder_options(cfg)
    NH, NKV, HS, eps, L = cfg["NH"], cfg["NKV"], cfg["HS"], cfg["rmsEps"], cfg["L"]
    W = {name: model.weights[k].detach() for k, name in enumerate(model.names)}
    half = HS // 2
    attention = [layer_attention(cfg, l) for l in range(L)]
    inv_freqs = []
    for a in attention:
        divisor = a["ropeScaling"]["factor"] if a["ropeScaling"]["type"] == "linear" else 1.0
        assert a["ropeScaling"]["type"] in ("none", "linear")
        inv_freqs.append([a["ropeTheta"] ** (-2.0 * i / HS) / divisor for i in range(half)])

    def norm(x, name):
        if o["normKind"] == "layer":
            centred = x - x.sum() / x.numel()
            return centred / torch.sqrt((centred * centred).sum() / x.numel() + eps) * W[name] + W[name + "_b"]
        w = W[name] + 1 if o["normOffset"] else W[name]
        return x / torch.sqrt((x * x).sum() / x.numel() + eps) * w

    def bias(name):  # a bias the config may not have: 0 then
        return W[name] if name in W else 0.0

    rotates = [a["rope"] and o["positions"] == "rope" for a in attention]

    def rotate(vec, pos, inv_freq):  # vec (HS,)
        z = torch.complex(vec[:half].double(), vec[half:].double())
        angle = torch.tensor([pos * f for f in inv_freq], dtype=torch.float64)
        z = z * torch.complex(torch.cos(angle), torch.sin(angle))
        return torch.cat((z.real, z.imag)).to(vec.dtype)

    def cap(x, c):
        return c * torch.tanh(x / c) if c else x

    def activation(g):
        if o["activation"] == "gelu_tanh":
            return 0.5 * g * (1 + torch.tanh(math.sqrt(2 / math.pi) * (g + 0.044715 * g * g * g)))
        return g / (1 + torch.exp(-g))

    keys = [[[] for _ in range(NKV)] for _ in range(L)]  # keys[l][kv head] = list of (HS,) per position
    values = [[[] for _ in range(NKV)] for _ in range(L)]
    lm_head = W["tok_embd"] if cfg["tiedEmbeddings"] else W["lm_head"]
    total = 0.0
    T = len(ids_row)
    for t in range(T - 1):
        x = W["tok_embd"][ids_row[t]].clone()  # (C,)
        if o["positions"] == "learned":
            x = x + W["pos_embd"][t]
        x = x * o["embedScale"]
        for l in range(L):
            p = f"layers.{l}."
            a = attention[l]
            first = 0 if a["window"] is None else max(0, t + 1 - a["window"])  # oldest position this layer reads
            h = norm(x, p + "attn_norm")
            q = W[p + "wq"] @ h
            k = W[p + "wk"] @ h
            v = W[p + "wv"] @ h
            if cfg["qkvBias"]:
                q, k, v = q + W[p + "bq"], k + W[p + "bk"], v + W[p + "bv"]
            heads = []
            for kv in range(NKV):
                kh = k[kv * HS : (kv + 1) * HS]
                if cfg["qkNorm"]:
                    kh = norm(kh, p + "k_norm")
                keys[l][kv].append(rotate(kh, t, inv_freqs[l]) if rotates[l] else kh)
                values[l][kv].append(v[kv * HS : (kv + 1) * HS])
            for head in range(NH):
                kv = head * NKV // NH
                qh = q[head * HS : (head + 1) * HS]
                if cfg["qkNorm"]:
                    qh = norm(qh, p + "q_norm")
                if rotates[l]:
                    qh = rotate(qh, t, inv_freqs[l])
                scores = torch.stack([cap(qh.dot(kj) * o["attnScale"], o["attnSoftcap"]) for kj in keys[l][kv][first:]])
                weights = torch.exp(scores - scores.max())
                weights = weights / weights.sum()
                heads.append(sum(wj * vj for wj, vj in zip(weights, values[l][kv][first:])))
            out = W[p + "wo"] @ torch.cat(heads) + bias(p + "bo")
            x = x + (norm(out, p + "attn_post_norm") if o["norms"] == "sandwich" else out)
            h = norm(x, p + "ffn_norm")
            if o["mlp"] == "plain":
                inner = activation(W[p + "w_up"] @ h + bias(p + "b_up"))
            else:
                inner = activation(W[p + "w_gate"] @ h) * (W[p + "w_up"] @ h)
            out = W[p + "w_down"] @ inner + bias(p + "b_down")
            x = x + (norm(out, p + "ffn_post_norm") if o["norms"] == "sandwich" else out)
        if t >= prompt_len - 1:
            logits = cap(lm_head @ norm(x, "out_norm"), o["finalSoftcap"])
            total += (logits[ids_row[t + 1]] - torch.logsumexp(logits, dim=0)).item()
    return total


def self_test():
    torch.set_num_threads(1)
    failures = []

    def report(what, err, tol):
        ok = err <= tol
        print(f"  {'ok  ' if ok else 'FAIL'} {what}: {err:.3g} (tolerance {tol:g})")
        if not ok:
            failures.append(what)

    # the init formula on hand-computed entries: tensor 0 (tok_embd) element 2, tensor 1 (attn_norm) element 0
    cfg = PRESETS["stories260k"]
    m = Llama(cfg)
    report("init tok_embd[0,2] = 0.02·sin(0.74)", abs(m.w("tok_embd")[0, 2].item() - 0.02 * math.sin(0.74)), 1e-9)
    report("init attn_norm[0] = 1 + 0.1·sin(1.3)", abs(m.w("layers.0.attn_norm")[0].item() - (1 + 0.1 * math.sin(1.3))), 1e-7)
    qwen_names = [n for n, _ in param_specs(PRESETS["qwen2.5-0.5b"])][:12]
    expected = ["tok_embd", "layers.0.attn_norm", "layers.0.wq", "layers.0.wk", "layers.0.wv", "layers.0.bq", "layers.0.bk",
                "layers.0.bv", "layers.0.wo", "layers.0.ffn_norm", "layers.0.w_gate", "layers.0.w_up"]
    report("qwen2 parameter order (biases after wv)", 0.0 if qwen_names == expected else 1.0, 0.0)
    gemma_names = [n for n, _ in param_specs(PRESETS["gemma3-1b"])][:15]
    expected = ["tok_embd", "layers.0.attn_norm", "layers.0.wq", "layers.0.wk", "layers.0.wv", "layers.0.q_norm",
                "layers.0.k_norm", "layers.0.wo", "layers.0.attn_post_norm", "layers.0.ffn_norm", "layers.0.w_gate",
                "layers.0.w_up", "layers.0.w_down", "layers.0.ffn_post_norm", "layers.1.attn_norm"]
    report("gemma3 parameter order (sandwich norms after wo and w_down)", 0.0 if gemma_names == expected else 1.0, 0.0)
    report("gemma init: norms (normOffset 1) are 0.1·sin(…), layers.0.ffn_post_norm[3] = 0.1·sin(1.11 + 1.3·13)",
           abs(preset_weight("layers.0.ffn_post_norm", (8,), 13, 1)[3].item() - 0.1 * math.sin(0.37 * 3 + 1.3 * 13)), 1e-8)
    report("presets: gemma2-2b alternates sliding (4096) and global layers from layer 0; gemma3-1b is all local",
           0.0 if [a["window"] for a in PRESETS["gemma2-2b"]["layers"]] == [4096, None, 4096, None]
           and [(a["window"], a["ropeTheta"]) for a in PRESETS["gemma3-1b"]["layers"]] == [(512, 10000)] * 4 else 1.0, 0.0)
    gpt2_specs = param_specs(PRESETS["gpt2-small"])
    expected = ["tok_embd", "pos_embd"] + [f"layers.0.{n}" for n in (
        "attn_norm", "attn_norm_b", "wq", "wk", "wv", "bq", "bk", "bv", "wo", "bo", "ffn_norm", "ffn_norm_b", "w_up", "b_up",
        "w_down", "b_down")] + ["layers.1.attn_norm"]
    report("gpt2 parameter order (pos_embd second; q/k/v biases after wv; bo, b_up, b_down and <norm>_b after their "
           "weights; out_norm, out_norm_b last)",
           0.0 if [n for n, _ in gpt2_specs][:19] == expected and [n for n, _ in gpt2_specs][-2:] == ["out_norm", "out_norm_b"]
           and len(gpt2_specs) == 2 + 16 * 12 + 2 and dict(gpt2_specs)["pos_embd"] == (1024, 768) else 1.0, 0.0)
    report("gpt2 init: layers.0.attn_norm_b (k 3) is a bias, 0.02·sin: element 2 = 0.02·sin(0.74 + 3.9)",
           abs(preset_weight("layers.0.attn_norm_b", (8,), 3)[2].item() - 0.02 * math.sin(0.74 + 3.9)), 1e-8)
    report("gpt2 init: layers.0.attn_norm (k 2) is a norm: element 1 = 1 + 0.1·sin(0.37 + 2.6)",
           abs(preset_weight("layers.0.attn_norm", (8,), 2)[1].item() - (1 + 0.1 * math.sin(0.37 + 2.6))), 1e-7)
    g = PRESETS["gpt2-small"]
    report("preset gpt2-small: NH·HS = C, FF = 4·C (n_inner null), NKV = NH, tied",
           0.0 if g["NH"] * g["HS"] == g["C"] and g["FF"] == 4 * g["C"] and g["NKV"] == g["NH"] and g["tiedEmbeddings"] else 1.0, 0.0)

    # stories260K as shipped, its shapes with Qwen2's switches (q/k/v biases, tied embeddings) and Qwen3's q/k norm,
    # and its shapes with Gemma 2's and Gemma 3's options. T = 11 here, so windows of 3 and 4 cut; with these weights
    # (0.02·sin) the scores and logits are at most about 1 and 0.2, so soft-caps of 0.1 bend them well away from linear.
    def attention(window, theta, scaling=NO_SCALING):
        return dict(window=window, rope=True, ropeTheta=theta, ropeScaling=scaling)

    gemma = dict(cfg, tiedEmbeddings=True, norms="sandwich", normOffset=1, activation="gelu_tanh", embedScale=8.0)
    variants = {
        "stories260k": cfg,
        "stories260k shapes, qkv bias + tied": dict(cfg, qkvBias=True, tiedEmbeddings=True),
        "stories260k shapes, qk norm": dict(cfg, qkNorm=True),
        "stories260k shapes, Gemma 2 options (sandwich, 1 + w, GeGLU, scale, soft-caps 0.1, windows 3/global)": dict(
            gemma, family="gemma2", attnScale=1 / math.sqrt(12), attnSoftcap=0.1, finalSoftcap=0.1, slidingWindow=3,
            layers=[attention(3 if l % 2 == 0 else None, 10000) for l in range(cfg["L"])],
        ),
        "stories260k shapes, Gemma 3 options (q/k norm, local window 4 base 1e4, global base 1e6 linear x2)": dict(
            gemma, family="gemma3", qkNorm=True, attnScale=1 / math.sqrt(10), slidingWindow=4,
            layers=[attention(4, 10000) if l != 2 else attention(None, 1000000, dict(type="linear", factor=2.0))
                    for l in range(cfg["L"])],
        ),
        # GPT-2's options (gpt2-small's keys) on small shapes: NH = NKV = 8, HS 8, C 64 = NH·HS, FF 256 = 4·C,
        # 32 learned positions
        "GPT-2 (gpt2-small options: LayerNorm, learned positions, plain GELU MLP, all biases) at V 512, C 64, L 5, "
        "NH 8, FF 256, 32 positions": dict(
            PRESETS["gpt2-small"], V=512, C=64, L=5, NH=8, NKV=8, HS=8, FF=256, maxSeqLen=32,
        ),
    }
    P, CL, B = 5, 6, 2
    for label, vcfg in variants.items():
        print(f"{label}:")
        if vcfg.get("layers"):
            # each Gemma option changes the result: turning it off moves the chosen row's log-prob
            ids = make_batch(vcfg, P, CL, B)
            base = Llama(vcfg, torch.float64).completion_logps(ids, P)[0].item()
            offs = {"soft-caps": dict(vcfg, attnSoftcap=0, finalSoftcap=0), "windows": dict(vcfg, layers=[dict(a, window=None) for a in vcfg["layers"]]),
                    "RoPE bases": dict(vcfg, layers=[dict(a, ropeTheta=10000, ropeScaling=NO_SCALING) for a in vcfg["layers"]])}
            for what, off in offs.items():
                if off["layers"] == vcfg["layers"] and decoder_options(off) == decoder_options(vcfg):
                    continue  # nothing to turn off in this variant
                with torch.no_grad():
                    moved = abs(Llama(off, torch.float64).completion_logps(ids, P)[0].item() - base)
                report(f"{what} matter: |Δ log-prob| = {moved:.3g} when off, want > 1e-6", 0.0 if moved > 1e-6 else 1.0, 0.0)
        if vcfg["family"] == "gpt2":
            # the positions matter: permuting pos_embd's first T rows moves the chosen row's log-prob
            ids = make_batch(vcfg, P, CL, B)
            T = ids.shape[1]
            m = Llama(vcfg, torch.float64)
            with torch.no_grad():
                base = m.completion_logps(ids, P)[0].item()
                pos = m.w("pos_embd")
                pos[:T] = pos[:T].flip(0).clone()
                moved = abs(m.completion_logps(ids, P)[0].item() - base)
            report(f"positions matter: |Δ log-prob| = {moved:.3g} with pos_embd rows 0..{T - 1} reversed, want > 1e-6",
                   0.0 if moved > 1e-6 else 1.0, 0.0)
        ids = make_batch(vcfg, P, CL, B)  # (2B, T)
        model64 = Llama(vcfg, torch.float64)
        model32 = Llama(vcfg, torch.float32)
        with torch.no_grad():
            batched64 = model64.completion_logps(ids, P)
            batched32 = model32.completion_logps(ids, P)
            batched_c = model32.completion_logps(ids, P, "completion")
        for row in (0, B):  # a chosen and a rejected row
            slow = slow_completion_logp(model64, ids[row].tolist(), P)
            report(f"row {row}: batched float64 vs slow loop, |Δ| / max(1, |S|) with S = {slow:.6f}",
                   abs(batched64[row].item() - slow) / max(1.0, abs(slow)), 1e-5)
            report(f"row {row}: batched float32 vs slow float64 loop, relative",
                   abs(batched32[row].item() - slow) / max(1.0, abs(slow)), 1e-5)
        report("--logits completion equals --logits all (float32)", (batched_c - batched32).abs().max().item(), 1e-5)

        # d loss / d weight at step 0 (policy = reference) against central differences, in float64
        with torch.no_grad():
            ref_logps = model64.completion_logps(ids, P)
        loss = dpo_loss(model64.completion_logps(ids, P), ref_logps, B)
        loss.backward()
        report("step-0 loss = log 2 (policy = reference)", abs(loss.item() - math.log(2)), 1e-12)
        used_token = ids[0, 2].item()  # an embedding row the batch reads
        probes = [("tok_embd", used_token * vcfg["C"] + 3), ("layers.1.wq", 11), ("layers.2.wk", 40), ("layers.0.attn_norm", 5),
                  ("layers.4.w_down", 123), ("out_norm", 9)]
        probes += [("layers.3.bq", 2), ("layers.1.bv", 6)] if vcfg["qkvBias"] else []
        probes += [("layers.2.q_norm", 1), ("layers.0.k_norm", 4)] if vcfg["qkNorm"] else []
        probes += [("layers.1.attn_post_norm", 3), ("layers.3.ffn_post_norm", 7)] if vcfg.get("norms") == "sandwich" else []
        probes += [] if vcfg["tiedEmbeddings"] else [("lm_head", 5 * vcfg["C"] + 17)]
        if vcfg["family"] == "gpt2":
            # GPT-2's own tensors, each at its entry with the largest |gradient|: the LayerNorm biases' gradients are
            # mostly about 1e-6 here (at most 3e-6 in layer 3's ffn_norm_b, 1.5e-5 in layer 1's), where central
            # differences, whose noise is about 4e-11 at h 1e-5 (measured: it grows as h shrinks), cannot resolve 1e-5
            names = ["pos_embd", "layers.0.attn_norm_b", "layers.2.bo", "layers.1.b_up", "layers.3.b_down", "layers.2.w_up",
                     "layers.1.ffn_norm_b", "out_norm_b"]
            probes += [(name, model64.w(name).grad.abs().argmax().item()) for name in names]
            unused = model64.w("pos_embd").grad[ids.shape[1]:].abs().max().item()
            report(f"pos_embd rows ≥ T = {ids.shape[1]} get no gradient", unused, 0.0)
        h = 1e-5
        for name, j in probes:
            flat = model64.w(name).data.view(-1)
            analytic = model64.w(name).grad.view(-1)[j].item()
            old = flat[j].item()
            with torch.no_grad():
                flat[j] = old + h
                up = dpo_loss(model64.completion_logps(ids, P), ref_logps, B).item()
                flat[j] = old - h
                down = dpo_loss(model64.completion_logps(ids, P), ref_logps, B).item()
                flat[j] = old
            numeric = (up - down) / (2 * h)
            report(f"d loss / d {name}[{j}] = {analytic:.4e}: |autograd − central difference| / max(|g|, 1e-6)",
                   abs(analytic - numeric) / max(abs(analytic), 1e-6), 1e-5)

    # the DPO loss by hand: margins 2 and −1 with β = 0.1 → mean of log(1 + e^{−0.2}) and log(1 + e^{0.1})
    lp = torch.tensor([-3.0, -4.0, -6.0, -2.0], dtype=torch.float64)  # policy: chosen 0, 1; rejected 0, 1
    rp = torch.tensor([-4.0, -3.0, -5.0, -2.0], dtype=torch.float64)
    by_hand = (math.log(1 + math.exp(-0.2)) + math.log(1 + math.exp(0.1))) / 2
    report("DPO loss by hand", abs(dpo_loss(lp, rp, 2).item() - by_hand), 1e-12)

    print("self-test " + ("passed" if not failures else f"FAILED: {len(failures)} check(s)"))
    return 0 if not failures else 1


# ----------------------------------------------------------------------------------------------------------------


def positive_int(text):
    n = int(text)
    if n < 1:
        raise argparse.ArgumentTypeError(f"{text} is not a positive integer")
    return n


def main(argv):
    ap = argparse.ArgumentParser(description="PyTorch DPO-step benchmark, the comparison side of `tsdpo bench`")
    ap.add_argument("--preset", default="smollm-135m", choices=sorted(PRESETS))
    ap.add_argument("--prompt-len", type=positive_int, default=128)
    ap.add_argument("--completion-len", type=positive_int, default=128)
    ap.add_argument("--pairs", type=positive_int, default=1)
    ap.add_argument("--steps", type=positive_int, default=5)
    ap.add_argument("--warmup", type=int, default=1, help="untimed steps before the timed ones (default 1)")
    ap.add_argument("--threads", type=positive_int, default=os.cpu_count() or 1)
    ap.add_argument("--logits", choices=("all", "completion"), default="all",
                    help="lm_head on every position (default; the same work as tsdpo) or only completion-predicting ones")
    ap.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    ap.add_argument("--self-test", action="store_true", help="check the model and loss, then exit")
    ap.add_argument("--print-presets", action="store_true", help="print PRESETS as JSON (for the driver's comparison)")
    args = ap.parse_args(argv)
    if args.self_test:
        return self_test()
    if args.print_presets:
        print(json.dumps(PRESETS))
        return 0
    if args.warmup < 0:
        ap.error("--warmup must be ≥ 0")
    result = run_bench(args)
    if args.json:
        print(json.dumps(result))
    else:
        print_summary(result)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
