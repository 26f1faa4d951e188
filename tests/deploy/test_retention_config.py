"""The consumer and retention settings operators see in the ConfigMaps: accepted by the
services' own validation, and stream sizes that fit the JetStream store holding them."""

from __future__ import annotations

import re

import pytest

from promesa.settings import CommonSettings, Env
from tests.deploy.test_manifests import (
    OVERLAYS,
    SERVICES,
    config_map,
    nats_conf,
    quantity_bytes,
    rendered,
)
from tests.support import TOKENS

SHOWN = (
    "CRM_CONSUMER_ACK_WAIT_SECONDS",
    "CRM_CONSUMER_MAX_DELIVER",
    "CRM_CONSUMER_BATCH",
    "CRM_STREAM_MAX_AGE_DAYS",
    "CRM_STREAM_MAX_BYTES",
    "CRM_INBOX_RETENTION_DAYS",
)


@pytest.mark.parametrize("overlay", OVERLAYS)
@pytest.mark.parametrize("service", SERVICES)
def test_the_retention_settings_are_shown_and_pass_the_services_validation(
    overlay: str, service: str
) -> None:
    data = config_map(rendered(f"overlays/{overlay}"), service)
    assert set(SHOWN) <= set(data)
    # The secrets the Deployment adds: any valid value will do for the validation.
    env = {**data, "CRM_API_TOKENS": TOKENS, "CRM_MONGODB_URI": "mongodb://db:27017"}
    settings = CommonSettings.from_env(service, grpc_port=0, metrics_port=0, env=Env(env))
    assert settings.inbox_retention >= settings.stream_max_age
    assert settings.stream_max_bytes > 0


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_three_streams_fit_in_the_jetstream_store_at_their_size_limit(overlay: str) -> None:
    """Every NATS server holds a copy of every stream (one server in dev, three copies on three
    in prod), so the three limits together must stay below each server's store."""
    objects = rendered(f"overlays/{overlay}")
    store = re.search(r"^\s*max_file_store:\s*(\S+)\s*$", nats_conf(objects), re.MULTILINE)
    assert store
    total = sum(int(config_map(objects, s)["CRM_STREAM_MAX_BYTES"]) for s in SERVICES)
    assert total < quantity_bytes(store[1])
