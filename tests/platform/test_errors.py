"""The violation collector every mapper and validator uses: every mistake at once, but never a
thousand, and no control characters in a caller's text."""

from __future__ import annotations

import pytest

from promesa.errors import (
    MAX_DESCRIPTION,
    MAX_VIOLATIONS,
    FieldViolation,
    InvalidArgumentError,
    NotFoundError,
    Violations,
    clip,
    control_characters,
)


def bad_tags(count: int) -> list[FieldViolation]:
    return [
        FieldViolation(f"contact.tags[{i}]", "must be at most 50 characters") for i in range(count)
    ]


# --- InvalidArgumentError -------------------------------------------------------------------


def test_every_violation_is_kept_up_to_the_cap() -> None:
    error = InvalidArgumentError(bad_tags(MAX_VIOLATIONS))

    assert len(error.violations) == MAX_VIOLATIONS == 20
    assert error.violations == tuple(bad_tags(20))


def test_past_the_cap_one_more_violation_says_how_many_were_left_out() -> None:
    error = InvalidArgumentError(bad_tags(1000))

    assert len(error.violations) == 21
    assert error.violations[:20] == tuple(bad_tags(20))
    assert error.violations[20] == FieldViolation("", "and 980 more violations of the same request")


def test_one_over_the_cap_is_counted_too() -> None:
    error = InvalidArgumentError(bad_tags(21))

    assert error.violations[-1].description == "and 1 more violations of the same request"


def test_long_descriptions_and_fields_are_clipped() -> None:
    error = InvalidArgumentError([FieldViolation("f" * 5000, "d" * 5000)])

    (violation,) = error.violations
    assert len(violation.field) == MAX_DESCRIPTION
    assert len(violation.description) == MAX_DESCRIPTION
    assert violation.description.endswith("…")


def test_the_message_names_the_first_three_and_points_to_the_rest() -> None:
    error = InvalidArgumentError(bad_tags(5))

    assert str(error) == (
        "contact.tags[0]: must be at most 50 characters; "
        "contact.tags[1]: must be at most 50 characters; "
        "contact.tags[2]: must be at most 50 characters; "
        "and 2 more (see the field violations)"
    )


def test_a_single_violation_is_the_whole_message() -> None:
    assert str(InvalidArgumentError([FieldViolation("name", "must not be empty")])) == (
        "name: must not be empty"
    )


def test_a_missing_resource_is_named_with_its_id_clipped() -> None:
    error = NotFoundError("contact", "x" * 1_000_000)

    assert len(str(error)) < 150
    assert error.resource_id == "x" * 1_000_000, "the caller's value is kept for the code"


def test_clip_keeps_short_text_and_marks_what_it_cut() -> None:
    assert clip("short", 10) == "short"
    assert clip("exactly10!", 10) == "exactly10!"
    assert clip("a bit longer", 10) == "a bit lon…"
    assert len(clip("a bit longer", 10)) == 10


# --- control characters ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    ["nul\x00byte", "escape\x1b[31m", "bell\x07", "delete\x7f", "next line\x85", "a\nb", "a\tb"],
)
def test_control_characters_are_found(text: str) -> None:
    assert control_characters(text)


@pytest.mark.parametrize("text", ["a\nb", "a\r\nb", "a\tb"])
def test_line_breaks_and_tabs_are_allowed_in_prose(text: str) -> None:
    assert not control_characters(text, line_breaks=True)


def test_line_breaks_do_not_let_other_control_characters_through() -> None:
    assert control_characters("para\n\x00graph", line_breaks=True)


@pytest.mark.parametrize("text", ["", "Ada Lovelace", "Ådne Ås", "株式会社", "👩‍💻 dev", "a b"])
def test_printable_text_in_any_script_has_no_control_characters(text: str) -> None:
    assert not control_characters(text)


# --- Violations.text ------------------------------------------------------------------------


def test_text_comes_back_without_surrounding_blanks() -> None:
    v = Violations()

    assert v.text("name", "  Ada  ", 10) == "Ada"
    assert not v


def test_text_over_the_limit_is_a_violation_counted_after_stripping() -> None:
    v = Violations()

    assert v.text("name", "  " + "a" * 10 + "  ", 10) == "a" * 10
    assert not v
    v.text("name", "a" * 11, 10)
    with pytest.raises(InvalidArgumentError) as raised:
        v.raise_if_any()
    assert raised.value.violations == (FieldViolation("name", "must be at most 10 characters"),)


def test_text_with_a_nul_byte_is_refused() -> None:
    v = Violations()

    v.text("contact.display_name", "Ada\x00Lovelace", 100)

    with pytest.raises(InvalidArgumentError) as raised:
        v.raise_if_any()
    assert raised.value.violations == (
        FieldViolation("contact.display_name", "must not contain control characters"),
    )


def test_names_refuse_line_breaks_but_notes_accept_them() -> None:
    v = Violations()

    v.text("contact.display_name", "Ada\nLovelace", 100)
    note = v.text("interaction.summary", "Called.\r\nWill call back.", 100, line_breaks=True)

    assert note == "Called.\r\nWill call back."
    with pytest.raises(InvalidArgumentError) as raised:
        v.raise_if_any()
    assert [x.field for x in raised.value.violations] == ["contact.display_name"]


def test_a_note_with_another_control_character_names_what_is_allowed() -> None:
    v = Violations()

    v.text("interaction.summary", "Called.\n\x1b[2J", 100, line_breaks=True)

    with pytest.raises(InvalidArgumentError) as raised:
        v.raise_if_any()
    assert raised.value.violations == (
        FieldViolation(
            "interaction.summary", "must not contain control characters other than line breaks"
        ),
    )


def test_a_text_both_too_long_and_with_control_characters_gets_both_violations() -> None:
    v = Violations()

    v.text("reason", "\x00" * 20, 10)

    with pytest.raises(InvalidArgumentError) as raised:
        v.raise_if_any()
    assert [x.description for x in raised.value.violations] == [
        "must be at most 10 characters",
        "must not contain control characters",
    ]


def test_a_collector_without_violations_raises_nothing() -> None:
    v = Violations()
    v.check(True, "field", "never")
    v.extend([])

    v.raise_if_any()

    assert not v


def test_the_collector_raises_once_with_every_violation_in_order() -> None:
    v = Violations()
    v.add("promise.due_at", "is not a valid timestamp (years 1 to 9999)")
    assert not v.check(False, "promise.kind", "0 is not a known value")
    v.extend([FieldViolation("promise.text", "must not be empty")])

    with pytest.raises(InvalidArgumentError) as raised:
        v.raise_if_any()

    assert [x.field for x in raised.value.violations] == [
        "promise.due_at",
        "promise.kind",
        "promise.text",
    ]
