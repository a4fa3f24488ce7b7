#!/usr/bin/env python3
"""PyTorch reference for tools/bench/train.c: the same convnet-s (conv3x3-BN-ReLU x5, two
max-pools, global average pool, linear head 128 -> 128), the same batch of random 28x28 views
already in memory, and the same three training steps (MoCo K=4096; InstDisc non-parametric
over a 60000-row bank; InstDisc NCE with 4096 noise samples shared by the batch) plus
inference (eval mode, no grad). A step is forward, backward, SGD (momentum 0.9, weight decay
5e-4) and the objective's bookkeeping (EMA + enqueue, or the bank update).

Run by the benchmark with OPENBLAS_NUM_THREADS=1 and a GLIBC_TUNABLES malloc setting that
keeps large buffers mapped (both make PyTorch faster on this machine). Prints one line per
step and `TORCH moco_img_s=... instdisc_img_s=... nce_img_s=... infer_img_s=...` last; when
torch is not installed it says so and exits 0 without that line."""
import argparse
import statistics
import sys
import time

try:
    import torch
    import torch.nn as nn
    import torch.nn.functional as F
except ImportError:
    print("torch is not installed (python3-torch): skipping the PyTorch reference")
    sys.exit(0)

DATASET = 60000
DIM = 128


def conv_bn(c_in, c_out):
    return [nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out),
            nn.ReLU(inplace=True)]


def convnet_s(dim=DIM):
    return nn.Sequential(
        *conv_bn(1, 32), *conv_bn(32, 32), nn.MaxPool2d(2),
        *conv_bn(32, 64), *conv_bn(64, 64), nn.MaxPool2d(2),
        *conv_bn(64, 128), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(128, dim))


def sgd(params):
    return torch.optim.SGD(params, lr=0.03, momentum=0.9, weight_decay=5e-4)


class Moco:
    def __init__(self, k=4096, m=0.99, t=0.1):
        self.q = convnet_s()
        self.k = convnet_s()
        self.k.load_state_dict(self.q.state_dict())
        for p in self.k.parameters():
            p.requires_grad_(False)
        self.queue = F.normalize(torch.randn(k, DIM), dim=1)
        self.ptr, self.m, self.t = 0, m, t
        self.opt = sgd(self.q.parameters())

    def step(self, x, idx):
        with torch.no_grad():
            for pk, pq in zip(self.k.parameters(), self.q.parameters()):
                pk.mul_(self.m).add_(pq, alpha=1 - self.m)
        q = F.normalize(self.q(x[0]), dim=1)
        with torch.no_grad():
            k = F.normalize(self.k(x[1]), dim=1)
        lpos = (q * k).sum(1, keepdim=True)
        lneg = q @ self.queue.t()
        logits = torch.cat([lpos, lneg], 1) / self.t
        loss = F.cross_entropy(logits, torch.zeros(len(q), dtype=torch.long))
        self.opt.zero_grad(set_to_none=False)
        loss.backward()
        self.opt.step()
        with torch.no_grad():  # enqueue, wrapping around
            rows = (self.ptr + torch.arange(len(k))) % len(self.queue)
            self.queue[rows] = k
            self.ptr = (self.ptr + len(k)) % len(self.queue)
        return loss


class InstDisc:
    def __init__(self, nce_k=0, t=0.07, mu=0.5):
        self.f = convnet_s()
        s = 1.0 / (DIM / 3) ** 0.5
        self.bank = torch.rand(DATASET, DIM) * 2 * s - s
        self.nce_k, self.t, self.mu, self.z = nce_k, t, mu, None
        self.opt = sgd(self.f.parameters())

    def step(self, x, idx):
        v = F.normalize(self.f(x[0]), dim=1)
        if self.nce_k == 0:
            loss = F.cross_entropy(v @ self.bank.t() / self.t, idx)
        else:
            noise = torch.randint(0, DATASET, (self.nce_k,))
            spos = (v * self.bank[idx]).sum(1)
            sneg = v @ self.bank[noise].t()
            epos, eneg = torch.exp(spos / self.t), torch.exp(sneg / self.t)
            if self.z is None:
                self.z = (torch.cat([epos, eneg.flatten()]).mean() * DATASET).item()
            c = self.nce_k / DATASET
            ppos, pneg = epos / self.z, eneg / self.z
            loss = (torch.log(ppos + c) - torch.log(ppos)).sum() + \
                (torch.log(pneg + c) - torch.log(torch.tensor(c))).sum()
            loss = loss / len(v)
        self.opt.zero_grad(set_to_none=False)
        loss.backward()
        self.opt.step()
        with torch.no_grad():
            rows = self.bank[idx] * self.mu + v.detach() * (1 - self.mu)
            self.bank[idx] = F.normalize(rows, dim=1)
        return loss


def timed(fn, warmup, repeats):
    for _ in range(warmup):
        fn()
    t = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        t.append(time.perf_counter() - t0)
    return statistics.median(t), min(t)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=7)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    x = [torch.randn(a.batch, 1, 28, 28), torch.randn(a.batch, 1, 28, 28)]
    idx = torch.randperm(DATASET)[:a.batch]
    rates = {}
    for name, obj in [("moco", Moco()), ("instdisc", InstDisc()),
                      ("nce", InstDisc(nce_k=4096))]:
        med, best = timed(lambda: obj.step(x, idx), a.warmup, a.repeats)
        rates[name] = a.batch / med
        print(f"torch  {name:<9} {rates[name]:8.1f} img/s  (median {1e3 * med:.1f} ms, "
              f"best {1e3 * best:.1f} ms)", flush=True)
    net = convnet_s().eval()

    def infer():
        with torch.no_grad():
            net(x[0])
    med, best = timed(infer, a.warmup, a.repeats)
    rates["infer"] = a.batch / med
    print(f"torch  {'inference':<9} {rates['infer']:8.1f} img/s  (median {1e3 * med:.1f} ms, "
          f"best {1e3 * best:.1f} ms)", flush=True)
    print("TORCH " + " ".join(f"{k}_img_s={rates[k]:.1f}"
                              for k in ("moco", "instdisc", "nce", "infer")), flush=True)


if __name__ == "__main__":
    main()
