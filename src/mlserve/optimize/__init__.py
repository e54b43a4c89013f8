"""Conversion to ONNX, optimized variants, the parity guardrail and ``--auto`` selection (library).

    from mlserve.optimize import OptimizeOptions, optimize
    result = optimize("model.pt2", OptimizeOptions(auto=True, output=Path("fast.onnx")))
    print(result.chosen, [c.verdict for c in result.candidates])

Importing this package is cheap: torch, onnx and onnxruntime are imported by the functions that need them.
"""

from mlserve.optimize.models import Candidate, OptimizeResult, OutputParity, ParityReport
from mlserve.optimize.pipeline import OptimizeOptions, optimize
from mlserve.inputs import InputSpec, parse_input, parse_inputs
from mlserve.optimize.specs import ToleranceOverride, parse_tolerance, parse_variants

__all__ = [
    "Candidate", "InputSpec", "OptimizeOptions", "OptimizeResult", "OutputParity", "ParityReport", "ToleranceOverride",
    "optimize", "parse_input", "parse_inputs", "parse_tolerance", "parse_variants",
]
