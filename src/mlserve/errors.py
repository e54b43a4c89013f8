"""One hierarchy of domain errors. The core raises these; the CLI boundary maps them to exit codes.

Messages are one line, say what failed and, where there is one, what to do about it. They never
contain secrets (tokens end up in CI logs).
"""

from __future__ import annotations

from mlserve import exitcodes


class MlserveError(Exception):
    """Base of every error mlserve raises on purpose."""

    exit_code: int = exitcodes.ERROR
    code: str = "error"

    def __init__(self, message: str, *, hint: str | None = None, details: dict | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.details = details or {}

    def __str__(self) -> str:
        return self.message if not self.hint else f"{self.message} ({self.hint})"

    def to_dict(self) -> dict:
        doc = {"code": self.code, "exit_code": self.exit_code, "message": self.message}
        if self.hint:
            doc["hint"] = self.hint
        if self.details:
            doc["details"] = self.details
        return doc


class UsageError(MlserveError):
    """The input is not acceptable: a bad name, a malformed value, a file of the wrong kind."""

    exit_code = exitcodes.USAGE
    code = "usage"


class InvalidNameError(UsageError):
    code = "invalid_name"


class NotFoundError(MlserveError):
    exit_code = exitcodes.NOT_FOUND
    code = "not_found"


class EmptyStageError(NotFoundError):
    code = "empty_stage"


class ConflictError(MlserveError):
    exit_code = exitcodes.CONFLICT
    code = "conflict"


class LockTimeoutError(ConflictError):
    code = "lock_timeout"


class VersionExistsError(ConflictError):
    code = "version_exists"


class ExpectationFailedError(ConflictError):
    """A compare-and-swap precondition (``--expect-current``) did not hold."""

    code = "expectation_failed"


class IntegrityError(MlserveError):
    exit_code = exitcodes.INTEGRITY
    code = "integrity"


class ChecksumMismatchError(IntegrityError):
    code = "checksum_mismatch"


class CorruptIndexError(IntegrityError):
    code = "corrupt_index"


class StorageError(MlserveError):
    """The operating system refused a file operation; wraps the OSError."""

    exit_code = exitcodes.IO_ERROR
    code = "io_error"

    @classmethod
    def from_os_error(cls, exc: OSError) -> "StorageError":
        where = f": {exc.filename}" if exc.filename else ""
        return cls(f"{exc.strerror or exc}{where}", hint="check the path, its permissions and free space")


class NoSpaceError(StorageError):
    """The file system is full (or a quota is reached); the message names the file and the space needed."""

    code = "no_space"


class GateFailedError(MlserveError):
    """A gate said no. ``details`` carries the figures that made it fail."""

    exit_code = exitcodes.GATE_FAILED
    code = "gate_failed"


class ParityError(GateFailedError):
    code = "parity_failed"


class MissingDependencyError(MlserveError):
    exit_code = exitcodes.MISSING_DEPENDENCY
    code = "missing_dependency"


class CapabilityUnavailableError(MissingDependencyError):
    """The hardware or runtime cannot do this here (no CUDA, no TensorRT)."""

    code = "capability_unavailable"


class RolloutError(MlserveError):
    code = "rollout"


class RolledBackError(RolloutError):
    exit_code = exitcodes.ROLLED_BACK
    code = "rolled_back"


class InconclusiveError(RolloutError):
    exit_code = exitcodes.INCONCLUSIVE
    code = "inconclusive"


class InfrastructureError(MlserveError):
    """The Kubernetes API, Prometheus or another service we depend on failed or was unreachable."""

    exit_code = exitcodes.INFRASTRUCTURE
    code = "infrastructure"


class AbortedError(RolloutError):
    exit_code = exitcodes.ABORTED
    code = "aborted"


class ApiRejectedError(InfrastructureError):
    """The Kubernetes API server refused a request as invalid (422 Invalid, 400, an admission webhook).

    The message quotes what the server said, so the cause (a label over 63 characters, a field of the
    wrong type) is visible without ``kubectl``.
    """

    code = "api_rejected"


class PatchNotAppliedError(ApiRejectedError):
    """A JSON patch failed on the server (a 422 that names no field): one of its ``test`` operations
    failed, i.e. the object changed since it was read, or a path it names is missing."""

    code = "patch_not_applied"
