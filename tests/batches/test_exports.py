"""Recall-scope exports: the CSV table, the PDF with its watermark, the static-only fetcher, and
`manage.py recall_scope`."""

import csv
import io
from datetime import UTC, datetime

import pypdf
import pytest
from django.core.management import CommandError, call_command
from django.test import Client
from django.urls import reverse

from batches import exports
from batches.selectors import ROW_FIELDS
from tests.batches.test_pages import MARKER, build_site

pytestmark = pytest.mark.django_db


@pytest.fixture
def site(plant):
    return build_site(plant)


def _download(user, route, lot_number, direction="forward"):
    client = Client()
    client.force_login(user)
    response = client.get(reverse(route, args=[lot_number]) + f"?direction={direction}")
    assert response.status_code == 200
    return response


def _rows(text: str) -> list[dict]:
    return list(csv.DictReader(io.StringIO(text)))


def _pdf_text(content: bytes) -> str:
    reader = pypdf.PdfReader(io.BytesIO(content))
    return "\n".join(page.extract_text() for page in reader.pages)


# --- CSV -----------------------------------------------------------------------------------


def test_csv_has_the_row_fields_and_a_row_per_lot_batch_and_shipment(site):
    response = _download(site.plant.qa, "batches:recall-csv", site.raw.lot_number)
    assert response["Content-Type"].startswith("text/csv")
    assert (
        response["Content-Disposition"]
        == f'attachment; filename="recall-{site.raw.lot_number}-forward.csv"'
    )
    text = response.content.decode()
    assert next(csv.reader(io.StringIO(text))) == ROW_FIELDS
    rows = _rows(text)
    lots = {(r["lot"], r["depth"], r["sponsor"]) for r in rows if r["record"] == "lot"}
    assert lots == {
        (site.raw.lot_number, "0", ""),
        (site.lot_a.lot_number, "1", "alpha"),
        (site.lot_b.lot_number, "1", "zzother"),
    }
    batches = {r["batch"] for r in rows if r["record"] == "batch"}
    assert batches == {site.batch_a.number, site.batch_b.number}
    shipments = {
        (r["lot"], r["customer"], r["quantity"]) for r in rows if r["record"] == "shipment"
    }
    assert shipments == {
        (site.lot_a.lot_number, "Northwind Wholesale", "4 ea"),
        (site.lot_b.lot_number, f"{MARKER} Pharmacy Chain", "4 ea"),
    }


def test_csv_backward_trace_names_supplier_and_receipt(site):
    response = _download(site.plant.qa, "batches:recall-csv", site.lot_a.lot_number, "backward")
    assert "recall-" + site.lot_a.lot_number + "-backward.csv" in response["Content-Disposition"]
    rows = _rows(response.content.decode())
    raw = next(r for r in rows if r["lot"] == site.raw.lot_number)
    assert raw["supplier"] == "Chemco GmbH"
    assert raw["receipt"] == site.raw.receipt_reference
    assert raw["quantity"] == "100 kg"
    assert {r["lot"] for r in rows if r["record"] == "lot"} == {
        site.lot_a.lot_number,
        site.raw.lot_number,
        site.excipient.lot_number,
    }


def test_csv_of_a_sponsor_a_user_holds_no_other_sponsor_rows(site):
    response = _download(site.user_a, "batches:recall-csv", site.raw.lot_number)
    text = response.content.decode()
    assert MARKER not in text.upper()
    assert site.lot_b.lot_number not in text and site.batch_b.number not in text
    assert site.lot_a.lot_number in text


def test_csv_quotes_cells_a_spreadsheet_would_run_as_formulas(site):
    site.plant.customers[0].__class__.objects.filter(pk=site.plant.customers[0].pk).update(
        name='=HYPERLINK("http://evil")'
    )
    genealogy = exports.genealogy_for(lot=site.raw, user=site.plant.qa, direction="forward")
    rows = _rows(exports.recall_csv(genealogy))
    assert '\'=HYPERLINK("http://evil")' in {r["customer"] for r in rows}


# --- PDF -----------------------------------------------------------------------------------


def test_pdf_is_a_pdf_naming_the_lot_and_carrying_the_watermark(site):
    response = _download(site.user_a, "batches:recall-pdf", site.raw.lot_number)
    assert response["Content-Type"] == "application/pdf"
    assert (
        response["Content-Disposition"]
        == f'attachment; filename="recall-{site.raw.lot_number}-forward.pdf"'
    )
    assert response.content.startswith(b"%PDF-")
    text = _pdf_text(response.content)
    assert f"Forward recall scope of lot {site.raw.lot_number}" in text
    assert site.lot_a.lot_number in text and "Northwind Wholesale" in text
    assert "CONFIDENTIAL" in text and "Alpha Therapeutics" in text
    assert "requested by" in text and site.user_a.username in text
    assert "UTC" in text
    assert MARKER not in text.upper()
    assert site.lot_b.lot_number not in text


