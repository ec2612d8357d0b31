"""Reason for change (21 CFR 11.10(e)) on deviations and CAPAs: which edits change a recorded
value, and the refusal of such an edit without a reason.

Neither record has a draft state: a deviation is a GxP record from the moment it is recorded, a
CAPA from the moment it is opened (its sponsor may already have been told). So the line is drawn
per field: entering a value into a field still empty is its first entry and needs no reason;
changing or clearing a value already recorded does, and the reason lands in the audit event of
the change. Submitting a value again unchanged (a form posts every field) is no change."""

from django.db import models

from qms.errors import RuleViolation


def _normalised(value):
    if isinstance(value, str):
        return value.replace("\r\n", "\n").strip()
    if isinstance(value, models.Model):
        return value.pk
    return value


def _current(record, name: str):
    field = record._meta.get_field(name)
    return getattr(record, field.attname)


def _is_empty(value) -> bool:
    return value is None or value == ""


def edits(record, wanted: dict, labels: dict[str, str]) -> tuple[dict, list[str]]:
    """The values of `wanted` (None: not given) that differ from the record's, and the labels of
    the fields among them whose recorded value they would change."""
    changes, recorded = {}, []
    for name, value in wanted.items():
        if value is None:
            continue
        current = _normalised(_current(record, name))
        if current == _normalised(value):
            continue
        changes[name] = value.strip() if isinstance(value, str) else value
        if not _is_empty(current):
            recorded.append(labels[name])
    return changes, recorded


def _listed(labels: list[str]) -> str:
    return labels[0] if len(labels) == 1 else f"{', '.join(labels[:-1])} and {labels[-1]}"


def require_reason(what: str, recorded: list[str], reason: str, code: str) -> None:
    """Refuse changing recorded values of `what` (e.g. "DEV-2026-0007") without a reason."""
    if recorded and not (reason or "").strip():
        pronoun = "it" if len(recorded) == 1 else "them"
        raise RuleViolation(
            code,
            f"{what} already records its {_listed(recorded)}: changing {pronoun} needs a reason "
            "for the change (21 CFR 11.10(e)).",
        )
