"""A local Hugging Face model directory as a source (random weights, a tokenizer made here: no network)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

transformers = pytest.importorskip("transformers", reason="mlserve[hf] is not installed")

FAST = ("--warmup", "0", "--iterations", "3", "--duration", "0", "--rounds", "3")
WORDS = ("the quick brown fox jumps over lazy dog a model registry keeps every version of and stage it is in latency "
         "measured at batch one after warm up where nearest train station it rained all day so we stayed inside read").split()


@pytest.fixture(scope="module")
def bert_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import torch

    out = tmp_path_factory.mktemp("tiny-bert")
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *sorted(set(WORDS))]
    (out / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    transformers.BertTokenizerFast(vocab_file=str(out / "vocab.txt")).save_pretrained(out)
    torch.manual_seed(0)
    config = transformers.BertConfig(vocab_size=len(vocab), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                                     intermediate_size=64, max_position_embeddings=64)
    transformers.BertModel(config).eval().save_pretrained(out)
    return out


def test_a_model_directory_is_a_source_with_tokenizer_made_inputs(cli: Any, bert_dir: Path) -> None:
    result = cli("optimize", "--dry-run", bert_dir, "--auto", *FAST, "--threads", "1", "--padding-mask", "attention_mask",
                 "--text", "the quick brown fox", "--text", "where is the nearest train station it rained all day", "--json")
    assert result.exit_code == 0, result.stderr
    doc = json.loads(result.stdout)["result"]
    src = doc["source"]
    assert src["kind"] == "huggingface" and src["outputs"] == ["last_hidden_state", "pooler_output"]
    assert [s["name"] for s in src["inputs"]] == ["input_ids", "attention_mask", "token_type_ids"]
    by_name = {c["name"]: c for c in doc["candidates"]}
    fp32 = by_name["fp32"]["parity"]
    assert fp32["passed"] and fp32["samples"] == 2 + 1  # the two texts, and a batch of one
    hidden = next(o for o in fp32["outputs"] if o["name"] == "last_hidden_state")
    assert hidden["excluded"] > 0  # the shorter text's padding is left out
    # the transformer optimizer's fusions are a candidate of their own, parity-checked like every other
    fused = by_name["fp32-fused"]
    assert fused["verdict"] in ("chosen", "slower", "passed") and fused["parity"]["passed"]
    # attention itself is fused: from an eager-attention export through the TorchScript exporter, with the config's heads
    assert fused["recipe"]["fused"]["Attention"] == 2 and fused["recipe"]["from"] == "eager attention, TorchScript exporter"
    assert (fused["recipe"]["num_heads"], fused["recipe"]["hidden_size"]) == (2, 32)
    assert by_name["int8-static"]["recipe"].get("calibration", {}).get("origin", "the source's tokenized example texts") == \
        "the source's tokenized example texts"


def test_the_export_keeps_batch_and_sequence_dynamic(bert_dir: Path, tmp_path: Path) -> None:
    import numpy as np
    import onnxruntime as ort

    from mlserve.optimize import OptimizeOptions, optimize

    out = tmp_path / "bert.onnx"
    optimize(str(bert_dir), OptimizeOptions(variants=["fp32"], benchmark=False, output=out))
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    feeds = {i.name: np.ones((3, 11), np.int64) for i in session.get_inputs()}
    assert session.run(None, feeds)[0].shape == (3, 11, 32)


def test_without_transformers_the_error_names_the_extra(bert_dir: Path) -> None:
    code = ("import sys; sys.modules['transformers'] = None\n"
            "from mlserve.cli.app import main; sys.argv = ['mlserve', 'optimize', sys.argv[1], '--auto', '--dry-run']; main()")
    env = {**os.environ, "MLSERVE_NO_PROGRESS": "1"}
    proc = subprocess.run([sys.executable, "-c", code, str(bert_dir)], capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 7, proc.stderr
    assert "is a Hugging Face model directory, and transformers is needed" in proc.stderr and "mlserve[hf]" in proc.stderr
