"""OIDC/JWT access tokens from the organisation's identity provider, end to end through the
real interceptor: tokens signed with keys the tests generate, the provider's JWKS served over
HTTP on loopback, a tiny gRPC server whose one method answers who is calling."""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time
from collections.abc import AsyncIterator, Iterator, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import grpc
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from google.protobuf import wrappers_pb2

from devtools.listening import free_port
from promesa.auth import (
    ApiTokens,
    Identity,
    JwtSettings,
    JwtVerifier,
    Role,
    SigningKeys,
    current_identity,
    read_jwks,
)
from promesa.errors import UnauthenticatedError
from promesa.interceptors import CallInterceptor, Context

ISSUER = "https://id.example.test/realms/promesa"
AUDIENCE = "promesa-api"
METHOD = "/promesa.test.Who/Me"


@dataclass
class SigningKey:
    kid: str
    private: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey
    algorithm: str

    def jwk(self) -> dict[str, Any]:
        public = self.private.public_key()
        algorithm = jwt.algorithms.get_default_algorithms()[self.algorithm]
        data: dict[str, Any] = json.loads(algorithm.to_jwk(public))
        return {**data, "kid": self.kid, "use": "sig", "alg": self.algorithm}

    def public_pem(self) -> bytes:
        return self.private.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )


def ec_key(kid: str) -> SigningKey:
    return SigningKey(kid, ec.generate_private_key(ec.SECP256R1()), "ES256")


KEY = ec_key("key-1")
OTHER_KEY = ec_key("key-1")  # same key id, another key: a forger's
RSA_KEY = SigningKey("rsa-1", rsa.generate_private_key(65537, 2048), "RS256")


def claims(**overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    found: dict[str, Any] = {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": "agent-ana",
        "role": "agent",
        "team": "madrid",
        "iat": now,
        "exp": now + 300,
    }
    found.update(overrides)
    return {k: v for k, v in found.items() if v is not None}


def token(key: SigningKey = KEY, /, **overrides: Any) -> str:
    return jwt.encode(claims(**overrides), key.private, key.algorithm, headers={"kid": key.kid})


@dataclass
class Jwks:
    """The identity provider's JWKS endpoint: what it publishes, and how often it was asked."""

    keys: list[SigningKey]
    url: str = ""
    requests: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def body(self) -> bytes:
        with self.lock:
            self.requests += 1
            return json.dumps({"keys": [k.jwk() for k in self.keys]}).encode()


@pytest.fixture(scope="module")
def provider() -> Iterator[Jwks]:
    """One JWKS endpoint for the module; `jwks` resets what it publishes for each test."""
    published = Jwks([])

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = published.body()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    published.url = f"http://127.0.0.1:{server.server_address[1]}/protocol/openid-connect/certs"
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    yield published
    server.shutdown()
    server.server_close()
    thread.join()


@pytest.fixture
def jwks(provider: Jwks) -> Jwks:
    provider.keys = [KEY, RSA_KEY]
    provider.requests = 0
    return provider


def trusting(url: str, **overrides: Any) -> JwtSettings:
    return JwtSettings(**{"issuer": ISSUER, "audience": AUDIENCE, "jwks_url": url, **overrides})


@dataclass
class WhoServer:
    """A gRPC server with the platform's interceptor and one method that needs a token."""

    channel: grpc.aio.Channel

    async def who(self, bearer: str) -> str:
        call = self.channel.unary_unary(
            METHOD,
            request_serializer=wrappers_pb2.StringValue.SerializeToString,
            response_deserializer=wrappers_pb2.StringValue.FromString,
        )
        reply = await call(
            wrappers_pb2.StringValue(),
            metadata=(("authorization", f"Bearer {bearer}"),),
            timeout=10,
        )
        return str(reply.value)

    async def refusal(self, bearer: str) -> grpc.aio.AioRpcError:
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await self.who(bearer)
        return refused.value


async def me(request: wrappers_pb2.StringValue, context: Context) -> wrappers_pb2.StringValue:
    who = current_identity()
    return wrappers_pb2.StringValue(value=f"{who.subject}|{who.role.value}|{who.team}")


@contextlib.asynccontextmanager
async def who_server(tokens: ApiTokens) -> AsyncIterator[WhoServer]:
    server = grpc.aio.server(interceptors=[CallInterceptor("test", tokens)])
    handler = grpc.unary_unary_rpc_method_handler(
        me,
        request_deserializer=wrappers_pb2.StringValue.FromString,
        response_serializer=wrappers_pb2.StringValue.SerializeToString,
    )
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler("promesa.test.Who", {"Me": handler}),)
    )
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    try:
        yield WhoServer(channel)
    finally:
        await channel.close(None)
        await server.stop(None)


STATIC = {"static-token": Identity("svc-followup", Role.SERVICE)}


@pytest.fixture
async def server(jwks: Jwks) -> AsyncIterator[WhoServer]:
    async with who_server(ApiTokens(STATIC, trusting(jwks.url))) as running:
        yield running


# ---------------------------------------------------------------------------------------------
# Accepted


