"""Exit codes by error class, so that a script can tell "fix your input" from "try again later"
without parsing messages. The table is part of the CLI's interface (README, `promesa --help`)."""

from __future__ import annotations

from enum import IntEnum

from promesa_client import errors


class ExitCode(IntEnum):
    OK = 0
    FAILURE = 1  # any other failure of a call
    USAGE = 2  # a flag or an argument the CLI itself refused (Click's own code)
    INVALID_ARGUMENT = 3  # the service refused the input; the message names the field
    NOT_FOUND = 4
    CONFLICT = 5  # a stale etag (ABORTED) or a duplicate (ALREADY_EXISTS): read again, retry
    FAILED_PRECONDITION = 6  # not possible in the current state (e.g. keep a cancelled promise)
    PERMISSION_DENIED = 7
    UNAUTHENTICATED = 8  # no token, or one the services do not accept
    UNAVAILABLE = 9  # the service could not be reached, or did not answer in time
    CONFIG = 10  # the profile, the environment or the config file is wrong


_BY_CLASS: tuple[tuple[type[errors.PromesaError], ExitCode], ...] = (
    (errors.InvalidArgument, ExitCode.INVALID_ARGUMENT),
    (errors.NotFound, ExitCode.NOT_FOUND),
    (errors.Conflict, ExitCode.CONFLICT),
    (errors.FailedPrecondition, ExitCode.FAILED_PRECONDITION),
    (errors.PermissionDenied, ExitCode.PERMISSION_DENIED),
    (errors.Unauthenticated, ExitCode.UNAUTHENTICATED),
    (errors.Unavailable, ExitCode.UNAVAILABLE),
    (errors.DeadlineExceeded, ExitCode.UNAVAILABLE),
)


def exit_code(error: errors.PromesaError) -> ExitCode:
    for cls, code in _BY_CLASS:
        if isinstance(error, cls):
            return code
    return ExitCode.FAILURE


HELP = (
    "Exit codes: 0 ok, 1 other failure, 2 usage, 3 invalid argument, 4 not found,"
    " 5 conflict (stale etag or duplicate), 6 failed precondition, 7 permission denied,"
    " 8 unauthenticated, 9 unavailable or deadline exceeded, 10 configuration."
)
