"""The signed link and the answer's rules, as pure functions: what can be forged, what expires,
what a page may accept."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from followup.domain import feedback
from followup.entrypoints.feedback_page import choose_language

KEY = b"k" * 32
NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
LINK = feedback.Link("request-1", "promise-1", "contact-1", NOW + timedelta(days=14))


def test_a_signed_link_reads_back_until_it_expires() -> None:
    token = feedback.sign(LINK, KEY)
    assert feedback.verify(token, KEY, NOW) == LINK
    assert feedback.verify(token, KEY, LINK.expires_at - timedelta(seconds=1)) == LINK
    with pytest.raises(feedback.LinkError, match="expired"):
        feedback.verify(token, KEY, LINK.expires_at)


def test_a_link_is_safe_in_a_url_path() -> None:
    token = feedback.sign(LINK, KEY)
    assert all(c.isalnum() or c in "-_." for c in token)


@pytest.mark.parametrize(
    "tamper",
    [
        lambda t: t[:-1] + ("A" if t[-1] != "A" else "B"),  # signature changed
        lambda t: t.split(".")[0],  # signature gone
        lambda t: feedback.sign(LINK, b"another key, just as long as it!"),
        lambda t: (
            feedback.sign(
                feedback.Link("request-1", "promise-2", "contact-1", LINK.expires_at), KEY
            ).split(".")[0]
            + "."
            + t.split(".")[1]
        ),  # another promise under this signature
        lambda t: "",
        lambda t: "." * 3,
        lambda t: "%%%.%%%",
        lambda t: "x" * 5000,
    ],
)
def test_a_forged_or_damaged_link_is_refused(tamper: object) -> None:
    token = tamper(feedback.sign(LINK, KEY))  # type: ignore[operator]
    with pytest.raises(feedback.LinkError):
        feedback.verify(token, KEY, NOW)


@pytest.mark.parametrize(
    ("score", "comment", "wrong"),
    [
        ("", "", ["score_missing"]),
        ("0", "", ["score_range"]),
        ("6", "", ["score_range"]),
        ("-1", "", ["score_range"]),
        ("4.5", "", ["score_range"]),
        ("3", "x" * 2001, ["comment_long"]),
        ("3", "bell\x07", ["comment_control"]),
        ("9", "y" * 3000, ["score_range", "comment_long"]),
    ],
)
def test_a_bad_answer_says_every_problem(score: str, comment: str, wrong: list[str]) -> None:
    answer, problems = feedback.problems(score, comment)
    assert answer is None and problems == wrong


def test_a_good_answer_keeps_line_breaks_and_trims() -> None:
    answer, problems = feedback.problems(" 5 ", "  Great.\r\nThanks!  ")
    assert problems == [] and answer == feedback.Answer(5, "Great.\nThanks!")
    answer, _ = feedback.problems("1", "é" * 2000)
    assert answer is not None and len(answer.comment) == 2000


@pytest.mark.parametrize(
    ("query", "header", "expected"),
    [
        ("", "", "en"),
        ("", "es-ES,es;q=0.9,en;q=0.8", "es"),
        ("", "en;q=0.5,es;q=0.9", "es"),
        ("", "de-DE,fr;q=0.9", "en"),
        ("", "de-DE,es;q=0.1", "es"),
        ("en", "es", "en"),
        ("es", "", "es"),
        ("", "es;q=0", "en"),
        ("", "es;q=nonsense", "en"),
    ],
)
def test_the_language_is_the_best_we_know(query: str, header: str, expected: str) -> None:
    assert choose_language(query, header) == expected
