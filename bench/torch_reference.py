#!/usr/bin/env python3
"""PyTorch eager reference for `covenant bench train`: the same LLaMA architecture, batch,
thread count and optimizer, timed the same way (warm-up steps, then the mean of timed steps).

Each step: forward, next-token cross-entropy, backward, clip_grad_norm_(1.0), AdamW
(lr 3e-4, betas 0.9/0.95, eps 1e-8, weight decay 0.1 on matrices other than the embedding).

usage: torch_reference.py [--config CONFIG_JSON] [--batch 8] [--seq N] [--threads 2]
                          [--warmup 2] [--steps 10] [--json]
CONFIG_JSON is the output of `covenant model info --preset NAME --json` (default: the `small`
preset, written out below), so both sides train exactly the same shapes.
"""
import argparse
import json
import resource
import time

import torch
import torch.nn.functional as F
from torch import nn

SMALL = dict(vocab_size=8192, hidden_size=512, n_layers=8, n_heads=8, n_kv_heads=4, head_dim=64,
             intermediate_size=1408, rope_theta=10000.0, max_seq_len=256, norm_eps=1e-5,
             tie_embeddings=False)


def rotate_half(x):
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((-x2, x1), dim=-1)


class Block(nn.Module):
    def __init__(self, c):
        super().__init__()
        h, hd = c["hidden_size"], c["head_dim"]
        self.nh, self.nkv, self.hd, self.eps = c["n_heads"], c["n_kv_heads"], hd, c["norm_eps"]
        self.input_layernorm = nn.Parameter(torch.ones(h))
        self.q_proj = nn.Linear(h, self.nh * hd, bias=False)
        self.k_proj = nn.Linear(h, self.nkv * hd, bias=False)
        self.v_proj = nn.Linear(h, self.nkv * hd, bias=False)
        self.o_proj = nn.Linear(self.nh * hd, h, bias=False)
        self.post_attention_layernorm = nn.Parameter(torch.ones(h))
        self.gate_proj = nn.Linear(h, c["intermediate_size"], bias=False)
        self.up_proj = nn.Linear(h, c["intermediate_size"], bias=False)
        self.down_proj = nn.Linear(c["intermediate_size"], h, bias=False)

    def forward(self, x, cos, sin):
        b, t, _ = x.shape
        h = F.rms_norm(x, (x.shape[-1],), self.input_layernorm, self.eps)
        q = self.q_proj(h).view(b, t, self.nh, self.hd).transpose(1, 2)
        k = self.k_proj(h).view(b, t, self.nkv, self.hd).transpose(1, 2)
        v = self.v_proj(h).view(b, t, self.nkv, self.hd).transpose(1, 2)
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        rep = self.nh // self.nkv
        if rep > 1:
            k = k[:, :, None].expand(b, self.nkv, rep, t, self.hd).reshape(b, self.nh, t, self.hd)
            v = v[:, :, None].expand(b, self.nkv, rep, t, self.hd).reshape(b, self.nh, t, self.hd)
        a = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        x = x + self.o_proj(a.transpose(1, 2).reshape(b, t, self.nh * self.hd))
        h = F.rms_norm(x, (x.shape[-1],), self.post_attention_layernorm, self.eps)
        return x + self.down_proj(F.silu(self.gate_proj(h)) * self.up_proj(h))


class Llama(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.c = c
        self.embed_tokens = nn.Embedding(c["vocab_size"], c["hidden_size"])
        self.layers = nn.ModuleList(Block(c) for _ in range(c["n_layers"]))
        self.norm = nn.Parameter(torch.ones(c["hidden_size"]))
        self.lm_head = None if c["tie_embeddings"] else nn.Linear(c["hidden_size"], c["vocab_size"], bias=False)
        for m in self.modules():
            if isinstance(m, (nn.Linear, nn.Embedding)):
                nn.init.normal_(m.weight, std=0.02)
        d = c["head_dim"]
        inv = 1.0 / (c["rope_theta"] ** (torch.arange(0, d, 2, dtype=torch.int64).float() / d))
        freqs = torch.arange(c["max_seq_len"]).float()[:, None] * inv[None, :]
        emb = torch.cat((freqs, freqs), dim=-1)
        self.register_buffer("cos", emb.cos(), persistent=False)
        self.register_buffer("sin", emb.sin(), persistent=False)

    def loss(self, ids):
        t = ids.shape[1]
        cos, sin = self.cos[:t], self.sin[:t]
        x = self.embed_tokens(ids)
        for blk in self.layers:
            x = blk(x, cos, sin)
        x = F.rms_norm(x, (x.shape[-1],), self.norm, self.c["norm_eps"])[:, :-1]
        w = self.embed_tokens.weight if self.lm_head is None else self.lm_head.weight
        logits = F.linear(x, w)
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), ids[:, 1:].reshape(-1))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--config")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--seq", type=int)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    c = dict(SMALL)
    if a.config:
        with open(a.config) as f:
            c = json.load(f)
    seq = a.seq or c["max_seq_len"]
    c["max_seq_len"] = max(c["max_seq_len"], seq)
    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    model = Llama(c)
    decay = [p for n, p in model.named_parameters() if p.dim() == 2 and "embed_tokens" not in n]
    no_decay = [p for n, p in model.named_parameters() if not (p.dim() == 2 and "embed_tokens" not in n)]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1}, {"params": no_decay, "weight_decay": 0.0}],
                            lr=3e-4, betas=(0.9, 0.95), eps=1e-8)
    n_params = sum(p.numel() for p in model.parameters())
    g = torch.Generator().manual_seed(a.seed)

    def step():
        ids = torch.randint(0, c["vocab_size"], (a.batch, seq), generator=g)
        t0 = time.perf_counter()
        loss = model.loss(ids)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        lv = loss.item()
        return time.perf_counter() - t0, lv

    for _ in range(a.warmup):
        step()
    times, loss = [], 0.0
    cpu0 = time.process_time()
    for _ in range(a.steps):
        dt, loss = step()
        times.append(dt)
    cpu_per_step = (time.process_time() - cpu0) / a.steps
    mean = sum(times) / len(times)
    tps = a.batch * seq / mean
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    if a.json:
        print(json.dumps({"impl": "pytorch-eager", "torch": torch.__version__, "params": n_params, "batch": a.batch,
                          "seq": seq, "threads": a.threads, "steps": a.steps, "step_s": mean,
                          "tokens_per_s": tps, "peak_rss_mib": rss, "last_loss": loss,
                          "cpu_s_per_step": cpu_per_step}))
    else:
        print(f"pytorch {torch.__version__} eager: {n_params} params, batch {a.batch} x seq {seq}, "
              f"{a.threads} threads, {a.steps} timed steps after {a.warmup} warm-up")
        print(f"mean step {mean:.3f} s, last loss {loss:.3f}, peak RSS {rss:.0f} MiB")
        print(f"process CPU time per step {cpu_per_step:.3f} s (all threads)")
        print(f"tokens/s {tps:.0f}")


if __name__ == "__main__":
    main()
