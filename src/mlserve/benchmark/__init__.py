"""Latency benchmarking: the measurement harness, backends, environment fingerprint and reports.

Library entry points (numpy and pydantic only at import time; backends import their runtimes lazily)::

    from mlserve.benchmark.harness import MeasureConfig, measure_callable, compare
    from mlserve.benchmark.backends import make_runner, make_inputs, onnx_input_specs
"""
