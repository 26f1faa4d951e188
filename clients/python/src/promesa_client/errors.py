"""Exceptions raised by the SDK, one class per kind of failure a caller handles differently.

Every failed call raises a `PromesaError` subclass chosen by the gRPC status code, never a bare
`grpc.RpcError`: an app catches `NotFound` or `Conflict` and reads `field_violations` without
knowing about trailers or `google.rpc` details.
"""

from __future__ import annotations

from dataclasses import dataclass

import grpc
from google.rpc import error_details_pb2, status_pb2

# Where gRPC carries the rich status (google.rpc.Status) in the trailing metadata.
_STATUS_DETAILS_KEY = "grpc-status-details-bin"


@dataclass(frozen=True)
class FieldViolation:
    """One thing wrong with a request: the field's path (e.g. `contact.emails[1]`) and why."""

    field: str
    description: str


class PromesaError(Exception):
    """A call failed; `code` is the gRPC status, `message` the server's (or the SDK's) words."""

    def __init__(
        self,
        code: grpc.StatusCode,
        message: str,
        *,
        field_violations: list[FieldViolation] | None = None,
        resource_type: str = "",
        resource_name: str = "",
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        # Filled for INVALID_ARGUMENT; empty otherwise.
        self.field_violations: list[FieldViolation] = list(field_violations or [])
        # google.rpc.ResourceInfo: the id not found, or the contact that already holds an email.
        self.resource_type = resource_type
        self.resource_name = resource_name

    def __str__(self) -> str:
        # The server's message already names every violation; the SDK's own errors do too.
        if self.message or not self.field_violations:
            return f"{self.code.name}: {self.message}"
        listed = "; ".join(f"{v.field}: {v.description}" for v in self.field_violations)
        return f"{self.code.name}: {listed}"


class NotFound(PromesaError):
    """No resource with that id (or the caller may not see it)."""


class InvalidArgument(PromesaError):
    """The request was wrong; `field_violations` names every field at fault at once."""


class PermissionDenied(PromesaError):
    """The caller is known but its role or team may not do this."""


class Unauthenticated(PromesaError):
    """The token is missing, unknown or expired."""


class Conflict(PromesaError):
    """ABORTED (a stale etag, or writers kept colliding: read again and retry) or
    ALREADY_EXISTS (`resource_name` is the id of the record that holds the value)."""


class FailedPrecondition(PromesaError):
    """The resource is not in a state that allows this (e.g. keeping a cancelled promise)."""


class Unavailable(PromesaError):
    """The service could not be reached, even after the channel's own retries."""


class DeadlineExceeded(PromesaError):
    """The call did not finish within its deadline."""


class Cancelled(PromesaError):
    """The call was cancelled (by the caller, or because the channel was closed)."""


_BY_CODE: dict[grpc.StatusCode, type[PromesaError]] = {
    grpc.StatusCode.NOT_FOUND: NotFound,
    grpc.StatusCode.INVALID_ARGUMENT: InvalidArgument,
    grpc.StatusCode.OUT_OF_RANGE: InvalidArgument,
    grpc.StatusCode.PERMISSION_DENIED: PermissionDenied,
    grpc.StatusCode.UNAUTHENTICATED: Unauthenticated,
    grpc.StatusCode.ABORTED: Conflict,
    grpc.StatusCode.ALREADY_EXISTS: Conflict,
    grpc.StatusCode.FAILED_PRECONDITION: FailedPrecondition,
    grpc.StatusCode.UNAVAILABLE: Unavailable,
    grpc.StatusCode.DEADLINE_EXCEEDED: DeadlineExceeded,
    grpc.StatusCode.CANCELLED: Cancelled,
}


def error_class(code: grpc.StatusCode) -> type[PromesaError]:
    """The class raised for a status code; codes with no class of their own raise the base."""
    return _BY_CODE.get(code, PromesaError)


def from_rpc_error(error: grpc.aio.AioRpcError) -> PromesaError:
    """The SDK exception for a failed call, with the google.rpc details the server attached."""
    code = error.code()
    violations: list[FieldViolation] = []
    resource_type = resource_name = ""
    for key, value in error.trailing_metadata() or ():
        if key != _STATUS_DETAILS_KEY or not isinstance(value, bytes):
            continue
        status = status_pb2.Status.FromString(value)
        for detail in status.details:
            bad_request = error_details_pb2.BadRequest()
            resource = error_details_pb2.ResourceInfo()
            if detail.Unpack(bad_request):
                violations.extend(
                    FieldViolation(v.field, v.description) for v in bad_request.field_violations
                )
            elif detail.Unpack(resource):
                resource_type, resource_name = resource.resource_type, resource.resource_name
    return error_class(code)(
        code,
        error.details() or "",
        field_violations=violations,
        resource_type=resource_type,
        resource_name=resource_name,
    )


def invalid_argument(field: str, description: str) -> InvalidArgument:
    """Raised by the SDK itself, before any call, for an argument it cannot put in a request
    (an unknown enum name, a naive datetime): shaped like the server's, so one handler serves."""
    return InvalidArgument(
        grpc.StatusCode.INVALID_ARGUMENT,
        f"{field}: {description}",
        field_violations=[FieldViolation(field, description)],
    )
