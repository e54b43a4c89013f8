"""Speedup of the variant `mlserve optimize --auto` picks, against PyTorch eager, batch 1, p50 latency.

Reference models (random weights, seeded):
  mlp      Linear 256-1024-1024-10 with ReLU                     target >= 3x
  cnn      3 x (conv3x3 + BatchNorm + ReLU + maxpool), 64x64 RGB target >= 3x, never slower than fp32
  encoder  nn.TransformerEncoder, d_model 128, 4 heads, 2 layers, 32 tokens   target >= 1.2x

Both sides are timed by the same harness on the same seeded batch-1 input inside `optimize`.
Run:  python benchmarks/bench_optimize_speedup.py [--models mlp,cnn,encoder] [--min-seconds 2]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

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
    parser.add_argument("--min-seconds", type=float, default=2.0, help="seconds of timed calls per measurement")
    parser.add_argument("--iterations", type=int, default=200, help="at least this many timed calls per measurement")
    args = parser.parse_args()

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from mlserve.optimize import OptimizeOptions, optimize
    from mlserve.optimize.timing import TimingSettings

    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}; batch 1; p50 latency")
    header = f"{'model':8} {'picked':13} {'torch p50 ms':>12} {'picked p50 ms':>13} {'speedup':>8} {'fp32 speedup':>12} {'target':>7}  parity (max abs err, cosine)"
    print(header)
    failures = 0
    for name in args.models.split(","):
        started = time.perf_counter()
        result = optimize(
            f"bench_optimize_speedup:{name}",
            OptimizeOptions(auto=True, timing=TimingSettings(warmup_s=0.5, min_iterations=args.iterations, min_seconds=args.min_seconds)),
        )
        by_name = {c.name: c for c in result.candidates}
        chosen = by_name[result.chosen]
        fp32 = by_name["fp32"]
        speedup = chosen.speedup_vs_source or 0.0
        worst = max(o.max_abs_err for o in chosen.parity.outputs)
        cosine = min(o.cosine for o in chosen.parity.outputs)
        ok = speedup >= TARGETS[name] and chosen.latency.p50_ms <= fp32.latency.p50_ms
        failures += not ok
        print(
            f"{name:8} {chosen.name:13} {result.source.latency.p50_ms:12.3f} {chosen.latency.p50_ms:13.3f} {speedup:7.2f}x "
            f"{fp32.speedup_vs_source:11.2f}x {TARGETS[name]:6.1f}x  {worst:.2e}, {cosine:.6f}  {'ok' if ok else 'BELOW TARGET'}"
        )
        others = ", ".join(
            f"{c.name} {c.latency.p50_ms:.3f} ms ({c.verdict})" if c.latency else f"{c.name} ({c.verdict})"
            for c in result.candidates
            if c.verdict != "skipped" and c.name != chosen.name
        )
        print(f"{'':8} others: {others}; {time.perf_counter() - started:.0f} s")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
