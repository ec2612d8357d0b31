"""Lot fields resolve a scanned GS1 label or a typed lot number to a lot in the user's scope: the
label's GTIN must be the lot's material's, compared as GTIN-14."""

import pytest
from django.core.exceptions import ValidationError

from batches.barcodes import gtin14, lot_from_scan, scan_parse
from sponsors.models import Role
from tests.factories import make_user

GTIN = "00614141000012"  # GS1's example company prefix 0614141, valid check digit
OTHER_GTIN = "00614141000029"
GS = "\x1d"


@pytest.fixture
def labelled(plant):
    plant.api.gtin = GTIN
    plant.api.save()
    plant.excipient.gtin = OTHER_GTIN
    plant.excipient.save()
    return plant


@pytest.fixture
def lot(labelled):
    return labelled.receive(labelled.api)


def _refusal(text, user) -> str:
    with pytest.raises(ValidationError) as refused:
        lot_from_scan(text, user=user)
    return refused.value.messages[0]


# --- reading the element string ------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        f"(01){GTIN}(10)R-0001",
        f"(01) {GTIN} (10) R-0001",
        f"]C101{GTIN}10R-0001",
        f"]d201{GTIN}10R-0001{GS}17291231",
        f"]Q301{GTIN}10R-0001{GS}21SER-9",
        f"01{GTIN}10R-0001{GS}17291231",
        f"01{GTIN}10R-0001",
        f"{GS}01{GTIN}10R-0001{GS}",
    ],
)
def test_element_strings_give_gtin_and_lot(text):
    scan = scan_parse(text)
    assert (scan.gtin, scan.lot_number) == (GTIN, "R-0001")


def test_lot_number_before_other_element_strings_keeps_to_its_separator():
    scan = scan_parse(f"]C101{GTIN}10R-0001{GS}3103000150")
    assert scan.lot_number == "R-0001"


def test_typed_lot_number_is_not_an_element_string():
    assert scan_parse("R-0001") is None
    assert scan_parse("L-2026-0042") is None


def test_plain_code_128_symbol_carries_the_lot_number_alone():
    scan = scan_parse("]C0R-0001")
    assert (scan.gtin, scan.lot_number) == (None, "R-0001")


def test_unreadable_element_string_is_refused():
    with pytest.raises(ValidationError) as refused:
        scan_parse("]C10112345")
    assert "is not a readable GS1 element string" in refused.value.messages[0]


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("614141000012", "00614141000012"),
        ("0614141000012", "00614141000012"),
        (GTIN, GTIN),
        ("", None),
        ("ABC", None),
        ("12345", None),
    ],
)
def test_gtins_compare_as_fourteen_digits(value, expected):
    assert gtin14(value) == expected


# --- resolving to a lot --------------------------------------------------------------------


@pytest.mark.parametrize(
    "label",
    [
        "(01){gtin}(10){lot}",
        "]C101{gtin}10{lot}",
        "]d201{gtin}10{lot}" + GS + "17291231",
        "01{gtin}10{lot}" + GS + "21SER-9",
    ],
)
def test_scanned_label_resolves_to_the_lot(labelled, lot, label):
    text = label.format(gtin=GTIN, lot=lot.lot_number)
    assert lot_from_scan(text, user=labelled.operator) == lot


def test_label_without_separators_still_finds_a_known_lot(labelled, lot):
    text = f"]C101{GTIN}10{lot.lot_number}17291231"
    assert lot_from_scan(text, user=labelled.operator) == lot


def test_typed_lot_number_resolves(labelled, lot):
    assert lot_from_scan(f"  {lot.lot_number} ", user=labelled.operator) == lot


def test_material_gtin_stored_short_matches_the_label(labelled, lot):
    labelled.api.gtin = "614141000012"
    labelled.api.save()
    assert lot_from_scan(f"]C101{GTIN}10{lot.lot_number}", user=labelled.operator) == lot


def test_unknown_gtin_refused(labelled, lot):
    unknown = "04012345000016"
    message = _refusal(f"]C101{unknown}10{lot.lot_number}", labelled.operator)
    assert message == f"GTIN {unknown} is not known here: no material carries it."


def test_unknown_lot_refused(labelled, lot):
    message = _refusal(f"]C101{GTIN}10R-9999", labelled.operator)
    assert message == f"Lot R-9999 of RM-API (GTIN {GTIN}) is not known here."


def test_typed_unknown_lot_refused(labelled):
    assert _refusal("R-9999", labelled.operator) == "Lot R-9999 is not known here."


def test_gtin_of_another_material_refused(labelled, lot):
    message = _refusal(f"]C101{OTHER_GTIN}10{lot.lot_number}", labelled.operator)
    assert message == (
        f"The label's GTIN {OTHER_GTIN} is RM-EXC Lactose, but lot {lot} is RM-API Active "
        f"ingredient (GTIN {GTIN}): wrong label or wrong lot."
    )


def test_lot_of_a_material_without_gtin_refused_for_a_label(labelled):
    labelled.excipient.gtin = ""
    labelled.excipient.save()
    excipient_lot = labelled.receive(labelled.excipient)
    message = _refusal(f"]C101{GTIN}10{excipient_lot.lot_number}", labelled.operator)
    assert "(no GTIN recorded): wrong label or wrong lot." in message


def test_misread_check_digit_refused(labelled, lot):
    message = _refusal(f"]C1010061414100001310{lot.lot_number}", labelled.operator)
    assert message == (
        "GTIN 00614141000013 has a wrong check digit: the label was misread; scan it again."
    )


def test_label_without_lot_number_refused(labelled):
    message = _refusal(f"]C101{GTIN}17291231", labelled.operator)
    assert "carries no batch/lot number (10)" in message


def test_empty_field_refused(labelled):
    assert _refusal("   ", labelled.operator) == "Scan the lot label or type the lot number."


def test_another_sponsors_lot_is_not_known_here(labelled):
    labelled.finished_b.gtin = "00614141000036"
    labelled.finished_b.save()
    _, lot_b = labelled.run_batch(labelled.product_b, [], release=False)
    alpha_only = make_user(sponsor=labelled.sponsor_a, role=Role.CMO_STAFF)

    assert _refusal(lot_b.lot_number, alpha_only) == f"Lot {lot_b} is not known here."
    message = _refusal(f"]C1010061414100003610{lot_b.lot_number}", alpha_only)
    assert message == "GTIN 00614141000036 is not known here: no material carries it."
