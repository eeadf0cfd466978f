#!/usr/bin/python3
"""The PyTorch side of bench/train.sh: the same model, data, batch order scheme and optimizer
as n3-train, written the way a PyTorch user would (nn.Sequential, CrossEntropyLoss, SGD),
on Debian's python3-torch (the same libtorch 1.13). Prints one line of JSON like n3-train."""
import argparse, gzip, json, struct, time

import numpy as np
import torch
import torch.nn as nn

p = argparse.ArgumentParser()
p.add_argument("--model", choices=["cnn", "mlp"], required=True)
p.add_argument("--data", default="/usr/share/datasets/fashion-mnist")
p.add_argument("--limit", type=int, default=20000)
p.add_argument("--epochs", type=int, default=1)
p.add_argument("--batch", type=int, default=64)
p.add_argument("--lr", type=float, default=0.05)
p.add_argument("--momentum", type=float, default=0.9)
p.add_argument("--threads", type=int, default=2)
p.add_argument("--seed", type=int, default=0)
a = p.parse_args()

torch.set_num_threads(a.threads)
torch.manual_seed(a.seed)


def idx(path):
    b = gzip.open(path).read()
    dims = b[3]
    shape = struct.unpack(">" + "I" * dims, b[4:4 + 4 * dims])
    return np.frombuffer(b, np.uint8, offset=4 + 4 * dims).reshape(shape)


# Decode once into tensors, as n3-train does.
x = torch.from_numpy(idx(f"{a.data}/train-images-idx3-ubyte.gz")[: a.limit].copy())
x = x.float().div_(255).unsqueeze(1)
y = torch.from_numpy(idx(f"{a.data}/train-labels-idx1-ubyte.gz")[: a.limit].astype(np.int64))

if a.model == "cnn":  # NIID-Bench simple CNN, as examples/models/cnn.yaml
    net = nn.Sequential(
        nn.Conv2d(1, 6, 5), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(6, 16, 5), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
        nn.Linear(256, 120), nn.ReLU(), nn.Linear(120, 84), nn.ReLU(), nn.Linear(84, 10))
else:  # examples/models/mlp.yaml
    net = nn.Sequential(nn.Flatten(), nn.Linear(784, 200), nn.ReLU(), nn.Linear(200, 200),
                        nn.ReLU(), nn.Linear(200, 10))
opt = torch.optim.SGD(net.parameters(), lr=a.lr, momentum=a.momentum)
lossf = nn.CrossEntropyLoss()

t0 = time.perf_counter()
n, seen, total = x.shape[0], 0, 0.0
for epoch in range(a.epochs):
    perm = torch.randperm(n)
    steps, total = 0, 0.0
    for s in range(0, n, a.batch):
        i = perm[s:s + a.batch]
        opt.zero_grad()
        loss = lossf(net(x.index_select(0, i)), y.index_select(0, i))
        loss.backward()
        opt.step()
        total += loss.item()
        steps += 1
        seen += i.numel()
secs = time.perf_counter() - t0
print(json.dumps({"samples": n, "processed": seen, "seconds": secs,
                  "samples_per_s": seen / secs, "loss": total / steps}))
