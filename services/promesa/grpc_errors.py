"""One table from domain errors to gRPC statuses, with google.rpc details for bad input."""

from __future__ import annotations

import grpc
from google.protobuf import any_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from promesa import errors

# Byte budgets that keep every error trailer under 8 KB, whatever a caller sent (some clients,
# grpc-js among them, hang past their limit). The message travels twice: percent-encoded in
# grpc-message (up to 3 bytes a byte) and in grpc-status-details-bin (base64, 4 per 3), as do
# the field violations. 400 + 3,000 + 200 bytes of text stay under about 6 KB on the wire.
MAX_MESSAGE_BYTES = 400
MAX_BAD_REQUEST_BYTES = 3000
MAX_ID_BYTES = 200

_CODES: list[tuple[type[errors.PromesaError], grpc.StatusCode]] = [
    (errors.InvalidArgumentError, grpc.StatusCode.INVALID_ARGUMENT),
    (errors.NotFoundError, grpc.StatusCode.NOT_FOUND),
    (errors.AlreadyExistsError, grpc.StatusCode.ALREADY_EXISTS),
    (errors.StaleEtagError, grpc.StatusCode.ABORTED),
    (errors.ContentionError, grpc.StatusCode.ABORTED),
    (errors.FailedPreconditionError, grpc.StatusCode.FAILED_PRECONDITION),
    (errors.UnauthenticatedError, grpc.StatusCode.UNAUTHENTICATED),
    (errors.PermissionDeniedError, grpc.StatusCode.PERMISSION_DENIED),
    (errors.UnavailableError, grpc.StatusCode.UNAVAILABLE),
]


def status_code_for(exc: errors.PromesaError) -> grpc.StatusCode:
    for cls, code in _CODES:
        if isinstance(exc, cls):
            return code
    return grpc.StatusCode.FAILED_PRECONDITION


def to_status(exc: errors.PromesaError) -> grpc.Status:
    """A rich status: BadRequest field violations for bad input, ResourceInfo for ids."""
    code = status_code_for(exc)
    details: list[any_pb2.Any] = []
    if isinstance(exc, errors.InvalidArgumentError):
        details.append(_pack(_bad_request(exc.violations)))
    elif isinstance(exc, errors.NotFoundError):
        details.append(
            _pack(
                error_details_pb2.ResourceInfo(
                    resource_type=exc.resource,
                    resource_name=_clip_bytes(exc.resource_id, MAX_ID_BYTES),
                )
            )
        )
    elif isinstance(exc, errors.AlreadyExistsError):
        details.append(
            _pack(
                error_details_pb2.ResourceInfo(
                    resource_name=_clip_bytes(exc.existing_id, MAX_ID_BYTES)
                )
            )
        )
    message = _clip_bytes(str(exc), MAX_MESSAGE_BYTES)
    status = status_pb2.Status(code=getattr(code_pb2, code.name), message=message, details=details)
    return rpc_status.to_status(status)


def _bad_request(violations: tuple[errors.FieldViolation, ...]) -> error_details_pb2.BadRequest:
    """Every violation that fits the budget, then one that says how many more there are."""
    bad_request = error_details_pb2.BadRequest()
    for i, v in enumerate(violations):
        entry = bad_request.field_violations.add(
            field=_clip_bytes(v.field, 200), description=_clip_bytes(v.description, 300)
        )
        if bad_request.ByteSize() > MAX_BAD_REQUEST_BYTES:
            bad_request.field_violations.remove(entry)
            rest = len(violations) - i
            bad_request.field_violations.add(description=f"and {rest} more violations")
            break
    return bad_request


def _clip_bytes(text: str, limit: int) -> str:
    """At most `limit` bytes of UTF-8, cut at a character boundary."""
    raw = text.encode()
    if len(raw) <= limit:
        return text
    return raw[: limit - 3].decode(errors="ignore") + "…"


def _pack(message: object) -> any_pb2.Any:
    packed = any_pb2.Any()
    packed.Pack(message)  # type: ignore[arg-type]
    return packed
