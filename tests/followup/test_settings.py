"""Follow-up settings: customer notices and the contacts service, validated at boot."""

from __future__ import annotations

from datetime import timedelta

import pytest

from followup.settings import FollowupSettings
from promesa.settings import ConfigError, Env

BASE = {"CRM_API_TOKENS": "t=svc:service"}
SMTP = {"CRM_SMTP_HOST": "mail.example", "CRM_SMTP_TO": "{recipient}@staff.example"}


def settings(**env: str) -> FollowupSettings:
    return FollowupSettings.from_env(Env({**BASE, **env}))


def test_customer_notices_are_optional_and_the_contacts_service_has_a_local_default() -> None:
    s = settings()
    assert s.customer_notices is False and s.smtp is None
    assert s.contacts_address == "127.0.0.1:50051" and s.service_token == ""
    on = settings(CRM_CUSTOMER_NOTICES="true", CRM_CONTACTS_ADDRESS="contacts:50051")
    assert on.customer_notices and on.contacts_address == "contacts:50051"


def test_email_needs_a_service_token_to_ask_for_customer_addresses() -> None:
    with pytest.raises(ConfigError, match="CRM_SERVICE_TOKEN"):
        settings(**SMTP)
    s = settings(**SMTP, CRM_SERVICE_TOKEN="s3cret", CRM_NOTICE_FROM="care@shop.example")
    assert s.smtp is not None and s.smtp.customer_sender == "care@shop.example"
    assert "s3cret" not in repr(s)


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"CRM_CONTACTS_ADDRESS": "contacts"}, "CRM_CONTACTS_ADDRESS"),
        ({"CRM_CUSTOMER_NOTICES": "maybe"}, "CRM_CUSTOMER_NOTICES"),
        ({**SMTP, "CRM_SERVICE_TOKEN": "x", "CRM_SMTP_USERNAME": "u"}, "CRM_SMTP_PASSWORD"),
        ({"CRM_NOTIFIER_CONCURRENCY": "0"}, "CRM_NOTIFIER_CONCURRENCY"),
        ({"CRM_NOTIFIER_BREAKER_FAILURES": "many"}, "CRM_NOTIFIER_BREAKER_FAILURES"),
        ({"CRM_NOTIFIER_BREAKER_COOL_DOWN_SECONDS": "0"}, "CRM_NOTIFIER_BREAKER_COOL_DOWN_SECONDS"),
        ({"CRM_NOTIFIER_SEND_TIMEOUT_SECONDS": "90"}, "CRM_REMINDER_LEASE_SECONDS"),
    ],
)
def test_a_bad_setting_is_named(env: dict[str, str], named: str) -> None:
    with pytest.raises(ConfigError, match=named):
        settings(**env)


def test_notifier_lanes_have_documented_defaults_and_a_send_never_outlasts_the_lease() -> None:
    s = settings()
    assert (s.lanes.concurrency, s.lanes.breaker_failures) == (16, 5)
    assert s.lanes.breaker_cool_down == timedelta(seconds=30)
    assert s.lanes.send_timeout == timedelta(seconds=30)

    hook = {"CRM_WEBHOOK_URL": "https://hooks.example/r", "CRM_WEBHOOK_SIGNING_KEY": "k"}
    webhook = settings(**hook).webhook
    assert webhook is not None and webhook.worst_case == timedelta(seconds=16.5)  # 3 x 5 + 1.5
    # Every attempt timing out would outlast the lease: the reminder would be sent twice.
    with pytest.raises(ConfigError, match=r"CRM_REMINDER_LEASE_SECONDS=10 .* worst case"):
        settings(**hook, CRM_REMINDER_LEASE_SECONDS="10", CRM_NOTIFIER_SEND_TIMEOUT_SECONDS="5")
