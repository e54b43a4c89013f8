"""`mlserve optimize --auto` on a MiniLM-class encoder against Optimum's O2 fp32 graph, like for like.

The model: transformers' BertModel from a local config (6 layers, hidden 384, 12 heads, intermediate
1536, vocabulary 30522, random weights, seeded) with a WordPiece tokenizer made here: no network.
Optimum is installed by this script into a virtual environment of its own outside the repository
(default /tmp/mlserve-optimum-venv, torch pinned by constraints.txt), and exports the same directory
with `optimum-cli export onnx --optimize O2` (fp32).

Printed per side: the ratio mlserve claims against PyTorch eager, the ratio measured independently
(benchmarks/_independent.py: two worker processes at the same threads, alternating blocks), their
ratio; and the independent ratio of Optimum O2's graph over mlserve's chosen one (target: mlserve at
least as fast, i.e. >= 1.0 within tolerance: parity of the chosen artifact is checked by optimize).

Run (under the shared lock):  flock /tmp/mlserve-bench.lock python benchmarks/bench_minilm_vs_optimum.py
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
TEXTS = [
    "A model registry keeps every version of a model and the stage it is in.",
    "Where is the nearest train station?",
    "Quantized models are smaller and often faster, but they must still compute the same function as before.",
    "It rained all day.",
]


FUSED = {"Attention", "MultiHeadAttention", "SkipLayerNormalization", "LayerNormalization", "EmbedLayerNormalization",
         "BiasGelu", "FastGelu", "Gelu"}

FACTORY = """
import torch
from transformers import AutoModel

