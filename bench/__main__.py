"""`python -m bench [--quick] [--runs N] [--only STEP,...]`: runs the benchmark suite, prints a
table, writes JSON results."""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys

import uvloop

from bench import report, suite
from bench.profile import FULL, QUICK, Profile
from bench.progress import say

FULL_RUNS = 3  # issue 13's figures are medians of 3 runs
QUICK_RUNS = 1  # a smoke test: one run proves the path


async def main(profile: Profile, runs: int, steps: list[str]) -> None:
    # SIGTERM unwinds like Ctrl-C does: the run is cancelled and every server and temporary
    # directory it opened is stopped and removed on the way out.
    task = asyncio.current_task()
    assert task is not None
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
    results = await suite.run(profile, runs, steps)
    print(report.render(results))
    path = report.write_json(results)
    say(f"done in {results.elapsed_seconds:,.0f} s; JSON in {path}")


def _steps(text: str) -> list[str]:
    steps = [s.strip() for s in text.split(",") if s.strip()]
    unknown = [s for s in steps if s not in suite.STEPS]
    if unknown or not steps:
        raise argparse.ArgumentTypeError(
            f"unknown step(s) {', '.join(unknown) or '(none given)'}:"
            f" choose among {','.join(suite.STEPS)}"
        )
    return steps


def _runs(text: str) -> int:
    runs = int(text)
    if runs < 1:
        raise argparse.ArgumentTypeError("at least 1")
    return runs


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument(
        "--quick", action="store_true", help="a short run for smoke testing (seconds, not minutes)"
    )
    parser.add_argument(
        "--runs",
        type=_runs,
        help=f"runs of the repeated steps ({', '.join(suite.REPEATED)}), reported as their"
        f" median and range; seeds are made once (default {FULL_RUNS}, {QUICK_RUNS} with"
        " --quick)",
    )
    parser.add_argument(
        "--only",
        type=_steps,
        default=list(suite.STEPS),
        metavar="STEP[,STEP]",
        help=f"run only these steps, among {','.join(suite.STEPS)} (JSON then goes to"
        " bench/results/latest-only-<steps>.json)",
    )
    args = parser.parse_args()
    runs = args.runs or (QUICK_RUNS if args.quick else FULL_RUNS)
    try:
        uvloop.run(main(QUICK if args.quick else FULL, runs, args.only))
    except (KeyboardInterrupt, asyncio.CancelledError):
        print("bench: interrupted; servers stopped and temporary files removed", file=sys.stderr)
        raise SystemExit(130) from None
