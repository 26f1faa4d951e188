"""The one table from domain errors to gRPC statuses, and the size of what it sends: a client
such as grpc-js refuses trailers over 8 KB, and then hangs its channel until the deadline."""

from __future__ import annotations

import base64

import grpc
import pytest
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status

from promesa import errors
from promesa.grpc_errors import to_status

TRAILER_LIMIT = 8 * 1024
MEGABYTE = 1_000_000


def percent_encoded(message: str) -> str:
    """grpc-message as gRPC sends it: bytes outside printable ASCII, and '%', as %XX."""
    raw = message.encode()
    return "".join(chr(b) if 0x20 <= b <= 0x7E and b != ord("%") else f"%{b:02X}" for b in raw)


def trailer_size(status: grpc.Status) -> int:
    """The error's trailers as HTTP/2 counts them against a header-list limit (RFC 9113
    6.5.2: name + value + 32 per field), with the values as they travel: grpc-message
    percent-encoded, binary values in unpadded base64."""
    fields = [
        ("grpc-status", str(status.code.value[0])),
        ("grpc-message", percent_encoded(status.details)),
    ]
    for key, value in status.trailing_metadata:
        if isinstance(value, bytes):
            fields.append((key, base64.b64encode(value).decode().rstrip("=")))
        else:
            fields.append((key, str(value)))
    return sum(len(key) + len(value) + 32 for key, value in fields)


def rich_status(status: grpc.Status) -> status_pb2.Status:
    ((key, value),) = status.trailing_metadata
    assert key == "grpc-status-details-bin"
    assert isinstance(value, bytes)
    return status_pb2.Status.FromString(value)


def bad_request_of(status: grpc.Status) -> error_details_pb2.BadRequest:
    (detail,) = rich_status(status).details
    bad = error_details_pb2.BadRequest()
    assert detail.Unpack(bad)
    return bad


# --- which status ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (errors.InvalidArgumentError([]), grpc.StatusCode.INVALID_ARGUMENT),
        (errors.NotFoundError("contact", "c-1"), grpc.StatusCode.NOT_FOUND),
        (errors.AlreadyExistsError("taken", "c-1"), grpc.StatusCode.ALREADY_EXISTS),
        (errors.StaleEtagError("contact", "c-1"), grpc.StatusCode.ABORTED),
        (errors.ContentionError("contact", "c-1"), grpc.StatusCode.ABORTED),
        (errors.UnavailableError("the database cannot be reached"), grpc.StatusCode.UNAVAILABLE),
        (errors.FailedPreconditionError("not open"), grpc.StatusCode.FAILED_PRECONDITION),
        (errors.UnauthenticatedError("who?"), grpc.StatusCode.UNAUTHENTICATED),
        (errors.PermissionDeniedError("no"), grpc.StatusCode.PERMISSION_DENIED),
    ],
    ids=lambda x: type(x).__name__ if isinstance(x, Exception) else None,
)
def test_each_error_answers_its_one_status(
    error: errors.PromesaError, code: grpc.StatusCode
) -> None:
    status = to_status(error)

    assert status.code == code
    assert rich_status(status).code == code.value[0]


def test_contention_tells_the_caller_to_try_again() -> None:
    status = to_status(errors.ContentionError("promise", "p-1"))

    assert status.details == "promise 'p-1' kept changing; try again"


def test_bad_input_carries_every_field_violation_as_bad_request_details() -> None:
    error = errors.InvalidArgumentError(
        [
            errors.FieldViolation("promise.due_at", "is not a valid timestamp (years 1 to 9999)"),
            errors.FieldViolation("promise.kind", "7 is not a known value"),
        ]
    )

    bad = bad_request_of(to_status(error))

    assert [(v.field, v.description) for v in bad.field_violations] == [
        ("promise.due_at", "is not a valid timestamp (years 1 to 9999)"),
        ("promise.kind", "7 is not a known value"),
    ]


def test_a_missing_resource_carries_its_type_and_clipped_name() -> None:
    status = to_status(errors.NotFoundError("contact", "c" * MEGABYTE))

    (detail,) = rich_status(status).details
    info = error_details_pb2.ResourceInfo()
    assert detail.Unpack(info)
    assert info.resource_type == "contact"
    assert len(info.resource_name.encode()) <= 200


# --- how big ----------------------------------------------------------------------------------


def test_a_thousand_bad_tags_answer_with_capped_violations_in_trailers_under_8_kb() -> None:
    error = errors.InvalidArgumentError(
        errors.FieldViolation(f"contact.tags[{i}]", "must be at most 50 characters")
        for i in range(1000)
    )

    status = to_status(error)

    bad = bad_request_of(status)
    assert len(bad.field_violations) == 21
    assert bad.field_violations[-1].description == "and 980 more violations of the same request"
    assert trailer_size(status) < TRAILER_LIMIT


def test_a_thousand_violations_with_long_ascii_descriptions_fit_in_8_kb() -> None:
    # What contacts answers for a thousand malformed emails: each echoes 60 characters of it
    error = errors.InvalidArgumentError(
        errors.FieldViolation(f"contact.emails[{i}]", f"{'x' * 60!r} is not an email")
        for i in range(1000)
    )

    assert trailer_size(to_status(error)) < TRAILER_LIMIT


@pytest.mark.parametrize(
    "error",
    [
        errors.NotFoundError("contact", "x" * MEGABYTE),
        errors.NotFoundError("contact", "😀" * MEGABYTE),
        errors.AlreadyExistsError("x" * MEGABYTE + " is taken", "x" * MEGABYTE),
        errors.StaleEtagError("contact", "x" * MEGABYTE),
        errors.ContentionError("contact", "x" * MEGABYTE),
        errors.FailedPreconditionError("x" * MEGABYTE),
    ],
    ids=["not-found", "not-found-non-ascii", "already-exists", "stale", "contention", "state"],
)
def test_a_megabyte_resource_id_answers_in_trailers_under_8_kb(
    error: errors.PromesaError,
) -> None:
    status = to_status(error)

    assert trailer_size(status) < TRAILER_LIMIT
    assert len(status.details) <= 1000


@pytest.mark.parametrize(
    "error",
    [
        errors.InvalidArgumentError(
            errors.FieldViolation(f"contact.emails[{i}]", f"{'😀' * 60!r} is not an email")
            for i in range(1000)
        ),
        errors.InvalidArgumentError(
            errors.FieldViolation("f" * 1000, "d" * 1000) for _ in range(1000)
        ),
        errors.StaleEtagError("contact", "😀" * MEGABYTE),
    ],
    ids=["non-ascii-emails", "longest-violations", "stale-non-ascii"],
)
def test_every_error_trailer_stays_under_8_kb_whatever_the_text(
    error: errors.PromesaError,
) -> None:
    assert trailer_size(to_status(error)) < TRAILER_LIMIT


def test_the_rich_status_survives_the_round_trip_through_grpc_status() -> None:
    error = errors.InvalidArgumentError([errors.FieldViolation("name", "must not be empty")])
    status = to_status(error)

    rebuilt = rpc_status.to_status(rich_status(status))

    assert rebuilt.code == status.code
    assert rebuilt.details == status.details == "name: must not be empty"
