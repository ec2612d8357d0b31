"""Recall scope exports: the flat table as CSV and as text for the command line, and a PDF rendered
by WeasyPrint that fetches nothing but the project's own static files."""

import csv
import io
import mimetypes
import re
from datetime import UTC, datetime
from urllib.parse import unquote, urlsplit

from django.conf import settings
from django.contrib.staticfiles import finders
from django.template.loader import render_to_string
from weasyprint import HTML
from weasyprint.urls import URLFetcher, URLFetcherResponse

from .models import Lot
from .selectors import ROW_FIELDS, Genealogy, recall_scope_forward, recall_trace_backward

DIRECTIONS = ("forward", "backward")
PDF_BASE_URL = "https://qms.invalid/"
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def genealogy_for(*, lot: Lot, user, direction: str = "forward") -> Genealogy:
    if direction == "forward":
        return recall_scope_forward(lot=lot, user=user)
    if direction == "backward":
        return recall_trace_backward(lot=lot, user=user)
    raise ValueError(f"unknown recall direction {direction!r}; use one of {DIRECTIONS}")


def title(genealogy: Genealogy) -> str:
    what = "Forward recall scope" if genealogy.direction == "forward" else "Backward trace"
    return f"{what} of lot {genealogy.origin.lot_number}"


def filename(genealogy: Genealogy, extension: str) -> str:
    lot = re.sub(r"[^A-Za-z0-9._-]", "_", genealogy.origin.lot_number)
    return f"recall-{lot}-{genealogy.direction}.{extension}"


def sponsor_scope(genealogy: Genealogy) -> str:
    """The sponsors whose records the document holds."""
    names = [group.label for group in genealogy.groups if group.label != "Site materials"]
    return ", ".join(names) if names else "site materials only"


def _cell(value) -> str:
    """Text that a spreadsheet would run as a formula is quoted (CSV injection)."""
    text = "" if value is None else str(value)
    return f"'{text}" if text.startswith(_FORMULA_START) else text


def recall_csv(genealogy: Genealogy) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(ROW_FIELDS)
    for row in genealogy.rows():
        writer.writerow([_cell(row[name]) for name in ROW_FIELDS])
    return buffer.getvalue()


def recall_table(genealogy: Genealogy) -> str:
    """The same rows as the page and the CSV, aligned for a terminal."""
    rows = [ROW_FIELDS] + [[str(row[name]) for name in ROW_FIELDS] for row in genealogy.rows()]
    widths = [max(len(row[i]) for row in rows) for i in range(len(ROW_FIELDS))]
    lines = [
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in rows
    ]
    counts = (
        f"{len(genealogy.lots)} lots, {len(genealogy.batches)} batches, "
        f"{len(genealogy.shipments)} shipments, {len(genealogy.customers)} customers"
    )
    return "\n".join([f"{title(genealogy)}: {counts}", *lines]) + "\n"


class StaticFilesOnly(URLFetcher):
    """A WeasyPrint fetcher that serves the project's static files and refuses anything else:
    no network, no `file://`, no `data:` from the rendered content."""

    def __init__(self):
        super().__init__(allowed_protocols=("https",), allow_redirects=False)

    def fetch(self, url, headers=None):
        prefix = urlsplit(PDF_BASE_URL + settings.STATIC_URL.lstrip("/"))
        parts = urlsplit(url)
        if (parts.scheme, parts.netloc) != (prefix.scheme, prefix.netloc) or not (
            parts.path.startswith(prefix.path)
        ):
            raise ValueError(f"refused to fetch {url}: a PDF may use only local static files")
        relative = unquote(parts.path[len(prefix.path) :])
        if not relative or ".." in relative.split("/") or relative.startswith("/"):
            raise ValueError(f"refused to fetch {url}: not a static file path")
        path = finders.find(relative)
        if path is None:
            raise ValueError(f"refused to fetch {url}: no such static file")
        with open(path, "rb") as handle:
            body = handle.read()
        content_type = mimetypes.guess_type(path)[0] or "application/octet-stream"
        return URLFetcherResponse(url, body, {"Content-Type": content_type})


def watermark(genealogy: Genealogy, *, user, at: datetime) -> str:
    return (
        f"CONFIDENTIAL · {sponsor_scope(genealogy)} · {user.get_username()} · "
        f"{at.astimezone(UTC):%Y-%m-%d %H:%M} UTC"
    )


def recall_pdf(genealogy: Genealogy, *, user, at: datetime) -> bytes:
    """The recall table as a PDF; every page names the sponsor scope, the requester and the UTC
    time of the request."""
    context = {
        "genealogy": genealogy,
        "lot": genealogy.origin,
        "title": title(genealogy),
        "scope": sponsor_scope(genealogy),
        "requester": user.get_full_name().strip() or user.get_username(),
        "username": user.get_username(),
        "at": at.astimezone(UTC),
        "watermark": watermark(genealogy, user=user, at=at),
    }
    html = render_to_string("batches/recall_pdf.html", context)
    return HTML(string=html, base_url=PDF_BASE_URL, url_fetcher=StaticFilesOnly()).write_pdf()
