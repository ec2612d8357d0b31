"""What a value must look like to be recorded at all: dates within the plausible range, record
identifiers that fit in a URL, and free text without control characters and of a length a person
writes. Services check what they accept with these; forms and serializers use the same limits."""

import re
from datetime import UTC, date, datetime, timedelta
from enum import StrEnum

from django.core.validators import RegexValidator

from .errors import RuleViolation

EARLIEST = date(1900, 1, 1)
LATEST = date(2199, 12, 31)
RANGE_TEXT = f"{EARLIEST:%Y-%m-%d} to {LATEST:%Y-%m-%d}"

IDENTIFIER_MAX = 60
IDENTIFIER_PATTERN = rf"[A-Za-z0-9][A-Za-z0-9._:+-]{{0,{IDENTIFIER_MAX - 1}}}"
IDENTIFIER_RE = re.compile(rf"^{IDENTIFIER_PATTERN}\Z")
IDENTIFIER_RULE = (
    f"1 to {IDENTIFIER_MAX} letters, digits and . _ : + -, starting with a letter or a digit"
)

identifier_validator = RegexValidator(
    IDENTIFIER_RE, f"Use {IDENTIFIER_RULE}: it appears in addresses (URLs).", "invalid_identifier"
)

# How far ahead of the server clock a recorded time may be (clocks of devices at the line
# drift); anything later is "in the future".
FUTURE_TOLERANCE = timedelta(minutes=5)

TITLE_MAX = 200
TEXT_MAX = 20_000

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_CONTROL_MULTILINE = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")


class BoundsError(StrEnum):
    DATE_RANGE = "date_out_of_range"
    IDENTIFIER = "identifier_invalid"
    TEXT = "text_invalid"


def date_problem(value: date | datetime | None) -> str | None:
    """Why `value` is outside the plausible range, or None. A date-time is judged both as
    written and in UTC, so an offset cannot carry it past the range."""
    if value is None:
        return None
    days = [value.date() if isinstance(value, datetime) else value]
    if isinstance(value, datetime) and value.tzinfo is not None and EARLIEST <= days[0] <= LATEST:
        days.append(value.astimezone(UTC).date())
    if all(EARLIEST <= day <= LATEST for day in days):
        return None
    return f"{value.isoformat()} is outside the plausible range {RANGE_TEXT}."


def date_check(value, what: str, code: StrEnum | str = BoundsError.DATE_RANGE):
    """Refuse a date or date-time outside 1900-01-01 .. 2199-12-31 (UTC), naming `what`;
    None passes."""
    problem = date_problem(value)
    if problem:
        raise RuleViolation(code, f"{what}: {problem}")
    return value


def identifier_problem(value) -> str | None:
    if isinstance(value, str) and IDENTIFIER_RE.match(value):
        return None
    return f"{value!r} is not a valid identifier: use {IDENTIFIER_RULE}."


def identifier_check(value, what: str, code: StrEnum | str = BoundsError.IDENTIFIER) -> str:
    """Refuse an identifier that would not survive a URL, a file name or a barcode: one
    pattern for lot numbers, batch numbers and codes."""
    problem = identifier_problem(value)
    if problem:
        raise RuleViolation(code, f"{what}: {problem}")
    return value


def text_problem(value, *, max_length: int | None = TEXT_MAX, multiline: bool = True) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        return "is not text."
    pattern = _CONTROL_MULTILINE if multiline else _CONTROL
    found = pattern.search(value)
    if found:
        return f"contains the control character U+{ord(found.group()):04X}."
    if max_length is not None and len(value) > max_length:
        return f"has {len(value):,} characters; at most {max_length:,} are allowed."
    return None


def text_check(
    value,
    what: str,
    *,
    max_length: int = TEXT_MAX,
    multiline: bool = True,
    code: StrEnum | str = BoundsError.TEXT,
):
    """Refuse free text with control characters (tab and line breaks allowed in multi-line
    text) or longer than `max_length`; None passes."""
    problem = text_problem(value, max_length=max_length, multiline=multiline)
    if problem:
        raise RuleViolation(code, f"{what} {problem}")
    return value


def title_check(value, what: str, code: StrEnum | str = BoundsError.TEXT):
    return text_check(value, what, max_length=TITLE_MAX, multiline=False, code=code)
