"""Template filters for the manufacturing record's pages."""

from decimal import Decimal

from django import template

register = template.Library()


@register.filter
def amount(value) -> str:
    """A recorded quantity without trailing zeros or exponent: 100.000 → 100, 2.500 → 2.5."""
    if value is None or value == "":
        return "—"
    return f"{Decimal(value).normalize():f}"
