#!/usr/bin/python3
"""The PyTorch side of bench/generate.sh: the same language model (read from an n3 model
record: its spec and tensors), the same KV-cache generation and sampling loop as n3-eval
--generate (temperature, top-k, top-p, a draw per token), on Debian's python3-torch (the same
libtorch 1.13). The prompt is PROMPT_TOKENS token ids (compute does not depend on which).
Prints one line of JSON like n3-eval --generate --json."""
import argparse, json, math, struct, time

import numpy as np
import torch
import torch.nn.functional as F
import yaml

p = argparse.ArgumentParser()
p.add_argument("model")
p.add_argument("--prompt-tokens", type=int, default=16)
p.add_argument("--tokens", type=int, default=200)
p.add_argument("--temperature", type=float, default=0.8)
p.add_argument("--top-k", type=int, default=0)
p.add_argument("--top-p", type=float, default=1.0)
p.add_argument("--threads", type=int, default=1)
p.add_argument("--seed", type=int, default=0)
a = p.parse_args()
torch.set_num_threads(a.threads)

# An n3 record's payload is safetensors: 8-byte header length, JSON header, data.
raw = open(a.model, "rb").read()
i = raw.index(b'{"')
n = struct.unpack("<Q", raw[i - 8:i])[0]
header = json.loads(raw[i:i + n])
data = raw[i + n:]
meta = header.pop("__metadata__")
spec = yaml.safe_load(meta["spec"])
P = {}
for name, t in header.items():
    b, e = t["data_offsets"]
    P[name] = torch.from_numpy(np.frombuffer(data[b:e], dtype=np.float32).copy()).reshape(t["shape"])

layers = []
for idx, l in enumerate(spec["layers"]):
    l = dict(l) if isinstance(l, dict) else {"type": l}
    l.setdefault("name", l["type"] + str(idx))
    layers.append(l)


def rotary(x, pos0):
    T, half = x.size(2), x.size(3) // 2
    inv = torch.pow(10000.0, torch.arange(0, half, dtype=torch.float32) * (-2.0 / (2 * half)))
    ang = torch.outer(torch.arange(pos0, pos0 + T, dtype=torch.float32), inv)
    cos, sin = ang.cos(), ang.sin()
    x1, x2 = x[..., :half], x[..., half:]
    return torch.cat([x1 * cos - x2 * sin, x1 * sin + x2 * cos], -1)


def forward(x, cache):
    pos0 = cache["length"]
    block = 0
    for l in layers:
        t, nm = l["type"], l["name"]
        if t == "embedding":
            x = F.embedding(x, P[nm + ".weight"])
        elif t == "position":
            x = x + P[nm + ".weight"][pos0:pos0 + x.size(1)]
        elif t == "layernorm":
            x = F.layer_norm(x, (l["dim"],), P[nm + ".weight"], P[nm + ".bias"])
        elif t == "linear":
            w = P[(l.get("tied") or nm) + ".weight"]
            x = F.linear(x, w, P.get(nm + ".bias") if l.get("bias", not l.get("tied")) else None)
        elif t == "gelu":
            x = F.gelu(x)
        elif t == "transformer":
            B, T, D, H = x.size(0), x.size(1), l["dim"], l["heads"]
            Dh = D // H
            h = F.layer_norm(x, (D,), P[nm + ".ln1.weight"], P[nm + ".ln1.bias"])
            qkv = F.linear(h, P[nm + ".attn.qkv.weight"], P[nm + ".attn.qkv.bias"])
            q, k, v = qkv.view(B, T, 3, H, Dh).permute(2, 0, 3, 1, 4).unbind(0)
            if l.get("rotary"):
                q, k = rotary(q, pos0), rotary(k, pos0)
            if len(cache["k"]) <= block:
                cache["k"].append(k); cache["v"].append(v)
            else:
                cache["k"][block] = torch.cat([cache["k"][block], k], 2)
                cache["v"][block] = torch.cat([cache["v"][block], v], 2)
            k, v = cache["k"][block], cache["v"][block]
            block += 1
            att = torch.matmul(q, k.transpose(-2, -1)) * (1.0 / math.sqrt(Dh))
            if T > 1:
                mask = torch.ones(T, pos0 + T, dtype=torch.bool).triu(1 + pos0)
                att = att.masked_fill(mask, float("-inf"))
            att = torch.softmax(att, -1)
            y = torch.matmul(att, v).transpose(1, 2).reshape(B, T, D)
            x = x + F.linear(y, P[nm + ".attn.proj.weight"], P[nm + ".attn.proj.bias"])
            h = F.layer_norm(x, (D,), P[nm + ".ln2.weight"], P[nm + ".ln2.bias"])
            h = F.gelu(F.linear(h, P[nm + ".mlp.fc1.weight"], P[nm + ".mlp.fc1.bias"]))
            x = x + F.linear(h, P[nm + ".mlp.fc2.weight"], P[nm + ".mlp.fc2.bias"])
        else:
            raise SystemExit("torch_generate.py: layer type %s is not supported" % t)
    cache["length"] = pos0 + x.size(1)
    return x


def sample(logits):
    if a.temperature == 0:
        return int(logits.argmax())
    l = logits.double() / a.temperature
    if 0 < a.top_k < l.size(0):
        kth = l.topk(a.top_k)[0][a.top_k - 1]
        l = l.masked_fill(l < kth, float("-inf"))
    if a.top_p < 1:
        s, order = l.sort(0, descending=True)
        probs = torch.softmax(s, 0)
        s = s.masked_fill(probs.cumsum(0) - probs > a.top_p, float("-inf"))
        l = torch.full_like(l, float("-inf")).scatter(0, order, s)
    return int(torch.multinomial(torch.softmax(l, 0), 1))


C = spec["context"]
with torch.no_grad():
    torch.manual_seed(a.seed)
    ids = torch.randint(spec.get("vocab", 256), (a.prompt_tokens,)).tolist()
    cache = {"k": [], "v": [], "length": 0}
    t0 = time.perf_counter()
    x = torch.tensor(ids[-C:]).unsqueeze(0)
    logits = forward(x, cache)[0, -1]
    prompt_s = time.perf_counter() - t0
    t1 = time.perf_counter()
    for i in range(a.tokens):
        nxt = sample(logits)
        ids.append(nxt)
        if i + 1 < a.tokens:
            if cache["length"] >= C:
                cache = {"k": [], "v": [], "length": 0}
                x = torch.tensor(ids[-(C // 2):]).unsqueeze(0)
                logits = forward(x, cache)[0, -1]
            else:
                logits = forward(torch.tensor([[nxt]]), cache)[0, 0]
    secs = time.perf_counter() - t1
print(json.dumps({"prompt_tokens": a.prompt_tokens, "prompt_seconds": prompt_s,
                  "prompt_tokens_per_s": a.prompt_tokens / prompt_s, "tokens": a.tokens,
                  "seconds": secs, "tokens_per_s": a.tokens / secs}))
