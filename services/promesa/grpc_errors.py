"""One table from domain errors to gRPC statuses, with google.rpc details for bad input."""

from __future__ import annotations

import grpc
from google.protobuf import any_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from promesa import errors

# The message travels twice (grpc-message and inside grpc-status-details-bin): clipped, so
# with the capped field violations every error trailer stays well under 8 KB.
MAX_MESSAGE = 1000

_CODES: list[tuple[type[errors.PromesaError], grpc.StatusCode]] = [
    (errors.InvalidArgumentError, grpc.StatusCode.INVALID_ARGUMENT),
    (errors.NotFoundError, grpc.StatusCode.NOT_FOUND),
    (errors.AlreadyExistsError, grpc.StatusCode.ALREADY_EXISTS),
    (errors.StaleEtagError, grpc.StatusCode.ABORTED),
    (errors.ContentionError, grpc.StatusCode.ABORTED),
    (errors.FailedPreconditionError, grpc.StatusCode.FAILED_PRECONDITION),
    (errors.UnauthenticatedError, grpc.StatusCode.UNAUTHENTICATED),
    (errors.PermissionDeniedError, grpc.StatusCode.PERMISSION_DENIED),
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
        bad_request = error_details_pb2.BadRequest(
            field_violations=[
                error_details_pb2.BadRequest.FieldViolation(
                    field=v.field, description=v.description
                )
                for v in exc.violations
            ]
        )
        details.append(_pack(bad_request))
    elif isinstance(exc, errors.NotFoundError):
        details.append(
            _pack(
                error_details_pb2.ResourceInfo(
                    resource_type=exc.resource, resource_name=errors.clip(exc.resource_id, 100)
                )
            )
        )
    elif isinstance(exc, errors.AlreadyExistsError):
        details.append(
            _pack(error_details_pb2.ResourceInfo(resource_name=errors.clip(exc.existing_id, 100)))
        )
    message = errors.clip(str(exc), MAX_MESSAGE)
    status = status_pb2.Status(code=getattr(code_pb2, code.name), message=message, details=details)
    return rpc_status.to_status(status)


def _pack(message: object) -> any_pb2.Any:
    packed = any_pb2.Any()
    packed.Pack(message)  # type: ignore[arg-type]
    return packed