def build():
    model = AutoModel.from_pretrained({directory!r}, local_files_only=True).eval()

    class Positional(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.model = model

        def forward(self, input_ids, token_type_ids, attention_mask):
            return self.model(input_ids=input_ids, token_type_ids=token_type_ids, attention_mask=attention_mask).last_hidden_state

    return Positional().eval(), None
"""


def build_model(directory: Path, layers: int = 6, hidden: int = 384) -> None:
    import torch
    from transformers import BertConfig, BertModel, BertTokenizerFast

    words = sorted({w.strip(".,?").lower() for text in TEXTS for w in text.split()})
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *words]
    vocab += [f"tok{i}" for i in range(30522 - len(vocab))]
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    BertTokenizerFast(vocab_file=str(directory / "vocab.txt")).save_pretrained(directory)
    torch.manual_seed(0)
    config = BertConfig(vocab_size=30522, hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=12,
                        intermediate_size=4 * hidden, max_position_embeddings=512)
    BertModel(config).eval().save_pretrained(directory)


def optimum_venv(path: Path) -> Path:
    python = path / "bin" / "python"
    if not (python.exists() and subprocess.run([str(python), "-c", "import optimum.onnxruntime"], capture_output=True).returncode == 0):
        subprocess.run([sys.executable, "-m", "venv", str(path)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", "-c", str(REPO / "constraints.txt"),
                        "optimum-onnx[onnxruntime]", "transformers"], check=True)
    return python


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
    parser.add_argument("--venv", type=Path, default=Path("/tmp/mlserve-optimum-venv"))
    parser.add_argument("--duration", type=float, default=3.0)
    args = parser.parse_args()
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from _independent import interleaved_ratio

    import numpy as np

    print(f"{args.threads} threads on every side; batch 1; load average {os.getloadavg()[0]:.2f}")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        model_dir = work / "minilm"
        build_model(model_dir)
        started = time.perf_counter()
        python = optimum_venv(args.venv)
        print(f"optimum venv ready in {time.perf_counter() - started:.0f} s: "
              + subprocess.run([str(python), "-c", "import importlib.metadata as m; print('optimum-onnx', m.version('optimum-onnx'),"
                                " 'onnxruntime', m.version('onnxruntime'))"], capture_output=True, text=True).stdout.strip())
        optimum_out = work / "optimum"
        subprocess.run([str(python.parent / "optimum-cli"), "export", "onnx", "--model", str(model_dir), "--task", "feature-extraction",
                        "--optimize", "O2", str(optimum_out)], check=True, capture_output=True)
        optimum_onnx = next(p for p in optimum_out.glob("*.onnx") if "optimized" in p.name) if any(
            "optimized" in p.name for p in optimum_out.glob("*.onnx")) else optimum_out / "model.onnx"

        from mlserve.optimize import OptimizeOptions, optimize
        from mlserve.optimize.timing import TimingSettings

        chosen_path = work / "mlserve.onnx"
        result = optimize(str(model_dir), OptimizeOptions(
            auto=True, texts=TEXTS, output=chosen_path, threads=[args.threads], padding_masks={"attention_mask": None},
            timing=TimingSettings(warmup_s=0.5, min_iterations=30, min_seconds=args.duration, rounds=10)))
        chosen = next(c for c in result.candidates if c.name == result.chosen)

        # the same batch-1 input for every side: the first text, tokenized by the model's tokenizer
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(str(model_dir), local_files_only=True)
        enc = tokenizer(TEXTS, padding="longest", return_tensors="np")
        inputs = work / "inputs.npz"
        np.savez(inputs, **{k: np.ascontiguousarray(v[:1]).astype(np.int64) for k, v in enc.items()})
        onnx_side = {"kind": "onnx", "threads": args.threads, "inputs": str(inputs)}
        vs_optimum, _ = interleaved_ratio({**onnx_side, "model": str(optimum_onnx)}, {**onnx_side, "model": str(chosen_path)})
        factory = work / "minilm_factory.py"
        factory.write_text(FACTORY.format(directory=str(model_dir)), encoding="utf-8")
        torch_side = {"kind": "torch", "threads": args.threads, "path": str(work), "module": "minilm_factory", "factory": "build",
                      "inputs": str(inputs), "names": list(enc.keys())}
        independent, _ = interleaved_ratio(torch_side, {**onnx_side, "model": str(chosen_path)})
        import onnx

        ops = lambda path: sorted({n.op_type for n in onnx.load(str(path)).graph.node} & FUSED)  # noqa: E731

        print(f"mlserve --auto chose {chosen.name}: claimed {chosen.speedup.ratio:.2f}x vs PyTorch eager "
              f"[{chosen.speedup.ci_low:.2f}, {chosen.speedup.ci_high:.2f}], independent {independent:.2f}x, "
              f"claimed/independent {chosen.speedup.ratio / independent:.2f}; parity rel L2 "
              f"{max(o.rel_l2_err for o in chosen.parity.outputs):.2e}")
        print(f"  fused operators: mlserve {ops(chosen_path)}, Optimum O2 {ops(optimum_onnx)}")
        for c in result.candidates:
            if c.verdict in ("failed-parity", "error"):
                print(f"  {c.name}: {c.verdict}: {(c.reason or '')[:160]}")
        others = ", ".join(f"{c.name} {c.speedup.ratio:.2f}x" for c in result.candidates if c.speedup and c is not chosen)
        print(f"  other candidates: {others}")
        fused = next((c for c in result.candidates if c.name == "fp32-fused"), None)
        if fused is not None:
            print(f"  fp32-fused: {fused.verdict}, fused {json.dumps(fused.recipe.get('fused'))}")
        print(f"Optimum O2 ({optimum_onnx.name}) latency / mlserve {chosen.name} latency, independent, interleaved: "
              f"{vs_optimum:.3f} ({'ok: at least as fast' if vs_optimum >= 0.97 else 'SLOWER than Optimum O2'})")
        if chosen.precision != "fp32":
            fp32_like = [c for c in result.candidates if c.precision == "fp32" and c.latency]
            best = min(fp32_like, key=lambda c: c.latency.p50_ms)
            best_path = work / f"{best.name}.onnx"
            import shutil

            from mlserve.optimize import OptimizeOptions as O

            optimize(str(model_dir), O(variants=[best.name], texts=TEXTS, output=best_path, benchmark=False,
                                       padding_masks={"attention_mask": None}))
            fp32_vs_optimum, _ = interleaved_ratio({**onnx_side, "model": str(optimum_onnx)}, {**onnx_side, "model": str(best_path)})
            print(f"  fp32 against fp32: Optimum O2 / mlserve {best.name}: {fp32_vs_optimum:.3f}")
            shutil.rmtree(optimum_out, ignore_errors=True)
    return 0 if vs_optimum >= 0.97 else 1


if __name__ == "__main__":
    sys.exit(main())
