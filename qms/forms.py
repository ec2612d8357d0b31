"""Form helpers shared by every page: the e-signature password field, timezone-aware date
inputs, and one way to run a service from a submitted form so that a business-rule refusal
(`RuleViolation`) is shown inline on the form instead of failing the request."""

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, TypeVar

from django import forms
from django.contrib.auth.forms import AuthenticationForm
from django.core.validators import MaxLengthValidator
from django.utils import timezone

from .errors import RuleViolation

T = TypeVar("T")

PASSWORD_HELP = "Re-enter your password to sign (21 CFR 11.200)."


def signature_password_field(
    *, label: str = "Password", help_text: str = PASSWORD_HELP, **kwargs
) -> forms.CharField:
    """The password re-entered to sign, taken as typed (as at login: never stripped)."""
    return forms.CharField(
        label=label,
        widget=forms.PasswordInput(attrs={"autocomplete": "current-password"}),
        help_text=help_text,
        strip=False,
        **kwargs,
    )


class LoginForm(AuthenticationForm):
    """Django's login form shows the username's maximum length but does not check it: a longer
    username reached the lockout records (a bounded column) and failed the request."""

    def __init__(self, request=None, *args, **kwargs):
        super().__init__(request, *args, **kwargs)
        field = self.fields["username"]
        field.validators.append(MaxLengthValidator(field.max_length))

    def clean(self):
        cleaned = super().clean()
        if self.has_error("username"):
            for message in self.errors.pop("username"):
                self.add_error(None, f"User name: {message}")
        return cleaned


def as_utc(moment: datetime | None) -> datetime | None:
    """Date-time inputs on the pages are UTC; make a naive value aware."""
    if moment is not None and timezone.is_naive(moment):
        return timezone.make_aware(moment, UTC)
    return moment


def form_submit(form: forms.Form, action: Callable[[dict[str, Any]], T]) -> tuple[bool, T | None]:
    """Validate `form` and, when valid, run `action(cleaned_data)` (a call of one service).
    A `RuleViolation` becomes a form error naming the rule; returns (done, result)."""
    if not form.is_valid():
        return False, None
    try:
        return True, action(form.cleaned_data)
    except RuleViolation as error:
        form.add_error(None, error.detail)
        return False, None
