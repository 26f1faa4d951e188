"""The customer's own voice: the signed link of a satisfaction request and the answer it takes.

When a promise is kept, the customer is sent a link (`domain/notices.py`, template
SATISFACTION_REQUEST). The link carries the promise, the contact and an expiry, signed with
HMAC-SHA256 (CRM_FEEDBACK_SIGNING_KEY) and checked with `hmac.compare_digest`, so nobody can
make one up or change what it points at. It is single-use because the promise is rated once:
after an answer (the customer's, or staff's entered for them) every link to it reads "already
answered". An answer is recorded as the customer's own (actor `customer:<contact id>`).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from dataclasses import dataclass, replace
from datetime import UTC, datetime

from followup.domain.events import CustomerSatisfactionGiven, PromiseEvent
from followup.domain.model import Action, HistoryEntry, Promise, PromiseKind, Status

MIN_SCORE, MAX_SCORE = 1, 5
MAX_COMMENT = 2000


def customer_actor(contact_id: str) -> str:
    return f"customer:{contact_id}"


def asked_when_kept(p: Promise) -> bool:
    """A win-back is the business reaching out: the customer asked for nothing to rate."""
    return p.kind is not PromiseKind.WIN_BACK


@dataclass(frozen=True)
class Link:
    """What a signed link says: the request it came with, the promise, the contact, until when."""

    request_id: str
    promise_id: str
    contact_id: str
    expires_at: datetime


class LinkError(Exception):
    """The link is forged, damaged or expired: nothing may be recorded through it."""


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _mac(key: bytes, body: str) -> str:
    return _b64(hmac.new(key, body.encode("ascii"), hashlib.sha256).digest())


def sign(link: Link, key: bytes) -> str:
    """`<payload>.<signature>`, both base64url: safe in a URL path, no padding."""
    payload = json.dumps(
        [link.request_id, link.promise_id, link.contact_id, int(link.expires_at.timestamp())],
        separators=(",", ":"),
    )
    body = _b64(payload.encode("utf-8"))
    return f"{body}.{_mac(key, body)}"


def verify(token: str, key: bytes, now: datetime) -> Link:
    """The link's content when the signature is ours and it has not expired; else LinkError
    (the signature is checked first, in constant time, before anything in it is believed)."""
    body, dot, signature = token.partition(".")
    if not dot or not body or len(token) > 1024:
        raise LinkError("malformed")
    try:
        if not hmac.compare_digest(_mac(key, body).encode(), signature.encode("ascii")):
            raise LinkError("bad signature")
        request_id, promise_id, contact_id, expires = json.loads(_unb64(body))
        link = Link(
            str(request_id),
            str(promise_id),
            str(contact_id),
            datetime.fromtimestamp(int(expires), UTC),
        )
    except (ValueError, TypeError, UnicodeError, OverflowError) as exc:
        raise LinkError("malformed") from exc
    if now >= link.expires_at:
        raise LinkError("expired")
    return link


@dataclass(frozen=True)
class Answer:
    score: int
    comment: str


def problems(score_text: str, comment: str) -> tuple[Answer | None, list[str]]:
    """The answer as sent by the page's form, or what is wrong with it (message keys, shown in
    the customer's language): a score 1-5 is required, a comment is optional and short."""
    found: list[str] = []
    score = 0
    try:
        score = int(score_text.strip())
    except ValueError:
        found.append("score_missing" if not score_text.strip() else "score_range")
    else:
        if not MIN_SCORE <= score <= MAX_SCORE:
            found.append("score_range")
    comment = comment.replace("\r\n", "\n").strip()
    if len(comment) > MAX_COMMENT:
        found.append("comment_long")
    elif any(ord(c) < 32 and c not in "\n\t" for c in comment):
        found.append("comment_control")
    return (None if found else Answer(score, comment)), found


def answerable(p: Promise | None, link: Link) -> bool:
    """The link still points at a kept promise of that contact that nobody erased."""
    return (
        p is not None
        and p.erased_at is None
        and p.status is Status.KEPT
        and link.contact_id in (p.contact_id, p.made_for)
    )


def answered(p: Promise) -> bool:
    """Rated already, by the customer or by staff for them: a promise is rated once."""
    return p.customer_confirmed


def record(p: Promise, answer: Answer, now: datetime) -> tuple[Promise, list[PromiseEvent]]:
    """The customer's answer on their kept promise, as their own; once (see `answered`)."""
    actor = customer_actor(p.contact_id)
    entry = HistoryEntry(actor, now, Action.CONFIRMED_BY_CUSTOMER, to_value=str(answer.score))
    rated = replace(
        p,
        customer_confirmed=True,
        confirmed_at=now,
        satisfaction=answer.score,
        satisfaction_by_customer=True,
        satisfaction_comment=answer.comment,
        history=(*p.history, entry),
        version=p.version + 1,
        updated_at=now,
        updated_by=actor,
    )
    return rated, [CustomerSatisfactionGiven(rated, answer.score, actor, now)]
