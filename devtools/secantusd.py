"""`secantusd-py` with a transaction lifetime of our choosing (its CLI has no flag for it):
`python -m devtools.secantusd --transaction-lifetime-seconds N <secantusd-py arguments>`.

Like mongod's `transactionLifetimeLimitSeconds`, the lifetime is how long a transaction left
open by a client that died (SIGKILL mid-transaction) blocks the writers it conflicts with.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from secantus import cli  # type: ignore[import-untyped]
from secantus.server import SecantusDBServer  # type: ignore[import-untyped]


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--transaction-lifetime-seconds", type=float, required=True)
    ours, rest = parser.parse_known_args(argv)
    lifetime: float = ours.transaction_lifetime_seconds

    class Server(SecantusDBServer):  # type: ignore[misc]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, transaction_lifetime_seconds=lifetime, **kwargs)

    cli.SecantusDBServer = Server
    return int(cli.main(rest))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
