"""Runs scenarios against one cluster per store backend, one after the other, and collects
their figures; the cluster is healed between scenarios and always torn down."""

from __future__ import annotations

import asyncio
import logging
import tempfile
import time
import traceback
import uuid
from collections.abc import Sequence
from pathlib import Path

from chaos.cluster import Cluster
from chaos.probes import (
    Metrics,
    ReminderWatch,
    StoreProbe,
    WebhookReceiver,
    stream_copies,
    stream_heads,
)
from chaos.report import Outcome, Report
from chaos.scenarios import KILLS_A_PUBLISHER, ORDER, SCENARIOS, Context, Scale
from chaos.workload import Clients
from devtools.listening import free_port

SIGNING_KEY = "chaos-webhook-signing-key"
SCENARIO_LIMIT_SECONDS = 240.0
CORE_NATS_COPIES_WHY = (
    "a publisher killed between publishing a batch and deleting its outbox rows (a service"
    " SIGKILLed, or nats-server killed or frozen before its ack reached the relay) publishes"
    " the batch again: JetStream drops the stored copy by Nats-Msg-Id (duplicate_jetstream"
    " is 0), a plain core-NATS subscriber gets it twice and drops it by ce-id (at least once"
    " by design of the outbox; StreamReminders, which reads JetStream, shows none twice)"
)


def quiet_nats_client() -> None:
    """nats-py logs a traceback per failed reconnect; while R4 keeps nats-server dead that is
    the fault, not news (the watch counts its errors)."""
    logging.getLogger("nats").setLevel(logging.CRITICAL)


async def run_suite(
    stores: Sequence[str],
    scenarios: Sequence[str],
    *,
    fast: bool = False,
    workdir: Path | None = None,
    root: Path | None = None,
) -> Report:
    quiet_nats_client()
    base = workdir or Path(tempfile.mkdtemp(prefix="promesa-chaos-"))
    base.mkdir(parents=True, exist_ok=True)
    report = Report(workdir=str(base), scenarios=list(scenarios), stores=list(stores))
    ordered = [s for s in ORDER if s in scenarios]
    for store in stores:
        await run_store(store, ordered, base / store, report, fast=fast, root=root)
    report.finish()
    return report


async def run_store(
    store: str,
    scenarios: Sequence[str],
    workdir: Path,
    report: Report,
    *,
    fast: bool,
    root: Path | None = None,
) -> None:
    receiver = WebhookReceiver(free_port())
    await receiver.up()
    webhook = {
        "CRM_WEBHOOK_URL": receiver.url,
        "CRM_WEBHOOK_SIGNING_KEY": SIGNING_KEY,
        # Every send bounded well inside the 10 s lease (2 attempts x 3 s + 0.5 s back-off;
        # other notifiers 8 s), as the follow-up settings require of a lease.
        "CRM_WEBHOOK_ATTEMPTS": "2",
        "CRM_WEBHOOK_TIMEOUT_SECONDS": "3",
        "CRM_WEBHOOK_BACKOFF_SECONDS": "0.5",
        "CRM_NOTIFIER_SEND_TIMEOUT_SECONDS": "8",
    }
    cluster = Cluster(store, workdir, extra_env={"followup": webhook})
    if root is not None:
        cluster.root = root
    clients: Clients | None = None
    watch: ReminderWatch | None = None
    stores: StoreProbe | None = None
    try:
        started = time.monotonic()
        cluster.start()
        report.startup_seconds[store] = round(time.monotonic() - started, 2)
        clients = Clients(cluster)
        watch = ReminderWatch(cluster.nats_server.url)
        await watch.start()
        stores = StoreProbe(cluster)
        ctx = Context(
            cluster=cluster,
            clients=clients,
            metrics=Metrics(),
            stores=stores,
            watch=watch,
            receiver=receiver,
            scale=Scale.of(store, fast=fast),
            run_id=uuid.uuid4().hex[:8],
        )
        for name in scenarios:
            report.outcomes.append(await run_one(ctx, name, store))
            print(report.outcomes[-1].line(), flush=True)
    except Exception as exc:  # the cluster did not start: reported, the next store still runs
        report.outcomes.append(
            Outcome("setup", store, {}, [f"setup failed: {exc!r}"], 0.0, traceback.format_exc())
        )
    finally:
        if watch is not None:
            await watch.close()
        if clients is not None:
            await clients.close()
        if stores is not None:
            stores.close()
        await receiver.down()
        cluster.close()


async def run_one(ctx: Context, name: str, store: str) -> Outcome:
    healed = ctx.cluster.heal()
    mark = len(ctx.watch.events)
    started = time.monotonic()
    try:
        heads = await stream_heads(ctx.cluster.nats_server.url)
        figures = await asyncio.wait_for(SCENARIOS[name](ctx), SCENARIO_LIMIT_SECONDS)
        stored_twice, stored = await stream_copies(ctx.cluster.nats_server.url, heads)
    except TimeoutError:
        return Outcome(
            name,
            store,
            {},
            [f"did not finish in {SCENARIO_LIMIT_SECONDS:g}s"],
            round(time.monotonic() - started, 2),
        )
    except Exception as exc:
        return Outcome(
            name,
            store,
            {},
            [f"error: {exc!r}"],
            round(time.monotonic() - started, 2),
            traceback.format_exc(),
        )
    if healed:
        figures.values["healed_before"] = healed
    # Every event JetStream stored during the scenario, once per Nats-Msg-Id: a batch a
    # relay publishes again after a kill is dropped by its duplicate window (any scenario).
    figures.values["jetstream_messages_stored"] = stored
    figures.zero("duplicate_jetstream", sum(n - 1 for n in stored_twice.values()))
    if stored_twice:
        figures.values["duplicate_jetstream_sample"] = dict(stored_twice.most_common(5))
    # Every follow-up event a plain core-NATS subscriber saw during the scenario: once each
    # while replicas race (each relay claims the rows it publishes, finding 2); where a
    # publisher or nats-server is killed, at least once (see CORE_NATS_COPIES_WHY).
    twice = ctx.watch.duplicates_since(mark)
    copies = sum(n - 1 for n in twice.values())
    if name in KILLS_A_PUBLISHER:
        figures.values["core_nats_copies_after_kill"] = copies
        figures.values["core_nats_copies_after_kill_why"] = CORE_NATS_COPIES_WHY
    else:
        figures.zero("duplicate_core_nats", copies)
    if twice:
        figures.values["core_nats_copies_sample"] = dict(twice.most_common(5))
    return Outcome(
        name, store, figures.values, figures.violations, round(time.monotonic() - started, 2)
    )