def test_pdf_backward_trace_is_named_for_direction(site):
    response = _download(site.plant.qa, "batches:recall-pdf", site.lot_a.lot_number, "backward")
    assert f"recall-{site.lot_a.lot_number}-backward.pdf" in response["Content-Disposition"]
    text = _pdf_text(response.content)
    assert f"Backward trace of lot {site.lot_a.lot_number}" in text
    assert site.raw.lot_number in text and "Chemco GmbH" in text


def test_watermark_names_sponsor_scope_user_and_utc_time(site):
    genealogy = exports.genealogy_for(lot=site.raw, user=site.plant.qa)
    at = datetime(2026, 3, 4, 5, 6, tzinfo=UTC)
    assert exports.watermark(genealogy, user=site.plant.qa, at=at) == (
        f"CONFIDENTIAL · Alpha Therapeutics, {MARKER} Biologics · plant-qa · 2026-03-04 05:06 UTC"
    )


@pytest.mark.parametrize(
    "url",
    [
        "https://example.com/track.png",
        "http://qms.invalid/static/css/qms.css",
        "file:///etc/passwd",
        "https://qms.invalid/media/secret.pdf",
        "https://qms.invalid/static/../../etc/passwd",
        "https://qms.invalid/static/css/missing.css",
    ],
)
def test_pdf_fetcher_refuses_anything_but_local_static_files(url):
    with pytest.raises(ValueError, match="refused"):
        exports.StaticFilesOnly().fetch(url)


def test_pdf_fetcher_serves_the_project_stylesheet():
    response = exports.StaticFilesOnly().fetch("https://qms.invalid/static/css/qms.css")
    assert response.content_type == "text/css"
    assert b"--accent" in response.read()


# --- management command --------------------------------------------------------------------


def _command(*args) -> str:
    out = io.StringIO()
    call_command("recall_scope", *args, stdout=out)
    return out.getvalue()


def test_command_prints_the_forward_table_as_the_first_superuser(site, superuser):
    output = _command(site.raw.lot_number)
    lines = output.splitlines()
    assert lines[0] == (
        f"Forward recall scope of lot {site.raw.lot_number}: 3 lots, 2 batches, 2 shipments, "
        "2 customers"
    )
    assert lines[1].split() == ROW_FIELDS
    for record in (site.lot_a.lot_number, site.lot_b.lot_number, site.batch_b.number):
        assert record in output
    assert "Northwind Wholesale" in output


def test_command_backward_traces_to_the_supplier(site, superuser):
    output = _command(site.lot_a.lot_number, "--backward")
    assert output.startswith(f"Backward trace of lot {site.lot_a.lot_number}: 3 lots, 1 batches")
    assert site.raw.lot_number in output and "Chemco GmbH" in output
    assert site.lot_b.lot_number not in output


def test_command_csv_matches_the_page_export(site, superuser):
    output = _command(site.raw.lot_number, "--csv")
    genealogy = exports.genealogy_for(lot=site.raw, user=superuser)
    assert output == exports.recall_csv(genealogy)
    assert next(csv.reader(io.StringIO(output))) == ROW_FIELDS


def test_command_as_a_sponsor_a_user_leaves_other_sponsors_out(site):
    output = _command(site.raw.lot_number, "--user", site.user_a.username)
    assert site.lot_a.lot_number in output
    assert MARKER not in output.upper() and site.lot_b.lot_number not in output


def test_command_refuses_an_unknown_lot(site, superuser):
    with pytest.raises(CommandError, match="^Lot NO-SUCH-LOT does not exist.$"):
        _command("NO-SUCH-LOT")


def test_command_refuses_a_lot_outside_the_users_scope(site):
    with pytest.raises(
        CommandError, match=f"^Lot {site.lot_b.lot_number} is outside the sponsor scope of "
    ):
        _command(site.lot_b.lot_number, "--user", site.user_a.username)


def test_command_refuses_without_a_superuser_or_user(site):
    with pytest.raises(CommandError, match="No active superuser to read as: pass --user"):
        _command(site.raw.lot_number)


def test_command_refuses_an_unknown_user(site):
    with pytest.raises(CommandError, match="User nobody does not exist or is inactive."):
        _command(site.raw.lot_number, "--user", "nobody")
