#!/usr/bin/python3
"""Reference for tsdpo's SFT step (test/sft.test.ts), computed with PyTorch in float64.

Reads test/fixtures/torch/sft-inputs.json: the token ids of two chat-templated conversations and, per mask setting
(all tokens, assistant_only_loss, completion_only_loss), which tokens the loss counts; tools/sft-inputs.mjs writes it
from tsdpo's own data path (test/sft-fixture.ts). Writes test/fixtures/torch/sft.safetensors: a tiny Llama whose
vocabulary is stories260K's 512 ids, deterministic weights by torch_fixtures.py's INIT_FORMULA, and for every setting
the loss, d loss / d param for every parameter (float64), and the two metrics TRL's SFTTrainer logs beside it
(mean_token_accuracy and entropy over the counted tokens).

The loss is Hugging Face's causal-LM loss with labels = ids where the mask is 1 and -100 elsewhere: the cross-entropy
of each counted token given the tokens before it, averaged over all counted tokens of the batch (both conversations;
what num_items_in_batch makes of one micro-batch). It is computed twice, with F.cross_entropy(ignore_index=-100) and
as a masked sum of log-softmax, and the two must agree; the gradient is checked against central differences.

Run with Debian's torch, as torch_fixtures.py: /usr/bin/python3 tools/sft_fixture.py
"""

import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import torch_fixtures as tf  # noqa: E402 (the model, the init formula and the safetensors writer)

if __name__ == "__main__":
    # torch_fixtures.pin_reference_blas re-executes torch_fixtures.py itself; this does the same for this script
    if os.environ.get("TSDPO_FIXTURES_BLAS") != "reference":
        libdir = os.path.join("/usr/lib", tf.sysconfig.get_config_var("MULTIARCH") or "x86_64-linux-gnu")
        if os.path.exists(os.path.join(libdir, "blas", "libblas.so.3")):
            paths = [os.path.join(libdir, "blas"), os.path.join(libdir, "lapack")] + [p for p in os.environ.get("LD_LIBRARY_PATH", "").split(":") if p]
            env = dict(os.environ, LD_LIBRARY_PATH=":".join(paths), TSDPO_FIXTURES_BLAS="reference")
            os.execve(sys.executable, [sys.executable, os.path.abspath(__file__)] + sys.argv[1:], env)

import torch  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
INPUTS = os.path.join(HERE, "..", "test", "fixtures", "torch", "sft-inputs.json")
OUT = os.path.join(HERE, "..", "test", "fixtures", "torch", "sft.safetensors")

CONFIG = {
    "model_type": "llama",
    "vocab_size": 512,  # stories260K's tokenizer
    "hidden_size": 16,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "num_key_value_heads": 1,
    "head_dim": 8,
    "intermediate_size": 32,
    "rope_theta": 10000.0,
    "rope_scaling": None,
    "rms_norm_eps": 1e-5,
    "tie_word_embeddings": False,
    "attention_bias": False,
    "max_position_embeddings": 256,
}


def padded(rows, value=0):
    t = max(len(r) for r in rows)
    return torch.tensor([r + [value] * (t - len(r)) for r in rows], dtype=torch.long)


def sft_loss(P, ids, mask):
    """(loss, logits): the mean NLL of the counted tokens; ids, mask (N, T), padding uncounted."""
    logits = tf.forward(P, CONFIG, ids)  # (N, T, V)
    logp = torch.log_softmax(logits[:, :-1], dim=-1).gather(-1, ids[:, 1:, None])[..., 0]  # (N, T-1) log p(ids[t+1])
    m = mask[:, 1:].to(torch.float64)
    return -(logp * m).sum() / m.sum(), logits


def hf_loss(logits, ids, mask):
    """Hugging Face's formulation: labels -100 where not counted, shifted, F.cross_entropy's mean over the rest."""
    labels = ids.clone()
    labels[mask == 0] = -100
    V = logits.shape[-1]
    return torch.nn.functional.cross_entropy(logits[:, :-1].reshape(-1, V), labels[:, 1:].reshape(-1), ignore_index=-100)


def metrics(logits, ids, mask):
    """TRL SFTTrainer's mean_token_accuracy and entropy over the counted tokens."""
    shift = logits[:, :-1].detach()
    m = mask[:, 1:].bool()
    logp = torch.log_softmax(shift, dim=-1)
    entropy = -(logp.exp() * logp).sum(-1)  # (N, T-1)
    correct = shift.argmax(-1) == ids[:, 1:]
    return correct[m].double().mean().item(), entropy[m].mean().item()


def main():
    torch.set_num_threads(1)
    with open(INPUTS) as f:
        inputs = json.load(f)
    weights = tf.init_params(CONFIG)
    ids = padded(inputs["ids"])
    tensors = dict(weights)
    meta = {}
    for setting, trained in inputs["trained"].items():
        mask = padded(trained)
        P = {n: w.to(torch.float64).requires_grad_(True) for n, w in weights.items()}
        loss, logits = sft_loss(P, ids, mask)
        ref = hf_loss(logits, ids, mask)
        assert abs(loss.item() - ref.item()) < 1e-12, (loss.item(), ref.item())
        loss.backward()
        # central differences on a few coordinates of three tensors
        worst = 0.0
        for name in ("model.embed_tokens.weight", "model.layers.1.self_attn.q_proj.weight", "lm_head.weight"):
            g = P[name].grad.reshape(-1)
            for i in (0, 7, g.numel() - 3):
                Q = {n: p.detach().clone() for n, p in P.items()}
                h = 1e-5
                Q[name].reshape(-1)[i] += h
                up = sft_loss(Q, ids, mask)[0].item()
                Q[name].reshape(-1)[i] -= 2 * h
                down = sft_loss(Q, ids, mask)[0].item()
                worst = max(worst, abs((up - down) / (2 * h) - g[i].item()))
        assert worst < 1e-8, f"{setting}: gradient vs central differences {worst}"
        acc, ent = metrics(logits, ids, mask)
        print(f"[sft {setting}] {int(mask[:, 1:].sum())} counted tokens, loss {loss.item()!r}, accuracy {acc}, entropy {ent}, "
              f"autograd vs central differences {worst:.2e}")
        for n, p in P.items():
            tensors[f"{setting}.grad.{n}"] = p.grad.detach().clone()
        meta[setting] = {"loss": loss.item(), "mean_token_accuracy": acc, "entropy": ent}

    metadata = {
        "format": "tsdpo-torch-fixture",
        "fixture_version": "1",
        "generator": "tools/sft_fixture.py",
        "torch_version": torch.__version__,
        "config": json.dumps(CONFIG),
        "init": tf.INIT_FORMULA,
        "inputs": json.dumps(inputs),
        "sft": json.dumps(meta),
        "notes": (
            "float64 compute from the float32 weights. <setting>.grad.<name> is d loss / d param in float64 for the "
            "setting's mask: loss = the mean over every counted token t >= 1 of both rows of -log p(ids[t] | ids[<t]) "
            "(Hugging Face's causal-LM loss with labels -100 where the mask is 0). Rows are padded with id 0 at the end, "
            "uncounted. mean_token_accuracy and entropy are over the same tokens."
        ),
    }
    tf.write_safetensors(OUT, tensors, metadata)
    back, meta_back = tf.read_safetensors(OUT)
    assert meta_back == metadata and all(torch.equal(back[n], tensors[n]) for n in tensors)
    print(f"wrote {os.path.relpath(OUT)} ({os.path.getsize(OUT)} bytes, {len(tensors)} tensors)")


if __name__ == "__main__":
    main()
