"""Errors of one request: each carries the HTTP status and the gRPC status code it maps to.

These never leave the server: the REST and gRPC front ends turn them into a response, and the
server keeps serving. Startup problems (a missing model, a bad option) are ``mlserve.errors``.
"""

from __future__ import annotations


class RequestError(Exception):
    """A request that cannot be served. ``status``: HTTP code; ``grpc_code``: the name of a grpc.StatusCode."""

    status = 400
    grpc_code = "INVALID_ARGUMENT"

    def __init__(self, message: str, *, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.headers = headers or {}


class BadRequest(RequestError):
    """Malformed body, wrong input name, datatype, shape, or data length; names the field."""


class MethodNotAllowed(RequestError):
    """A method the endpoint does not take (405, with ``Allow``)."""

    status = 405
    grpc_code = "UNIMPLEMENTED"


class ModelNotFound(RequestError):
    status = 404
    grpc_code = "NOT_FOUND"


class PayloadTooLarge(RequestError):
    status = 413
    grpc_code = "RESOURCE_EXHAUSTED"


class Overloaded(RequestError):
    """The model's queue is full: answered at once, never an unbounded wait."""

    status = 503
    grpc_code = "UNAVAILABLE"

    def __init__(self, message: str, *, retry_after: int = 1) -> None:
        super().__init__(message, headers={"retry-after": str(retry_after)})


class NotReady(RequestError):
    status = 503
    grpc_code = "UNAVAILABLE"


class RequestTimeout(RequestError):
    """The request waited and ran longer than ``--request-timeout``."""

    status = 504
    grpc_code = "DEADLINE_EXCEEDED"


class ModelFailed(RequestError):
    """The model itself raised while running: a server-side error (500), the next request still works."""

    status = 500
    grpc_code = "INTERNAL"


# gRPC status -> the HTTP code recorded in http_requests_total for gRPC calls (one metric for both protocols)
GRPC_TO_HTTP = {
    "OK": 200, "INVALID_ARGUMENT": 400, "NOT_FOUND": 404, "RESOURCE_EXHAUSTED": 413, "UNAVAILABLE": 503,
    "DEADLINE_EXCEEDED": 504, "INTERNAL": 500, "CANCELLED": 499, "UNIMPLEMENTED": 501,
}