async def test_a_valid_access_token_acts_as_its_subject_role_and_team(server: WhoServer) -> None:
    assert await server.who(token()) == "agent-ana|agent|madrid"


async def test_rsa_signed_tokens_are_accepted_too(server: WhoServer) -> None:
    assert await server.who(token(RSA_KEY, sub="sup-sam", role="supervisor")) == (
        "sup-sam|supervisor|madrid"
    )


async def test_static_tokens_keep_working_beside_access_tokens(server: WhoServer) -> None:
    assert await server.who("static-token") == "svc-followup|service|"


async def test_an_expiry_within_the_leeway_is_forgiven(server: WhoServer) -> None:
    # The provider's clock and ours differ by seconds; the default leeway is 30 s.
    assert await server.who(token(exp=int(time.time()) - 5)) == "agent-ana|agent|madrid"


async def test_claims_are_read_where_the_provider_puts_them(jwks: Jwks) -> None:
    # Given a provider with its own claim layout: roles nested in a list among its own, the
    # team under a namespaced claim (a URL, dots and all), the user's name as the subject
    settings = trusting(
        jwks.url,
        subject_claim="preferred_username",
        role_claim="realm_access.roles",
        team_claim="https://promesa.example/team",
    )
    signed = token(
        sub="f81d4fae-7dec",
        role=None,
        team=None,
        preferred_username="ana",
        realm_access={"roles": ["offline_access", "supervisor", "uma_authorization"]},
        **{"https://promesa.example/team": ["lisbon"]},
    )

    async with who_server(ApiTokens({}, settings)) as server:
        assert await server.who(signed) == "ana|supervisor|lisbon"


async def test_a_supervisor_of_every_team_says_so_with_a_star(server: WhoServer) -> None:
    assert await server.who(token(sub="lead", role="supervisor", team="*")) == ("lead|supervisor|")


# ---------------------------------------------------------------------------------------------
# Refused


def unsigned(**overrides: Any) -> str:
    return jwt.encode(claims(**overrides), "", "none", headers={"kid": KEY.kid})


def confused() -> str:
    """HS256 with the provider's public key as the secret: verifies wherever a verifier lets
    the token choose its algorithm."""
    import base64
    import hashlib
    import hmac

    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    header = b64(json.dumps({"alg": "HS256", "typ": "JWT", "kid": RSA_KEY.kid}).encode())
    body = b64(json.dumps(claims()).encode())
    mac = hmac.new(RSA_KEY.public_pem(), f"{header}.{body}".encode(), hashlib.sha256).digest()
    return f"{header}.{body}.{b64(mac)}"


REFUSALS: Mapping[str, tuple[Any, str]] = {
    "wrong issuer": (lambda: token(iss="https://evil.example.test"), "another issuer"),
    "wrong audience": (lambda: token(aud="another-api"), "another audience"),
    "expired": (lambda: token(exp=int(time.time()) - 120), "expired"),
    "not yet valid": (lambda: token(nbf=int(time.time()) + 600), "not valid"),
    "no expiry": (lambda: token(exp=None), "exp"),
    "bad signature": (lambda: token(OTHER_KEY), "signature"),
    "tampered claims": (
        lambda: ".".join(
            [token().split(".")[0], token(role="supervisor").split(".")[1], token().split(".")[2]]
        ),
        "signature",
    ),
    "alg none": (unsigned, "algorithm 'none' is not accepted"),
    "alg none without signature": (
        lambda: unsigned().rstrip(".") + ".",
        "algorithm 'none' is not accepted",
    ),
    "HS256 with the public key": (confused, "algorithm 'HS256' is not accepted"),
    "unknown kid": (lambda: token(ec_key("key-9")), "signing key (kid)"),
    "no kid": (
        lambda: jwt.encode(claims(), KEY.private, "ES256"),
        "names no signing key",
    ),
    "unknown role": (lambda: token(role="admin"), "role claim must hold one of"),
    "no role": (lambda: token(role=None), "role claim must hold one of"),
    "two roles": (lambda: token(role=["agent", "supervisor"]), "several found"),
    "no subject": (lambda: token(sub=None), "no usable subject"),
    "a subject with control characters": (lambda: token(sub="ana\x00"), "no usable subject"),
    "supervisor without a team": (
        lambda: token(role="supervisor", team=None),
        "must name the team",
    ),
    "agent of every team": (lambda: token(team="*"), "only a supervisor"),
    "several teams": (lambda: token(team=["madrid", "lisbon"]), "not one team"),
    "not a JWT": (lambda: "a.b.c", "not a well-formed JWT"),
    "not a known static token": (lambda: "dev-token", "unknown bearer token"),
}


@pytest.mark.parametrize("case", REFUSALS)
async def test_a_token_that_is_not_trustworthy_is_unauthenticated(
    server: WhoServer, case: str
) -> None:
    make, reason = REFUSALS[case]

    refused = await server.refusal(make())

    assert refused.code() == grpc.StatusCode.UNAUTHENTICATED
    assert reason in (refused.details() or ""), refused.details()


