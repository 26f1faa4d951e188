"""The composition root of the follow-up service: settings in, a runnable service out."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta

import structlog

from crm.followup.v1 import followup_service_pb2_grpc as followup_grpc
from followup.adapters import event_codec
from followup.adapters.contacts_client import GrpcContactDirectory
from followup.adapters.notice_channels import EmailNoticeChannel
from followup.adapters.notifiers import EmailNotifier, WebhookNotifier
from followup.adapters.reminder_feed import NatsReminderFeed
from followup.adapters.sqlite_store import SqlitePromiseStore
from followup.domain.reminders import ReminderPolicy
from followup.domain.service_levels import SUPERVISOR
from followup.entrypoints import contacts_consumer, interactions_consumer
from followup.entrypoints.feedback_page import FeedbackPage
from followup.entrypoints.grpc_api import SERVICE_NAME, FollowupServicer
from followup.metrics import PromiseGauges
from followup.noticing import CustomerNotifier, FeedbackLinks
from followup.ports import NoticeChannel, Notifier, PromiseStore
from followup.reminding import NATS, ReminderScheduler, WakingWrites
from followup.settings import FollowupSettings
from followup.usecases import PromiseCommands, PromiseQueries, PromiseReactions
from followup.usecases.commands import SatisfactionSurvey
from followup.usecases.planning import PromisePlanner
from promesa import sqlite_store
from promesa.bus import FOLLOWUP_STREAM
from promesa.clock import Clock, SystemClock
from promesa.erasure import StreamEraser
from promesa.event_catalog import FOLLOWUP
from promesa.runtime import Runtime, ServiceParts, connect_messaging
from promesa.workers import Alarm, Timed

log = structlog.get_logger(__name__)


def notifiers_for(settings: FollowupSettings) -> list[Notifier]:
    found: list[Notifier] = []
    if settings.webhook is not None:
        found.append(WebhookNotifier(settings.webhook, concurrency=settings.lanes.concurrency))
    if settings.smtp is not None:
        found.append(EmailNotifier(settings.smtp))
    return found


def deadlines_for(settings: FollowupSettings) -> dict[str, timedelta]:
    """The longest one send may take, for the notifiers that know theirs (the webhook: every
    attempt timing out, with the back-offs); the others get CRM_NOTIFIER_SEND_TIMEOUT_SECONDS."""
    if settings.webhook is None:
        return {}
    return {WebhookNotifier.name: settings.webhook.worst_case}


def notice_channels_for(settings: FollowupSettings) -> list[NoticeChannel]:
    """Channels a customer notice can go out on: email once SMTP is set up; others have no
    gateway yet, so a contact who consented only to those is recorded as not reachable."""
    return [EmailNoticeChannel(settings.smtp)] if settings.smtp is not None else []


async def open_store(settings: FollowupSettings, clock: Clock) -> PromiseStore:
    """The adapter CRM_STORE names; each one implements the same port."""
    common = settings.common
    if common.store == "mongodb":
        from followup.adapters.mongo_store import MongoPromiseStore

        store: PromiseStore = await MongoPromiseStore.open(
            common.mongodb_uri, common.mongodb_database, event_codec.encode, clock
        )
        return store
    return await sqlite_store.opened(SqlitePromiseStore, common, event_codec.encode, clock)


@dataclass(frozen=True)
class FollowupApp:
    """The running service and the parts it was wired from, by name (tests and tools)."""

    runtime: Runtime
    store: PromiseStore
    commands: PromiseCommands
    queries: PromiseQueries
    reactions: PromiseReactions
    scheduler: ReminderScheduler
    customer_notifier: CustomerNotifier
    feedback_page: FeedbackPage | None = None  # set when CRM_FEEDBACK_SIGNING_KEY is


async def build(
    settings: FollowupSettings,
    clock: Clock | None = None,
    *,
    extra_notifiers: Sequence[Notifier] = (),
) -> FollowupApp:
    """Opens the store and connects to NATS; nothing connects at import. `extra_notifiers`
    lets tests watch every delivery."""
    clock = clock or SystemClock()
    common = settings.common
    if "*" not in settings.team_supervisors and not settings.levels.recipient("*", SUPERVISOR):
        # Said once at boot: an overdue promise of such a team is never escalated.
        log.warning(
            "no_default_supervisor",
            teams_with_supervisor=sorted(settings.team_supervisors),
            hint="set CRM_TEAM_SUPERVISORS=*=<supervisor_id> so every team's promises escalate",
        )
    store = await open_store(settings, clock)
    bus, relay = await connect_messaging(common, store)
    # Every commit that plans a reminder rings the alarm: the scheduler wakes for it.
    alarm = Alarm()
    writes = WakingWrites(store, relay.notify, alarm)

    own_notifiers = notifiers_for(settings)
    notifiers = [*own_notifiers, *extra_notifiers]
    levels = settings.levels  # the policy file's, or today's rules
    policy = ReminderPolicy(
        escalate_after=settings.escalate_after,
        escalate_every=settings.escalate_every,
        max_attempts=settings.reminder_max_attempts,
        retry_base=settings.reminder_retry_base,
        notifiers=(NATS, *(n.name for n in notifiers)),
        levels=levels,
    )

    def supervisor_of(team: str) -> str:
        return levels.recipient(team, SUPERVISOR) or settings.supervisor_of(team)

    planner = PromisePlanner(
        policy,
        supervisor_of,
        max_handoffs=settings.max_handoffs,
        notify_when_made=settings.customer_notices,
    )
    queries = PromiseQueries(store, clock, NatsReminderFeed(bus), policy=policy)
    commands = PromiseCommands(
        store,
        writes,
        clock,
        queries=queries,
        planner=planner,
        promise_horizon=common.promise_horizon,
        ask_satisfaction=settings.feedback is not None,
    )
    reactions = PromiseReactions(
        store,
        writes,
        clock,
        planner=planner,
        streams=StreamEraser(bus, relay, FOLLOWUP_STREAM, FOLLOWUP),
        complaint_resolution=settings.complaint_resolution,
        win_back_within=settings.win_back_within,
    )

    contacts = GrpcContactDirectory(settings.contacts_address, settings.service_token)
    feedback = settings.feedback
    customer_notifier = CustomerNotifier(
        store,
        clock,
        contacts=contacts,
        channels=notice_channels_for(settings),
        policy=policy,
        links=FeedbackLinks(feedback.signing_key, feedback.base_url, feedback.link_valid_for)
        if feedback is not None
        else None,
    )
    # The customers' satisfaction page, on its own port beside gRPC, stopped with the service.
    feedback_page = (
        FeedbackPage(
            SatisfactionSurvey(store, writes, clock, key=feedback.signing_key),
            feedback.host,
            feedback.port,
        )
        if feedback is not None
        else None
    )
    scheduler = ReminderScheduler(
        store,
        clock,
        policy=policy,
        notifiers=notifiers,
        notices=customer_notifier,
        lease=settings.reminder_lease,
        batch=settings.reminder_batch,
        lanes=settings.lanes,
        deadlines=deadlines_for(settings),
        writes=writes,
    )

    # The scheduler sleeps until the next reminder falls due (the index says when) or a
    # commit here plans an earlier one; at least every interval, for other replicas' plans.
    interval = settings.scheduler_interval_seconds
    reminding = Timed(
        common.service,
        "reminder_scheduler",
        lambda: scheduler.due(interval),
        clock,
        alarm,
        longest=interval,
    )
    servicer = FollowupServicer(commands, queries, clock)

    async def close() -> None:
        """Last in the shutdown sequence: the sweeps have stopped; the sends still in flight
        finish (bounded by their lanes' deadlines) and are recorded before the store closes."""
        await scheduler.close()
        for notifier in own_notifiers:
            if isinstance(notifier, WebhookNotifier):
                await notifier.aclose()
        await contacts.close()
        await store.close()

    parts = ServiceParts(
        grpc_service_names=[SERVICE_NAME],
        register=lambda server: followup_grpc.add_FollowupServiceServicer_to_server(
            servicer, server
        ),
        relay=relay,
        stream=FOLLOWUP_STREAM,
        dead_letters=store.record_dead_letter,
        store=store,
        clock=clock,
        subscriptions=[
            interactions_consumer.subscription(reactions),
            contacts_consumer.subscription(reactions),
        ],
        workers=[
            *([reminding] if settings.scheduler_enabled else []),
            *([feedback_page] if feedback_page is not None else []),
        ],
        gauges=[PromiseGauges(store, clock)],
        close_store=close,
    )
    return FollowupApp(
        runtime=Runtime(common, bus, parts),
        store=store,
        commands=commands,
        queries=queries,
        reactions=reactions,
        scheduler=scheduler,
        customer_notifier=customer_notifier,
        feedback_page=feedback_page,
    )
