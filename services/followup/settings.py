"""Settings of the follow-up service: the shared ones plus promise policy, reminders, notifiers
and customer notices."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import timedelta

from followup.adapters.policy_file import service_levels_from_setting
from followup.domain.service_levels import ServiceLevels
from promesa.settings import CommonSettings, ConfigError, Env

GRPC_PORT = 50053
# Events carry promise texts: kept as long as a consumer may need to catch up, no longer.
STREAM_MAX_AGE_DAYS = 90
METRICS_PORT = 9103
FEEDBACK_PORT = 8093  # the customers' satisfaction page (HTTP)


@dataclass(frozen=True)
class WebhookSettings:
    """CRM_WEBHOOK_*: `attempts` POSTs per send (default 3) with `backoff_seconds` doubling
    between them (0.5), each bounded by `timeout_seconds` (5)."""

    url: str
    secret: str = field(repr=False)
    attempts: int
    backoff_seconds: float
    timeout_seconds: float

    @property
    def worst_case(self) -> timedelta:
        """The longest one send can take: every attempt timing out, with the back-offs
        between them (16.5 s with the defaults)."""
        backoffs = sum(self.backoff_seconds * 2**n for n in range(self.attempts - 1))
        return timedelta(seconds=self.attempts * self.timeout_seconds + backoffs)


@dataclass(frozen=True)
class LaneSettings:
    """How each owner-facing notifier (webhook, email) is driven: its own lane, so that a slow
    or dead receiver delays nobody else.

    `concurrency` (CRM_NOTIFIER_CONCURRENCY, default 16): sends in flight at once per notifier
    (and the webhook's connection pool). `breaker_failures` (CRM_NOTIFIER_BREAKER_FAILURES, 5):
    consecutive failed sends that open the notifier's circuit; `breaker_cool_down`
    (CRM_NOTIFIER_BREAKER_COOL_DOWN_SECONDS, 30): how long it stays open before one trial send
    goes through. `send_timeout` (CRM_NOTIFIER_SEND_TIMEOUT_SECONDS, 30): the most one send may
    take for a notifier without its own bound (email; the webhook's is its worst case).
    """

    concurrency: int = 16
    breaker_failures: int = 5
    breaker_cool_down: timedelta = timedelta(seconds=30)
    send_timeout: timedelta = timedelta(seconds=30)


@dataclass(frozen=True)
class SmtpSettings:
    host: str
    port: int
    sender: str
    to_template: str  # e.g. "{recipient}@example.com"
    customer_sender: str = ""  # From of customer notices; `sender` when empty
    username: str = ""
    password: str = field(default="", repr=False)


@dataclass(frozen=True)
class FeedbackSettings:
    """The customer's voice (CRM_FEEDBACK_*): on when CRM_FEEDBACK_SIGNING_KEY is set. A kept
    promise then sends the customer a satisfaction request whose link (HMAC-SHA256 with the
    key) is valid `link_days` (14) and opens the page served on `port` (8093) of `host`
    (CRM_FEEDBACK_HOST, default CRM_GRPC_HOST), reached by customers at `base_url`
    (CRM_FEEDBACK_BASE_URL, default http://localhost:<port>)."""

    signing_key: bytes = field(repr=False)
    host: str
    port: int
    base_url: str
    link_valid_for: timedelta


@dataclass(frozen=True)
class FollowupSettings:
    common: CommonSettings
    max_handoffs: int
    complaint_resolution: timedelta
    win_back_within: timedelta
    team_supervisors: Mapping[str, str]
    escalate_after: timedelta
    escalate_every: timedelta
    scheduler_interval_seconds: float
    reminder_lease: timedelta
    reminder_batch: int
    reminder_max_attempts: int
    reminder_retry_base: timedelta
    webhook: WebhookSettings | None
    lanes: LaneSettings
    smtp: SmtpSettings | None
    customer_notices: bool = False  # tell the customer when a promise is made
    # False: no reminder scheduler in this process (tests that drive it themselves).
    scheduler_enabled: bool = True
    contacts_address: str = "127.0.0.1:50051"
    service_token: str = field(default="", repr=False)
    feedback: FeedbackSettings | None = None  # satisfaction requests and their page
    # The policy file (CRM_SERVICE_LEVELS) as read at boot; None: today's rules (`levels`).
    service_levels: ServiceLevels | None = None

    def supervisor_of(self, team: str) -> str:
        """The team's supervisor; `*` in CRM_TEAM_SUPERVISORS names the one for other teams."""
        return self.team_supervisors.get(team) or self.team_supervisors.get("*", "")

    @property
    def levels(self) -> ServiceLevels:
        """The service levels: the policy file's, else today's rules from the settings."""
        return self.service_levels or ServiceLevels.defaults(
            escalate_after=self.escalate_after,
            escalate_every=self.escalate_every,
            supervisors=self.team_supervisors,
        )

    def with_service_levels(self, path: str) -> FollowupSettings:
        """With the policy file `path` read (a ConfigError naming its line when it is wrong);
        an empty path keeps today's rules. The file's default policy takes what it leaves
        out from CRM_ESCALATE_AFTER_HOURS and CRM_ESCALATE_EVERY_HOURS."""
        levels = service_levels_from_setting(
            path,
            escalate_after=self.escalate_after,
            escalate_every=self.escalate_every,
            supervisors=self.team_supervisors,
        )
        return replace(self, service_levels=levels)

    @classmethod
    def from_env(cls, env: Env | None = None) -> FollowupSettings:
        env = env or Env()
        smtp = _smtp(env)
        token = env.text("CRM_SERVICE_TOKEN", "")
        if smtp is not None and not token:
            # Renegotiated due dates are always told to the customer, by email once SMTP is
            # on, and the address is asked of the contacts service with this token.
            raise ConfigError(
                "CRM_SERVICE_TOKEN is required with CRM_SMTP_HOST: customer notices ask the"
                " contacts service for the address with it (a token of role service there)"
            )
        lease = timedelta(seconds=env.number("CRM_REMINDER_LEASE_SECONDS", 60.0, minimum=1.0))
        webhook = _webhook(env)
        lanes = _lanes(env)
        bounds = [("CRM_NOTIFIER_SEND_TIMEOUT_SECONDS", lanes.send_timeout)]
        if webhook is not None:
            bounds.append(
                ("the webhook's worst case (attempts x timeout + back-offs)", webhook.worst_case)
            )
        for name, worst in bounds:
            if worst >= lease:
                # A send that may outlast the lease would be taken over and sent twice.
                raise ConfigError(
                    f"CRM_REMINDER_LEASE_SECONDS={lease.total_seconds():g} must be longer than"
                    f" {name}, {worst.total_seconds():g} s"
                )
        return cls(
            common=CommonSettings.from_env(
                "followup",
                grpc_port=GRPC_PORT,
                metrics_port=METRICS_PORT,
                stream_max_age_days=STREAM_MAX_AGE_DAYS,
                env=env,
            ),
            max_handoffs=env.integer("CRM_MAX_HANDOFFS", 2, minimum=0, maximum=100),
            complaint_resolution=timedelta(
                hours=env.integer("CRM_COMPLAINT_RESOLUTION_HOURS", 48, minimum=1)
            ),
            win_back_within=timedelta(days=env.integer("CRM_WIN_BACK_DAYS", 7, minimum=1)),
            team_supervisors=parse_supervisors(env.text("CRM_TEAM_SUPERVISORS", "")),
            escalate_after=timedelta(hours=env.number("CRM_ESCALATE_AFTER_HOURS", 4.0)),
            escalate_every=timedelta(
                hours=env.number("CRM_ESCALATE_EVERY_HOURS", 24.0, minimum=0.01)
            ),
            scheduler_interval_seconds=env.number(
                "CRM_SCHEDULER_INTERVAL_SECONDS", 1.0, minimum=0.01
            ),
            reminder_lease=lease,
            reminder_batch=env.integer("CRM_REMINDER_BATCH", 200, minimum=1, maximum=10_000),
            reminder_max_attempts=env.integer(
                "CRM_REMINDER_MAX_ATTEMPTS", 5, minimum=1, maximum=50
            ),
            reminder_retry_base=timedelta(
                seconds=env.number("CRM_REMINDER_RETRY_SECONDS", 30.0, minimum=0.01)
            ),
            webhook=webhook,
            lanes=lanes,
            smtp=smtp,
            customer_notices=env.flag("CRM_CUSTOMER_NOTICES", False),
            scheduler_enabled=env.flag("CRM_SCHEDULER_ENABLED", True),
            contacts_address=_address(env.text("CRM_CONTACTS_ADDRESS", "127.0.0.1:50051")),
            service_token=token,
            feedback=_feedback(env, smtp),
        ).with_service_levels(env.text("CRM_SERVICE_LEVELS", ""))


def parse_supervisors(spec: str) -> Mapping[str, str]:
    """`team=supervisor_id,team=supervisor_id`; raises ConfigError naming the bad entry."""
    found: dict[str, str] = {}
    for raw in spec.split(","):
        entry = raw.strip()
        if not entry:
            continue
        team, sep, supervisor = (part.strip() for part in entry.partition("="))
        if not (sep and team and supervisor):
            raise ConfigError(f"CRM_TEAM_SUPERVISORS: {entry!r} is not team=supervisor_id")
        found[team] = supervisor
    return found


def _webhook(env: Env) -> WebhookSettings | None:
    url = env.text("CRM_WEBHOOK_URL", "")
    if not url:
        return None
    if not url.startswith(("http://", "https://")):
        raise ConfigError(f"CRM_WEBHOOK_URL={url!r} is not an http(s) URL")
    secret = env.text("CRM_WEBHOOK_SIGNING_KEY", "")
    if not secret:
        raise ConfigError("CRM_WEBHOOK_SIGNING_KEY is required with CRM_WEBHOOK_URL (HMAC-SHA256)")
    return WebhookSettings(
        url=url,
        secret=secret,
        attempts=env.integer("CRM_WEBHOOK_ATTEMPTS", 3, minimum=1, maximum=10),
        backoff_seconds=env.number("CRM_WEBHOOK_BACKOFF_SECONDS", 0.5),
        timeout_seconds=env.number("CRM_WEBHOOK_TIMEOUT_SECONDS", 5.0, minimum=0.1),
    )


def _lanes(env: Env) -> LaneSettings:
    return LaneSettings(
        concurrency=env.integer("CRM_NOTIFIER_CONCURRENCY", 16, minimum=1, maximum=1000),
        breaker_failures=env.integer("CRM_NOTIFIER_BREAKER_FAILURES", 5, minimum=1, maximum=1000),
        breaker_cool_down=timedelta(
            seconds=env.number("CRM_NOTIFIER_BREAKER_COOL_DOWN_SECONDS", 30.0, minimum=0.01)
        ),
        send_timeout=timedelta(
            seconds=env.number("CRM_NOTIFIER_SEND_TIMEOUT_SECONDS", 30.0, minimum=0.1)
        ),
    )


def _smtp(env: Env) -> SmtpSettings | None:
    host = env.text("CRM_SMTP_HOST", "")
    if not host:
        return None
    template = env.text("CRM_SMTP_TO", "")
    if "{recipient}" not in template:
        raise ConfigError(
            f"CRM_SMTP_TO={template!r} must contain {{recipient}}, e.g. {{recipient}}@example.com"
        )
    username = env.text("CRM_SMTP_USERNAME", "")
    password = env.text("CRM_SMTP_PASSWORD", "")
    if bool(username) != bool(password):
        raise ConfigError("CRM_SMTP_USERNAME and CRM_SMTP_PASSWORD go together")
    sender = env.text("CRM_SMTP_FROM", "promesa@localhost")
    return SmtpSettings(
        host=host,
        port=env.integer("CRM_SMTP_PORT", 25, minimum=1, maximum=65535),
        sender=sender,
        to_template=template,
        customer_sender=env.text("CRM_NOTICE_FROM", sender),
        username=username,
        password=password,
    )


def _feedback(env: Env, smtp: SmtpSettings | None) -> FeedbackSettings | None:
    key = env.text("CRM_FEEDBACK_SIGNING_KEY", "")
    if not key:
        return None
    if len(key) < 32:
        raise ConfigError("CRM_FEEDBACK_SIGNING_KEY must be at least 32 characters (HMAC-SHA256)")
    if smtp is None:
        raise ConfigError(
            "CRM_FEEDBACK_SIGNING_KEY needs CRM_SMTP_HOST: satisfaction requests go by email"
        )
    port = env.integer("CRM_FEEDBACK_PORT", FEEDBACK_PORT, minimum=0, maximum=65535)
    base_url = env.text("CRM_FEEDBACK_BASE_URL", f"http://localhost:{port}")
    if not base_url.startswith(("http://", "https://")):
        raise ConfigError(f"CRM_FEEDBACK_BASE_URL={base_url!r} is not an http(s) URL")
    return FeedbackSettings(
        signing_key=key.encode("utf-8"),
        host=env.text("CRM_FEEDBACK_HOST", env.text("CRM_GRPC_HOST", "0.0.0.0")),
        port=port,
        base_url=base_url,
        link_valid_for=timedelta(
            days=env.number("CRM_FEEDBACK_LINK_DAYS", 14.0, minimum=0.001, maximum=365.0)
        ),
    )


def _address(value: str) -> str:
    """`host:port` of a gRPC server, as CRM_CONTACTS_ADDRESS names the contacts service."""
    host, sep, port = value.rpartition(":")
    if not (sep and host and port.isdigit() and 0 < int(port) < 65536):
        raise ConfigError(f"CRM_CONTACTS_ADDRESS={value!r} is not host:port")
    return value