async def test_with_no_keys_to_check_against_the_call_is_unavailable_not_refused() -> None:
    # Given a provider whose JWKS endpoint does not answer
    settings = trusting(f"http://127.0.0.1:{free_port()}/certs")

    async with who_server(ApiTokens({}, settings)) as server:
        refused = await server.refusal(token())

    # Then the caller is told to try again, not that its token is bad
    assert refused.code() == grpc.StatusCode.UNAVAILABLE


# ---------------------------------------------------------------------------------------------
# The provider's keys: fetched off the event loop, cached, fetched again on rotation


class ManualClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_keys_are_fetched_once_and_then_served_from_the_cache(
    server: WhoServer, jwks: Jwks
) -> None:
    for _ in range(5):
        await server.who(token())
    await server.refusal(token(ec_key("key-9")))  # an unknown key id right after a fetch

    assert jwks.requests == 1


async def test_a_rotated_key_is_fetched_when_a_token_first_names_it(jwks: Jwks) -> None:
    clock = ManualClock()
    settings = trusting(jwks.url)
    verifier = JwtVerifier(settings, SigningKeys(settings, clock=clock))
    assert (await verifier.identify(token())).subject == "agent-ana"

    # When the provider starts signing with a new key
    new_key = ec_key("key-2")
    jwks.keys = [KEY, new_key]
    clock.now += 11  # past the minimum interval between fetches

    # Then its first token fetches the keys again, once
    assert (await verifier.identify(token(new_key))).subject == "agent-ana"
    assert (await verifier.identify(token(new_key))).subject == "agent-ana"
    assert jwks.requests == 2


async def test_random_key_ids_do_not_make_the_service_hammer_the_provider(jwks: Jwks) -> None:
    clock = ManualClock()
    settings = trusting(jwks.url)
    verifier = JwtVerifier(settings, SigningKeys(settings, clock=clock))

    for n in range(20):
        clock.now += 1
        with pytest.raises(UnauthenticatedError):
            await verifier.identify(token(ec_key(f"random-{n}")))

    assert jwks.requests == 2  # the first fetch, then one more after ten seconds


async def test_keys_are_fetched_again_once_the_cache_expires(jwks: Jwks) -> None:
    clock = ManualClock()
    settings = trusting(jwks.url, jwks_cache_seconds=60.0)
    verifier = JwtVerifier(settings, SigningKeys(settings, clock=clock))
    await verifier.identify(token())

    # When the provider withdraws a key and the cache expires
    jwks.keys = [RSA_KEY]
    clock.now += 61

    # Then tokens signed with the withdrawn key are refused
    with pytest.raises(UnauthenticatedError, match="signing key"):
        await verifier.identify(token())
    assert jwks.requests == 2


async def test_when_the_provider_is_down_the_keys_already_known_stay_in_use() -> None:
    clock = ManualClock()
    settings = trusting("https://id.example.test/certs", jwks_cache_seconds=60.0)
    answers: list[Mapping[str, jwt.PyJWK] | Exception] = [
        {KEY.kid: jwt.PyJWK(KEY.jwk())},
        ConnectionError("provider down"),
    ]

    def fetch() -> Mapping[str, jwt.PyJWK]:
        answer = answers.pop(0) if answers else ConnectionError("still down")
        if isinstance(answer, Exception):
            raise answer
        return answer

    verifier = JwtVerifier(settings, SigningKeys(settings, fetch=fetch, clock=clock))
    await verifier.identify(token())
    clock.now += 61  # the cache expired; the fetch fails

    assert (await verifier.identify(token())).subject == "agent-ana"
    assert not answers


async def test_fetching_keys_runs_off_the_event_loop_one_fetch_for_many_calls() -> None:
    # Given a provider that answers slowly: its fetch blocks until released
    release = threading.Event()
    fetches = 0

    def slow_fetch() -> Mapping[str, jwt.PyJWK]:
        nonlocal fetches
        fetches += 1
        assert release.wait(10)
        return {KEY.kid: jwt.PyJWK(KEY.jwk())}

    settings = trusting("https://id.example.test/certs")
    verifier = JwtVerifier(settings, SigningKeys(settings, fetch=slow_fetch))

    # When ten calls arrive while the keys are being fetched
    calls = [asyncio.create_task(verifier.identify(token())) for _ in range(10)]
    ticks = 0
    while fetches == 0 or ticks < 20:  # the loop keeps running meanwhile
        ticks += 1
        await asyncio.sleep(0)
    assert not any(call.done() for call in calls)
    release.set()

    # Then all are answered from one fetch
    assert {(await call).subject for call in calls} == {"agent-ana"}
    assert fetches == 1


def test_a_jwks_file_serves_as_the_key_source(tmp_path: Path) -> None:
    path = tmp_path / "jwks.json"
    encryption_key = {**ec_key("enc-1").jwk(), "use": "enc"}
    path.write_text(json.dumps({"keys": [KEY.jwk(), encryption_key, {**RSA_KEY.jwk(), "kid": ""}]}))

    keys = read_jwks(JwtSettings(ISSUER, AUDIENCE, jwks_file=path))

    # Only signing keys with an id are kept
    assert set(keys) == {KEY.kid}
