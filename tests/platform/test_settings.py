"""The shared settings, read once at boot: who may call (static tokens, an identity provider),
where the service listens, how it reaches NATS; every mistake named by its variable, and no
secret in a message or a repr."""

from __future__ import annotations

import json
from pathlib import Path

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from promesa.auth import Identity, JwtSettings, Role
from promesa.settings import CommonSettings, ConfigError, Env

ISSUER = "https://id.example.test/realms/promesa"
JWT_ENV = {
    "CRM_JWT_ISSUER": ISSUER,
    "CRM_JWT_AUDIENCE": "promesa-api",
    "CRM_JWT_JWKS_URL": "https://id.example.test/realms/promesa/certs",
}


def load(**environ: str) -> CommonSettings:
    return CommonSettings.from_env("contacts", grpc_port=50051, metrics_port=9101, env=Env(environ))


def jwks_file(path: Path, *keys: dict[str, object]) -> Path:
    path.write_text(json.dumps({"keys": list(keys)}))
    return path


def signing_jwk(kid: str) -> dict[str, object]:
    public = ec.generate_private_key(ec.SECP256R1()).public_key()
    data: dict[str, object] = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(public))
    return {**data, "kid": kid, "alg": "ES256", "use": "sig"}


# ---------------------------------------------------------------------------------------------
# Who may call


def test_static_tokens_alone_are_enough() -> None:
    settings = load(CRM_API_TOKENS="t1=agent-ana:agent:madrid")

    assert settings.api_tokens.static == {"t1": Identity("agent-ana", Role.AGENT, "madrid")}
    assert settings.api_tokens.jwt is None


def test_an_identity_provider_alone_is_enough() -> None:
    settings = load(**JWT_ENV, CRM_JWT_ROLE_CLAIM="realm_access.roles", CRM_JWT_LEEWAY_SECONDS="5")

    assert settings.api_tokens.static == {}
    assert settings.api_tokens.jwt == JwtSettings(
        issuer=ISSUER,
        audience="promesa-api",
        jwks_url=JWT_ENV["CRM_JWT_JWKS_URL"],
        role_claim="realm_access.roles",
        leeway_seconds=5.0,
    )


def test_with_neither_the_service_refuses_to_start_naming_both_ways() -> None:
    with pytest.raises(ConfigError, match="CRM_API_TOKENS is empty and CRM_JWT_ISSUER is not set"):
        load()


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({"CRM_JWT_AUDIENCE": "promesa-api"}, "CRM_JWT_AUDIENCE is set but CRM_JWT_ISSUER is not"),
        ({"CRM_JWT_ISSUER": ISSUER}, "CRM_JWT_AUDIENCE is required"),
        (
            {"CRM_JWT_ISSUER": ISSUER, "CRM_JWT_AUDIENCE": "a"},
            "exactly one of CRM_JWT_JWKS_URL",
        ),
        (
            {**JWT_ENV, "CRM_JWT_JWKS_FILE": "/etc/jwks.json"},
            "exactly one of CRM_JWT_JWKS_URL",
        ),
        (
            {**JWT_ENV, "CRM_JWT_JWKS_URL": "http://id.example.test/certs"},
            "CRM_JWT_JWKS_URL='http://id.example.test/certs' must be https",
        ),
        ({**JWT_ENV, "CRM_JWT_JWKS_URL": "file:///etc/passwd"}, "must be https"),
        ({**JWT_ENV, "CRM_JWT_LEEWAY_SECONDS": "3600"}, "CRM_JWT_LEEWAY_SECONDS=3600.0 is above"),
        ({**JWT_ENV, "CRM_JWT_LEEWAY_SECONDS": "nan"}, "CRM_JWT_LEEWAY_SECONDS='nan' is not a"),
        ({**JWT_ENV, "CRM_JWT_JWKS_CACHE_SECONDS": "0"}, "CRM_JWT_JWKS_CACHE_SECONDS=0.0 is below"),
    ],
)
def test_an_identity_provider_setting_that_cannot_work_names_its_variable(
    environ: dict[str, str], message: str
) -> None:
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(".", r"\.")):
        load(CRM_API_TOKENS="t1=agent-ana:agent", **environ)


