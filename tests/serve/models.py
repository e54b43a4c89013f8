"""Real ONNX models for the serve tests, built with onnx.helper (seeded weights, opset 17)."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def _save(graph, path: Path) -> Path:  # noqa: ANN001
    import onnx
    from onnx import helper

    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="mlserve-tests")
    model.ir_version = 8
    onnx.checker.check_model(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path


def _dense(name: str, fan_in: int, fan_out: int, rng: np.random.Generator) -> list:
    from onnx import numpy_helper

    w = (rng.standard_normal((fan_in, fan_out)) / np.sqrt(fan_in)).astype(np.float32)
    b = (rng.standard_normal(fan_out) * 0.01).astype(np.float32)
    return [numpy_helper.from_array(w, f"{name}_w"), numpy_helper.from_array(b, f"{name}_b")]


def mlp(path: Path, sizes: tuple[int, ...] = (256, 1024, 1024, 10), seed: int = 0, batch: int | str = "N") -> Path:
    """Dense + ReLU layers; input ``x`` [N, sizes[0]] float32, output ``logits`` [N, sizes[-1]]."""
    from onnx import TensorProto, helper

    rng = np.random.default_rng(seed)
    nodes, inits = [], []
    prev = "x"
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        inits += _dense(f"l{i}", a, b, rng)
        mm, out = f"l{i}_mm", f"l{i}_out"
        nodes.append(helper.make_node("MatMul", [prev, f"l{i}_w"], [mm]))
        last = i == len(sizes) - 2
        nodes.append(helper.make_node("Add", [mm, f"l{i}_b"], ["logits" if last else out]))
        if not last:
            nodes.append(helper.make_node("Relu", [out], [f"l{i}_relu"]))
            prev = f"l{i}_relu"
    graph = helper.make_graph(nodes, "mlp", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, sizes[0]])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [batch, sizes[-1]])], inits)
    return _save(graph, path)


def cnn(path: Path, seed: int = 0, size: int = 64) -> Path:
    """Three 3x3 conv + ReLU (stride 2), global average pool, dense: ``image`` [N,3,S,S] -> ``scores`` [N,10]."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    nodes, inits = [], []
    prev, cin = "image", 3
    for i, cout in enumerate((16, 32, 64)):
        w = (rng.standard_normal((cout, cin, 3, 3)) / np.sqrt(cin * 9)).astype(np.float32)
        inits += [numpy_helper.from_array(w, f"c{i}_w"), numpy_helper.from_array(np.zeros(cout, np.float32), f"c{i}_b")]
        nodes.append(helper.make_node("Conv", [prev, f"c{i}_w", f"c{i}_b"], [f"c{i}"], pads=[1, 1, 1, 1],
                                      strides=[2, 2]))
        nodes.append(helper.make_node("Relu", [f"c{i}"], [f"r{i}"]))
        prev, cin = f"r{i}", cout
    nodes.append(helper.make_node("GlobalAveragePool", [prev], ["gap"]))
    nodes.append(helper.make_node("Flatten", ["gap"], ["flat"]))
    inits += _dense("fc", 64, 10, rng)
    nodes.append(helper.make_node("MatMul", ["flat", "fc_w"], ["fc_mm"]))
    nodes.append(helper.make_node("Add", ["fc_mm", "fc_b"], ["scores"]))
    graph = helper.make_graph(nodes, "cnn", [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", 3, size, size])],
                              [helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["N", 10])], inits)
    return _save(graph, path)


def gather(path: Path) -> Path:
    """``table`` lookup: ``index`` int64 [N] -> ``value`` [N, 4]; an index out of 0..7 makes ONNX Runtime raise."""
    from onnx import TensorProto, helper, numpy_helper

    table = np.arange(32, dtype=np.float32).reshape(8, 4)
    graph = helper.make_graph([helper.make_node("Gather", ["table", "index"], ["value"], axis=0)], "gather",
                              [helper.make_tensor_value_info("index", TensorProto.INT64, ["N"])],
                              [helper.make_tensor_value_info("value", TensorProto.FLOAT, ["N", 4])],
                              [numpy_helper.from_array(table, "table")])
    return _save(graph, path)


def two_inputs(path: Path) -> Path:
    """``a`` float32 [N, 3] and ``b`` int32 [N, 3] (fixed, non-batch dims) -> ``sum`` [N, 3] float32, ``neg`` [N,3]."""
    from onnx import TensorProto, helper

    nodes = [helper.make_node("Cast", ["b"], ["bf"], to=TensorProto.FLOAT),
             helper.make_node("Add", ["a", "bf"], ["sum"]),
             helper.make_node("Neg", ["a"], ["neg"])]
    graph = helper.make_graph(nodes, "two", [helper.make_tensor_value_info("a", TensorProto.FLOAT, ["N", 3]),
                                             helper.make_tensor_value_info("b", TensorProto.INT32, ["N", 3])],
                              [helper.make_tensor_value_info("sum", TensorProto.FLOAT, ["N", 3]),
                               helper.make_tensor_value_info("neg", TensorProto.FLOAT, ["N", 3])])
    return _save(graph, path)


def slow(path: Path, width: int = 2048, layers: int = 24) -> Path:
    """A chain of ``layers`` square MatMuls: about width^2 * layers * 2 flops per row (tune with the batch size)."""
    return mlp(path, sizes=(width,) * (layers + 1), seed=1)


def ragged(path: Path) -> Path:
    """``x`` float32 [N, T] with a dynamic second dimension -> ``y`` = x * 2 (batches only rows of equal T)."""
    from onnx import TensorProto, helper, numpy_helper

    graph = helper.make_graph([helper.make_node("Mul", ["x", "two"], ["y"])], "ragged",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", "T"])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", "T"])],
                              [numpy_helper.from_array(np.array(2.0, np.float32), "two")])
    return _save(graph, path)


def fixed_batch(path: Path) -> Path:
    """Input [1, 4] with a fixed first dimension: never batched."""
    from onnx import TensorProto, helper

    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "fixed",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])])
    return _save(graph, path)
