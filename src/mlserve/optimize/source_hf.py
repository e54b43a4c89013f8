"""A local Hugging Face transformers model directory (config.json + weights) as a source, no network.

The model is loaded with ``local_files_only=True``; example inputs are made by the directory's own
tokenizer from the user's texts (``--text``) or a small built-in text, padded to the longest one, so
parity is checked on what a tokenizer really produces (ids below the vocabulary, a real attention
mask with padding). The export keeps the batch and the sequence length dynamic.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mlserve._deps import require
from mlserve.errors import UsageError
from mlserve.inputs import InputSpec, resolve
from mlserve.optimize.sources import LoadedSource

BUILTIN_TEXTS = [
    "The quick brown fox jumps over the lazy dog.",
    "A model registry keeps every version of a model and the stage it is in.",
    "Latency is measured at batch one, after a warm-up, in interleaved rounds.",
    "Quantized models are smaller and often faster, but they must still compute the same function.",
    "Where is the nearest train station?",
    "Rollouts move traffic to the new version step by step and roll back when the analysis fails.",
    "It rained all day, so we stayed inside and read.",
    "Parity is checked on every output, element by element, and on its scale and direction.",
]
"""Used when no --text is given: short and long sentences, so that the attention mask holds padding."""

_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "spiece.model", "vocab.json", "sentencepiece.bpe.model")


def is_hf_directory(path: Path) -> bool:
    return path.is_dir() and (path / "config.json").is_file()


def load_hf_directory(path: Path, location: str, user_inputs: list[InputSpec], texts: list[str], *, batch: int = 8) -> LoadedSource:
    torch = require("torch", purpose="Hugging Face models")
    try:
        transformers = __import__("transformers")
    except ImportError as exc:
        from mlserve.errors import MissingDependencyError

        raise MissingDependencyError(
            f"{path} is a Hugging Face model directory, and transformers is needed to load it: {exc}",
            hint="install it with: pip install 'mlserve[hf]'",
        ) from None
    import numpy as np

    from mlserve.optimize._quiet import quiet
    from mlserve.optimize.source_torch import torch_source

    if not any((path / name).is_file() for name in _TOKENIZER_FILES):
        raise UsageError(f"{path} has no tokenizer files, so no example inputs can be made",
                         hint="save the tokenizer into the directory (tokenizer.save_pretrained(DIR))")
    with quiet() as log:
        try:
            model = transformers.AutoModel.from_pretrained(str(path), local_files_only=True)
            tokenizer = transformers.AutoTokenizer.from_pretrained(str(path), local_files_only=True)
        except Exception as exc:  # noqa: BLE001 - missing weights, an unknown architecture ...
            raise UsageError(f"transformers cannot load {path}: {type(exc).__name__}: {' '.join(str(exc).split())[:300]} {log.tail(100)}".strip()) from None
    model.eval()
    chosen = list(texts) or BUILTIN_TEXTS
    encoded = tokenizer(chosen, padding="longest", truncation=True, return_tensors="np")
    import inspect

    accepted = list(inspect.signature(model.forward).parameters)
    names = [n for n in accepted if n in encoded]
    arrays = {n: np.ascontiguousarray(encoded[n]).astype(np.int64) for n in names}
    seq = int(arrays[names[0]].shape[1])
    declared = [InputSpec(name=n, shape=[None, seq], dtype="int64", dynamic_batch=True, dynamic_axes=[1] if seq > 1 else [],
                          low=0, high=_bound(n, model.config), range_from="model") for n in names]
    specs = resolve(declared, user_inputs, model=path.name) if user_inputs else declared

    with torch.inference_mode():
        probe = model(**{n: torch.from_numpy(arrays[n][:2]) for n in names}, return_dict=True)
    keys = [k for k in probe.keys() if isinstance(probe[k], torch.Tensor)]

    class Positional(torch.nn.Module):
        """The model with positional inputs (in ``names`` order) and a tuple of tensor outputs."""

        def __init__(self) -> None:
            super().__init__()
            self.model = model
            self.keys = keys

    # an explicit signature (not *args): torch.export matches dynamic shapes to named parameters
    code = (f"def forward(self, {', '.join(names)}):\n"
            f"    out = self.model({', '.join(f'{n}={n}' for n in names)}, return_dict=True)\n"
            "    return tuple(out[k] for k in self.keys)\n")
    namespace: dict[str, Any] = {}
    exec(code, namespace)  # noqa: S102 - the names are the model's own forward parameters (identifiers)
    Positional.forward = namespace["forward"]  # type: ignore[method-assign]

    net = Positional().eval()
    rows = len(chosen)
    example_feeds = []
    for start in range(0, rows, batch):
        example_feeds.append({n: arrays[n][start:start + batch] for n in names})
    for size in (1, 3):  # latency runs at batch 1; an odd size catches an export specialised to one batch
        if size < rows:
            example_feeds.append({n: arrays[n][:size] for n in names})
    source = torch_source("huggingface", location, net, specs, None, output_names=keys)
    source.example_feeds = example_feeds
    config = model.config
    heads, hidden = getattr(config, "num_attention_heads", 0), getattr(config, "hidden_size", 0)
    if isinstance(heads, int) and isinstance(hidden, int) and heads and hidden:
        source.fusion_hints = {"num_heads": heads, "hidden_size": hidden}

    def fusion_export(target: Path) -> None:
        """ORT's attention fusion matches the classic MatMul-Softmax-MatMul of eager attention as the TorchScript
        exporter writes it (not scaled_dot_product_attention): export an eager-attention copy that way."""
        eager = transformers.AutoModel.from_pretrained(str(path), local_files_only=True, attn_implementation="eager").eval()
        wrapper = Positional()
        wrapper.model = eager
        tensors = {n: torch.from_numpy(arrays[n][:2]) for n in names}
        torch.onnx.export(wrapper, tuple(tensors[n] for n in names), str(target), dynamo=False, input_names=names,
                          output_names=keys, opset_version=18, do_constant_folding=True,
                          dynamic_axes={**{n: {0: "batch", 1: "dim1"} for n in names}, **{k: {0: "batch"} for k in keys}})

    source.fusion_export = fusion_export
    source.path = path
    if not texts:
        source.warnings.append(f"parity was checked on {rows} built-in sentences; pass your own with --text (repeatable)")
    return source


def _bound(name: str, config: Any) -> int:
    if "type" in name:
        return int(getattr(config, "type_vocab_size", 2) or 2)
    if "mask" in name:
        return 2
    return int(getattr(config, "vocab_size", 2) or 2)
