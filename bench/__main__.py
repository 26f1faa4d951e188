"""`python -m bench [--quick]`: runs the benchmark suite, prints a table, writes JSON results."""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys

import uvloop

from bench import report, suite
from bench.profile import FULL, QUICK, Profile


async def main(profile: Profile) -> None:
    # SIGTERM unwinds like Ctrl-C does: the run is cancelled and every server and temporary
    # directory it opened is stopped and removed on the way out.
    task = asyncio.current_task()
    assert task is not None
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
    results = await suite.run(profile)
    print(report.render(results))
    report.write_json(results)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument(
        "--quick", action="store_true", help="a short run for smoke testing (seconds, not minutes)"
    )
    args = parser.parse_args()
    try:
        uvloop.run(main(QUICK if args.quick else FULL))
    except (KeyboardInterrupt, asyncio.CancelledError):
        print("bench: interrupted; servers stopped and temporary files removed", file=sys.stderr)
        raise SystemExit(130) from None
