"""Follow-up settings: customer notices and the contacts service, validated at boot."""

from __future__ import annotations

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
    ],
)
def test_a_bad_setting_is_named(env: dict[str, str], named: str) -> None:
    with pytest.raises(ConfigError, match=named):
        settings(**env)
