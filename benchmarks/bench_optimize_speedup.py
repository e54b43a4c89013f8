"""Speedup of the variant `mlserve optimize --auto` picks, against PyTorch eager, batch 1, checked independently.

Reference models (random weights, seeded):
  mlp      Linear 256-1024-1024-10 with ReLU                     target >= 3x
  cnn      3 x (conv3x3 + BatchNorm + ReLU + maxpool), 64x64 RGB target >= 3x, never slower than fp32
  encoder  nn.TransformerEncoder, d_model 128, 4 heads, 2 layers, 32 tokens   target >= 1.2x

For each model: `optimize --auto` at --threads N (the source and every candidate at N threads,
interleaved rounds) gives the claimed ratio; then an independent measurement (benchmarks/_independent.py:
PyTorch eager and the chosen ONNX file in two worker processes of their own, at the same N threads,
alternating blocks) gives a second ratio. The claim must agree with it within 25%
(0.8 <= claimed / independent <= 1.25).

Run (under the shared lock):  flock /tmp/mlserve-bench.lock python benchmarks/bench_optimize_speedup.py [--models mlp,cnn,encoder]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

TARGETS = {"mlp": 3.0, "cnn": 3.0, "encoder": 1.2}


def mlp():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(256, 1024), nn.ReLU(), nn.Linear(1024, 1024), nn.ReLU(), nn.Linear(1024, 10))
    return net.eval(), (torch.randn(1, 256),)


class SmallCNN(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        channels = 3
        for out in (16, 32, 64):
            layers += [nn.Conv2d(channels, out, 3, padding=1), nn.BatchNorm2d(out), nn.ReLU(), nn.MaxPool2d(2)]
            channels = out
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(64, 10)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(image).mean(dim=(2, 3)))


def cnn():
    torch.manual_seed(0)
    net = SmallCNN()
    for module in net.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.running_mean.uniform_(-0.2, 0.2)
            module.running_var.uniform_(0.5, 1.5)
    return net.eval(), (torch.randn(1, 3, 64, 64),)


class SmallEncoder(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        layer = nn.TransformerEncoderLayer(d_model=128, nhead=4, dim_feedforward=512, dropout=0.0, batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, num_layers=2, enable_nested_tensor=False)
        self.head = nn.Linear(128, 8)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.head(self.encoder(tokens).mean(dim=1))


def encoder():
    torch.manual_seed(0)
    return SmallEncoder().eval(), (torch.randn(1, 32, 128),)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="mlp,cnn,encoder")
    parser.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)), help="for both sides (default: usable cores)")
    parser.add_argument("--duration", type=float, default=3.0, help="seconds of timed calls per model inside optimize")
    parser.add_argument("--rounds", type=int, default=10)
    args = parser.parse_args()

    here = Path(__file__).resolve().parent
    sys.path.insert(0, str(here))
    from _independent import interleaved_ratio

    from mlserve.inputs import make_feeds
    from mlserve.optimize import OptimizeOptions, optimize
    from mlserve.optimize.timing import TimingSettings

    print(f"torch {torch.__version__}, {args.threads} threads on both sides; batch 1; load average {os.getloadavg()[0]:.2f}")
    print(f"{'model':8} {'picked':13} {'claimed':>22} {'independent':>11} {'claimed/indep':>13} {'target':>7}  verdict")
    failures = 0
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.models.split(","):
            started = time.perf_counter()
            out = Path(tmp) / f"{name}.onnx"
            result = optimize(
                f"bench_optimize_speedup:{name}",
                OptimizeOptions(auto=True, output=out, threads=[args.threads],
                                timing=TimingSettings(warmup_s=0.5, min_iterations=50, min_seconds=args.duration, rounds=args.rounds)),
            )
            by_name = {c.name: c for c in result.candidates}
            chosen = by_name[result.chosen]
            sp = chosen.speedup
            inputs = Path(tmp) / f"{name}.npz"
            np.savez(inputs, **make_feeds(result.source.inputs, batch=1, seed=1))
            names = [s.name for s in result.source.inputs]
            independent, _ = interleaved_ratio(
                {"kind": "torch", "threads": args.threads, "path": str(here), "module": "bench_optimize_speedup", "factory": name,
                 "inputs": str(inputs), "names": names},
                {"kind": "onnx", "threads": args.threads, "model": str(out), "inputs": str(inputs)},
            )
            agreement = sp.ratio / independent
            ok = sp.ratio >= TARGETS[name] and independent >= TARGETS[name] and 0.8 <= agreement <= 1.25
            ok = ok and (chosen.latency.p50_ms <= by_name["fp32"].latency.p50_ms * 1.05 if by_name["fp32"].latency else True)
            failures += not ok
            claimed = f"{sp.ratio:.2f}x [{sp.ci_low:.2f}, {sp.ci_high:.2f}]"
            print(f"{name:8} {chosen.name:13} {claimed:>22} {independent:10.2f}x {agreement:13.2f} {TARGETS[name]:6.1f}x  "
                  f"{'ok' if ok else 'BELOW TARGET OR DISAGREES'}")
            others = ", ".join(
                f"{c.name} {c.speedup.ratio:.2f}x ({c.verdict})" if c.speedup else f"{c.name} ({c.verdict})"
                for c in result.candidates if c.verdict != "skipped" and c.name != chosen.name
            )
            print(f"{'':8} others: {others}; {time.perf_counter() - started:.0f} s")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
