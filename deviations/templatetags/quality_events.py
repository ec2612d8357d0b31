"""Template filters of the quality-event pages."""

from django import template

from deviations.views import duration as _duration

register = template.Library()


@register.filter
def duration(delta) -> str:
    """A timedelta as "3 d 4 h 5 min" (empty for None)."""
    return _duration(delta)
