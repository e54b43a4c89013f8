"""The model registry as a library.

    from mlserve.registry import Registry
    reg = Registry("/srv/models")
    v = reg.register("churn", "model.onnx", metrics={"auc": 0.91})
    reg.promote("churn", v.version, require=["auc>=0.9"])
    print(reg.resolve("churn@production").artifact_path)
"""

from mlserve.registry.names import RegistryRef, parse_ref, parse_ref_strict
from mlserve.registry.schema import (
    Event,
    GcResult,
    HistoryResult,
    ModelList,
    ModelSummary,
    PromoteResult,
    RegisterResult,
    ResolvedVersion,
    VerifyReport,
    VersionInfo,
    VersionList,
)
from mlserve.registry.api import PRODUCTION, Registry, parse_requirement

__all__ = [
    "PRODUCTION", "Event", "GcResult", "HistoryResult", "ModelList", "ModelSummary", "PromoteResult",
    "RegisterResult", "Registry", "RegistryRef", "ResolvedVersion", "VerifyReport", "VersionInfo", "VersionList",
    "parse_ref", "parse_ref_strict", "parse_requirement",
]
