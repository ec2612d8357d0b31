"""Serializer fields that hold API input to the bounds of `qms.bounds`: date-times must carry a
time zone, dates and date-times must lie in the plausible range, text must be free of control
characters and of a length a person writes.

`install()` (called from `QmsConfig.ready()`) makes every `ModelSerializer` build these fields
for model date, date-time, char and text fields, so a new serializer is bounded without opting
in; serializers that declare fields explicitly use these classes by name."""

from datetime import datetime

from django.db import models
from django.utils.dateparse import parse_datetime
from rest_framework import serializers

from .bounds import TEXT_MAX, TITLE_MAX, date_problem, text_problem


class AwareDateTimeField(serializers.DateTimeField):
    """A date-time with an explicit UTC offset (or `Z`), within the plausible range; a naive
    value is refused rather than guessed to be UTC."""

    default_error_messages = {
        "naive": "Give the time zone: a date and time with a UTC offset, e.g. "
        "2026-03-01T09:30:00Z.",
        "range": "{problem}",
    }

    def to_internal_value(self, value):
        parsed = value if isinstance(value, datetime) else None
        if isinstance(value, str):
            try:
                parsed = parse_datetime(value.strip())
            except ValueError:
                parsed = None
        if parsed is not None:
            if parsed.tzinfo is None or parsed.utcoffset() is None:
                self.fail("naive")
            problem = date_problem(parsed)
            if problem:
                self.fail("range", problem=problem)
        result = super().to_internal_value(value)
        problem = date_problem(result)
        if problem:
            self.fail("range", problem=problem)
        return result


class BoundedDateField(serializers.DateField):
    """A calendar date within the plausible range."""

    default_error_messages = {"range": "{problem}"}

    def to_internal_value(self, value):
        result = super().to_internal_value(value)
        problem = date_problem(result)
        if problem:
            self.fail("range", problem=problem)
        return result


class _NoControlCharacters:
    def __init__(self, multiline: bool):
        self.multiline = multiline

    def __call__(self, value) -> None:
        problem = text_problem(value, max_length=None, multiline=self.multiline)
        if problem:
            raise serializers.ValidationError(f"The text {problem}")


class BoundedCharField(serializers.CharField):
    """One line of text (a title, a name, a reference): no control characters, at most
    TITLE_MAX characters unless `max_length` says otherwise."""

    multiline = False
    default_max_length = TITLE_MAX

    def __init__(self, **kwargs):
        kwargs.setdefault("max_length", self.default_max_length)
        super().__init__(**kwargs)
        self.validators.append(_NoControlCharacters(self.multiline))


class BoundedTextField(BoundedCharField):
    """Multi-line text (a description, notes, a rationale): tab and line breaks allowed, other
    control characters refused, at most TEXT_MAX characters."""

    multiline = True
    default_max_length = TEXT_MAX

    def __init__(self, **kwargs):
        kwargs.setdefault("style", {"base_template": "textarea.html"})
        super().__init__(**kwargs)


MODEL_FIELD_MAPPING = {
    models.DateTimeField: AwareDateTimeField,
    models.DateField: BoundedDateField,
    models.CharField: BoundedCharField,
    models.TextField: BoundedTextField,
}


def install() -> None:
    """Make `ModelSerializer` build the bounded fields for every model serializer. Done once,
    globally, rather than through a base class, so that no serializer can forget it."""
    serializers.ModelSerializer.serializer_field_mapping.update(MODEL_FIELD_MAPPING)