def test_http_to_a_sidecar_on_this_machine_is_allowed() -> None:
    for url in ("http://127.0.0.1:8080/certs", "http://localhost/certs", "http://[::1]/certs"):
        settings = load(**{**JWT_ENV, "CRM_JWT_JWKS_URL": url})
        assert settings.api_tokens.jwt is not None
        assert settings.api_tokens.jwt.jwks_url == url


def test_a_jwks_file_is_read_at_boot(tmp_path: Path) -> None:
    path = jwks_file(tmp_path / "jwks.json", signing_jwk("k1"))
    environ = {**JWT_ENV, "CRM_JWT_JWKS_URL": "", "CRM_JWT_JWKS_FILE": str(path)}

    settings = load(**environ)

    assert settings.api_tokens.jwt is not None
    assert settings.api_tokens.jwt.jwks_file == path


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "No such file"),
        ("not json", "not a JWKS"),
        (json.dumps({"keys": []}), "not a JWKS"),
        (json.dumps({"keys": [{**signing_jwk(""), "kid": ""}]}), "no signing key with a key id"),
        (json.dumps({"keys": [{"kty": "oct", "k": "c2VjcmV0", "kid": "h"}]}), "no signing key"),
    ],
)
def test_a_jwks_file_that_holds_no_usable_key_stops_the_boot(
    tmp_path: Path, content: str | None, message: str
) -> None:
    path = tmp_path / "jwks.json"
    if content is not None:
        path.write_text(content)
    environ = {**JWT_ENV, "CRM_JWT_JWKS_URL": "", "CRM_JWT_JWKS_FILE": str(path)}

    with pytest.raises(ConfigError, match=f"CRM_JWT_JWKS_FILE={path}: .*{message}"):
        load(**environ)


# ---------------------------------------------------------------------------------------------
# Where it listens


def test_images_listen_on_every_interface_by_default() -> None:
    settings = load(CRM_API_TOKENS="t1=agent-ana:agent")

    assert (settings.grpc_host, settings.metrics_host) == ("0.0.0.0", "0.0.0.0")


def test_metrics_listen_where_grpc_does_unless_told_otherwise() -> None:
    loopback = load(CRM_API_TOKENS="t1=a:agent", CRM_GRPC_HOST="127.0.0.1")
    apart = load(CRM_API_TOKENS="t1=a:agent", CRM_GRPC_HOST="127.0.0.1", CRM_METRICS_HOST="::")

    assert loopback.metrics_host == "127.0.0.1"
    assert apart.metrics_host == "::"


# ---------------------------------------------------------------------------------------------
# NATS


def test_a_service_reaches_nats_as_its_own_user() -> None:
    settings = load(CRM_API_TOKENS="t1=a:agent", CRM_NATS_URL="nats://contacts:s3cret@nats:4222")

    assert settings.nats_url == "nats://contacts:s3cret@nats:4222"
    assert settings.nats_address == "nats://nats:4222"
    assert "s3cret" not in repr(settings)
    assert "t1" not in repr(settings)


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("http://contacts:s3cret@nats:4222", "is not a NATS URL"),
        ("nats://contacts:s3cret@nats:port", "is not a URL"),
        ("nats://contacts@nats:4222", "names NATS user 'contacts' without a password"),
        ("nats://", "is not a NATS URL"),
    ],
)
def test_a_bad_nats_url_is_named_without_its_password(url: str, message: str) -> None:
    with pytest.raises(ConfigError, match=f"CRM_NATS_URL.*{message}") as refused:
        load(CRM_API_TOKENS="t1=a:agent", CRM_NATS_URL=url)

    assert "s3cret" not in str(refused.value)
