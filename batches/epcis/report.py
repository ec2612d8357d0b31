"""What an EPCIS import says back: each event's outcome by its position in eventList, and the
error codes of the EPCIS interface."""

from dataclasses import dataclass, field
from enum import StrEnum


class EpcisError(StrEnum):
    NOT_PERMITTED = "not_permitted"
    INVALID = "epcis_invalid"
    NOT_FOUND = "not_found"


@dataclass
class Issue:
    """One outcome of one event: `index` is its position in eventList (None: the document)."""

    index: int | None
    event_id: str
    detail: str

    def as_dict(self) -> dict:
        return {"index": self.index, "eventID": self.event_id or None, "detail": self.detail}

    def __str__(self) -> str:
        where = "document" if self.index is None else f"eventList[{self.index}]"
        if self.event_id:
            where += f" ({self.event_id})"
        return f"{where}: {self.detail}"


@dataclass
class ImportReport:
    """What an import did, event by event (positions are indexes in eventList). With any
    error nothing is imported: `committed` is False and the record lists are empty."""

    events: int = 0
    imported: list[Issue] = field(default_factory=list)
    skipped: list[Issue] = field(default_factory=list)
    notes: list[Issue] = field(default_factory=list)
    errors: list[Issue] = field(default_factory=list)
    retracted: list[int] = field(default_factory=list)
    lots_created: list[str] = field(default_factory=list)
    lots_reused: list[str] = field(default_factory=list)
    batches: list[str] = field(default_factory=list)
    consumptions: int = 0
    shipments: int = 0
    committed: bool = False

    @property
    def ok(self) -> bool:
        return not self.errors

    def discard(self) -> None:
        self.imported.clear()
        self.lots_created.clear()
        self.lots_reused.clear()
        self.batches.clear()
        self.consumptions = self.shipments = 0
        self.committed = False

    @property
    def summary(self) -> str:
        if self.errors:
            return (
                f"{len(self.errors)} problem(s) in {self.events} event(s); nothing was "
                f"imported. First: {self.errors[0]}"
            )
        return (
            f"{self.events} event(s): {len(self.imported)} imported, {len(self.skipped)} "
            f"skipped; {len(self.lots_created)} lot(s) recorded, {len(self.batches)} batch(es) "
            f"completed, {self.consumptions} consumption(s), {self.shipments} shipment(s)."
        )

    def as_dict(self) -> dict:
        return {
            "committed": self.committed,
            "summary": self.summary,
            "events": self.events,
            "imported": [item.as_dict() for item in self.imported],
            "skipped": [item.as_dict() for item in self.skipped],
            "retracted": list(self.retracted),
            "notes": [item.as_dict() for item in self.notes],
            "errors": [item.as_dict() for item in self.errors],
            "lots_created": list(self.lots_created),
            "lots_reused": list(self.lots_reused),
            "batches": list(self.batches),
            "consumptions": self.consumptions,
            "shipments": self.shipments,
        }
