"""The consumer and retention settings: small batches and an ack wait chosen from the measured
handling time by default, and an inbox retention that can never be shorter than the span in
which a second copy of an event may still arrive; every mistake named by its variable."""

from __future__ import annotations

from datetime import timedelta

import pytest

from promesa.bus import DUPLICATE_WINDOW_SECONDS, longest_redelivery
from promesa.settings import CommonSettings, ConfigError, Env
from tests.support import TOKENS


def load(*, stream_max_age_days: int = 0, **environ: str) -> CommonSettings:
    return load_env(environ, stream_max_age_days)


def load_env(environ: dict[str, str], stream_max_age_days: int = 0) -> CommonSettings:
    return CommonSettings.from_env(
        "contacts",
        grpc_port=50051,
        metrics_port=9101,
        stream_max_age_days=stream_max_age_days,
        env=Env({"CRM_API_TOKENS": TOKENS, **environ}),
    )


def test_consumers_fetch_fifty_at_most_and_wait_ten_seconds_for_an_ack_by_default() -> None:
    s = load()
    assert (s.consumer_batch, s.consumer_ack_wait_seconds, s.consumer_max_deliver) == (50, 10, 5)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("CRM_CONSUMER_BATCH", "0"),
        ("CRM_CONSUMER_BATCH", "many"),
        ("CRM_CONSUMER_ACK_WAIT_SECONDS", "0.5"),
        ("CRM_CONSUMER_ACK_WAIT_SECONDS", "7200"),
        ("CRM_STREAM_MAX_BYTES", "-1"),
        ("CRM_INBOX_RETENTION_DAYS", "0"),
        ("CRM_INBOX_PRUNE_INTERVAL_SECONDS", "0"),
    ],
)
def test_a_bad_value_is_named_by_its_variable(name: str, value: str) -> None:
    with pytest.raises(ConfigError, match=name):
        load_env({name: value})


def test_a_stream_has_no_size_limit_unless_one_is_set() -> None:
    assert load().stream_max_bytes == 0
    assert load(CRM_STREAM_MAX_BYTES="1073741824").stream_max_bytes == 2**30


def test_the_inbox_keeps_rows_thirty_days_or_the_stream_max_age_when_longer() -> None:
    assert load().inbox_retention == timedelta(days=30)
    assert load(stream_max_age_days=90).inbox_retention == timedelta(days=90)
    assert load(CRM_INBOX_RETENTION_DAYS="7").inbox_retention == timedelta(days=7)


def test_an_inbox_retention_shorter_than_the_stream_max_age_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"CRM_INBOX_RETENTION_DAYS=30 .*CRM_STREAM_MAX_AGE"):
        load(CRM_STREAM_MAX_AGE_DAYS="60", CRM_INBOX_RETENTION_DAYS="30")


def test_an_inbox_retention_shorter_than_the_longest_redelivery_is_refused() -> None:
    """An hour of ack wait and 100 deliveries can redeliver an event for about four days."""
    span = DUPLICATE_WINDOW_SECONDS + longest_redelivery(3600.0, 100)
    assert span > timedelta(days=4).total_seconds()
    with pytest.raises(ConfigError, match=r"CRM_INBOX_RETENTION_DAYS=4 .*redelivery"):
        load(
            CRM_CONSUMER_ACK_WAIT_SECONDS="3600",
            CRM_CONSUMER_MAX_DELIVER="100",
            CRM_INBOX_RETENTION_DAYS="4",
        )
    assert load(
        CRM_CONSUMER_ACK_WAIT_SECONDS="3600",
        CRM_CONSUMER_MAX_DELIVER="100",
        CRM_INBOX_RETENTION_DAYS="5",
    ).inbox_retention == timedelta(days=5)
