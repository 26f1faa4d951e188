"""Reproduces issue 12 finding 1: reminders posted late, or twice, to a slow webhook receiver.

N reminders fall due at once; two follow-up replicas (two ReminderSchedulers on one SQLite
file, as two pods on one store) sweep every second, the service's default; a webhook receiver
takes DELAY s per POST. Prints, as one JSON object: POSTs, distinct reminders posted,
duplicate POSTs (same Idempotency-Key), the lateness of the POSTs and of the NATS attempts,
and how many reminders were still not posted when it stopped (all posted, or LIMIT s).

    PYTHONPATH=services:gen:. python -m bench.slow_receivers N DELAY LEASE \
        [LIMIT] [TIMEOUT] [ATTEMPTS]

LEASE is the reminder lease in seconds; the webhook's back-off and, by default, its timeout
scale with it (the shipped 0.5 s and 5 s at a 60 s lease); ATTEMPTS defaults to the shipped 3.
It runs against whatever `followup` is on PYTHONPATH: point it at another checkout's
services/ (e.g. `git archive HEAD services gen | tar -x -C /tmp/before`) for the figures
before a change. Not part of `make bench`: it measures one finding, not throughput.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import tempfile
import threading
import time
from collections import Counter
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import structlog

from followup.adapters import event_codec
from followup.adapters.notifiers import WebhookNotifier
from followup.adapters.sqlite_store import SqlitePromiseStore
from followup.domain import lifecycle
from followup.domain.model import Promise, PromiseKind
from followup.domain.reminders import ReminderKind, ReminderPolicy, delivery
from followup.ports import Change
from followup.reminding import ReminderScheduler
from followup.settings import WebhookSettings
from promesa.clock import SystemClock


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.slow_receivers", description=__doc__.split("\n")[0]
    )
    parser.add_argument("n", type=int, help="reminders due at once")
    parser.add_argument("delay", type=float, help="seconds the receiver takes per POST")
    parser.add_argument("lease", type=float, help="reminder lease, seconds")
    parser.add_argument("limit", type=float, nargs="?", default=120.0, help="stop after (s)")
    parser.add_argument("timeout", type=float, nargs="?", default=None, help="webhook timeout")
    parser.add_argument("attempts", type=int, nargs="?", default=3, help="webhook attempts")
    args = parser.parse_args(argv)
    timeout = args.timeout if args.timeout is not None else 5 * args.lease / 60
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.CRITICAL))
    result = asyncio.run(
        measure(args.n, args.delay, args.lease, args.limit, timeout, args.attempts)
    )
    print(json.dumps(result))


async def measure(
    n: int, delay: float, lease_s: float, limit: float, timeout: float, attempts: int
) -> dict[str, Any]:
    posts: list[tuple[str, float]] = []
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            self.rfile.read(int(self.headers["Content-Length"]))
            time.sleep(delay)
            with lock:
                posts.append((self.headers["Idempotency-Key"], time.time()))
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    class Server(ThreadingHTTPServer):
        request_queue_size = 256  # the listen backlog: 5 by default, fewer than the senders

    server = Server(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/hook"
    # Default: the shipped 3 attempts of 5 s with 0.5 s back-off, scaled with the lease.
    settings = WebhookSettings(
        url=url,
        secret="k",
        attempts=attempts,
        backoff_seconds=0.5 * lease_s / 60,
        timeout_seconds=timeout,
    )
    new_code = "sweep" in dir(ReminderScheduler)
    policy = ReminderPolicy(notifiers=("nats", "webhook"))
    clock = SystemClock()
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "followup.db"
        seed = SqlitePromiseStore(path, event_codec.encode, clock)
        at = clock.now()
        change = Change()
        for i in range(n):
            p = lifecycle.created(
                Promise(
                    id=f"p{i:04}",
                    contact_id=f"c{i:04}",
                    text="Call back",
                    kind=PromiseKind.CALL_BACK,
                    owner_id="ana",
                    team="madrid",
                    created_by="ana",
                    due_at=at + timedelta(hours=1),
                    created_at=at - timedelta(hours=1),
                )
            )
            change.saves.append((p, 0))
            change.replans[p.id] = [
                delivery(p, ReminderKind.BEFORE_DUE_1H, at, "ana", policy, f"r{i:04}")
            ]
        await seed.commit(change)
        stores = [SqlitePromiseStore(path, event_codec.encode, clock) for _ in range(2)]
        notifiers = []
        schedulers = []
        for store in stores:
            extra: dict[str, Any] = {}
            if new_code:
                notifier = WebhookNotifier(settings, concurrency=16)
                extra["deadlines"] = {"webhook": settings.worst_case}
            else:
                notifier = WebhookNotifier(settings)
            notifiers.append(notifier)
            schedulers.append(
                ReminderScheduler(
                    store,
                    clock,
                    policy=policy,
                    notifiers=[notifier],
                    lease=timedelta(seconds=lease_s),
                    batch=200,
                    **extra,
                )
            )
        stop = asyncio.Event()

        async def replica(s: ReminderScheduler, offset: float) -> None:
            await asyncio.sleep(offset)
            job = s.sweep if new_code else s.drain  # sweep(within=1 s), the interval
            while not stop.is_set():
                started = time.monotonic()
                await job()
                pause = max(0.0, 1.0 - (time.monotonic() - started))
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), pause)

        t0 = time.time()
        tasks = [asyncio.create_task(replica(s, i * 0.5)) for i, s in enumerate(schedulers)]
        while time.time() - t0 < limit:
            await asyncio.sleep(0.5)
            rows = await seed.deliveries("", "", None, n + 10)
            if all(r.next_attempt_at is None for r in rows) and len({k for k, _ in posts}) >= n:
                break
        stop.set()
        await asyncio.gather(*tasks, return_exceptions=True)
        for s in schedulers:
            if hasattr(s, "close"):
                await s.close()
        rows = await seed.deliveries("", "", None, n + 10)
        for notifier in notifiers:
            if hasattr(notifier, "aclose"):
                await notifier.aclose()
        for store in [seed, *stores]:
            await store.close()
    server.shutdown()
    counts = Counter(k for k, _ in posts)
    first_post: dict[str, float] = {}
    for k, t in sorted(posts, key=lambda x: x[1]):
        first_post.setdefault(k, t)
    nats = [
        (a.attempted_at - r.scheduled_at).total_seconds()
        for r in rows
        for a in r.attempts
        if a.notifier == "nats" and a.success
    ]
    return {
        "code": "after" if new_code else "before",
        "reminders": n,
        "receiver_delay_s": delay,
        "lease_s": lease_s,
        "webhook_attempts_x_timeout_s": f"{attempts} x {timeout:g}",
        "posts": len(posts),
        "reminders_posted": len(counts),
        "duplicate_posts": len(posts) - len(counts),
        "reminders_posted_twice_or_more": sum(1 for c in counts.values() if c > 1),
        "max_post_lateness_s": round(max((t - at.timestamp() for _, t in posts), default=0), 1),
        "max_first_post_lateness_s": round(
            max((t - at.timestamp() for t in first_post.values()), default=0), 1
        ),
        "nats_recorded": len(nats),
        "max_nats_lateness_s": round(max(nats, default=0), 1),
        "not_posted_at_end": n - len(counts),
        "wall_s": round(time.time() - t0, 1),
    }


if __name__ == "__main__":
    main()
