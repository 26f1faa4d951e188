"""`python -m chaos` (`make chaos`): the fault-injection suite of issue 12 on the real system.

    python -m chaos [--store sqlite|mongodb|both] [--only R1,R3] [--fast] [--report PATH]

Writes the figures to chaos-report.json (or --report), prints a summary table, and exits 1
when a figure that must be zero is not, or a target is missed.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from pathlib import Path

from chaos.cluster import kill_strays
from chaos.report import Report, summary, write_report
from chaos.run import run_suite
from chaos.scenarios import FAST, ORDER


async def _suite(
    stores: tuple[str, ...],
    scenarios: tuple[str, ...],
    fast: bool,
    workdir: Path | None,
    root: Path | None,
) -> Report:
    """SIGTERM cancels the run as Ctrl-C does: it unwinds through its `finally`s, which stop
    every process it started."""
    task = asyncio.current_task()
    assert task is not None
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
    return await run_suite(stores, scenarios, fast=fast, workdir=workdir, root=root)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m chaos", description=__doc__.split("\n")[0])
    parser.add_argument("--store", choices=("sqlite", "mongodb", "both"), default="both")
    parser.add_argument("--only", default="", help="comma-separated scenarios, e.g. R1,R3")
    parser.add_argument("--fast", action="store_true", help="the fast subset, with less load")
    parser.add_argument("--report", type=Path, default=Path("chaos-report.json"))
    parser.add_argument("--workdir", type=Path, default=None, help="logs and data (a temp dir)")
    parser.add_argument(
        "--services-root",
        type=Path,
        default=None,
        help="run the services of another checkout (e.g. a `git worktree` of main) to compare",
    )
    args = parser.parse_args(argv)
    stores = ("sqlite", "mongodb") if args.store == "both" else (args.store,)
    root = args.services_root.absolute() if args.services_root else None
    chosen = tuple(s.strip().upper() for s in args.only.split(",") if s.strip())
    unknown = [s for s in chosen if s not in ORDER]
    if unknown:
        parser.error(f"unknown scenarios {unknown}; known: {', '.join(ORDER)}")
    scenarios = chosen or (FAST if args.fast else ORDER)
    # Ctrl-C works even when started with SIGINT ignored (a background job of a script).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        report = asyncio.run(_suite(stores, scenarios, args.fast, args.workdir, root))
    except (KeyboardInterrupt, asyncio.CancelledError):
        kill_strays()
        print("interrupted: every process the run started is stopped", file=sys.stderr)
        return 130
    write_report(report, args.report)
    print(summary(report))
    print(f"report: {args.report.resolve()}   logs: {report.workdir}")
    return 0 if report.passed else 1


if __name__ == "__main__":
    sys.exit(main())
