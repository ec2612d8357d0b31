"""Lot fields that take a scanned label: a GS1-128 or GS1 DataMatrix element string carrying the
GTIN (01) and the batch/lot number (10), as a keyboard-wedge scanner types it (with or without a
symbology identifier, FNC1 sent as the GS character, or the printed form with parentheses), or a
lot number typed by hand. Either resolves to one lot in the user's scope."""

from dataclasses import dataclass

from biip import ParseConfig, ParseError
from biip.checksums import gs1_standard_check_digit
from biip.gs1_messages import GS1Message
from biip.symbology import GS1Symbology, SymbologyIdentifier
from django.core.exceptions import ValidationError

from . import selectors
from .models import Lot, Material

GROUP_SEPARATOR = "\x1d"
SEPARATORS = (GROUP_SEPARATOR, "\u241d")
CONFIG = ParseConfig(separator_chars=SEPARATORS, gs1_element_strings_verify_date=False)
AI_GTIN, AI_LOT = "01", "10"


@dataclass(frozen=True)
class Scan:
    """What a label says: the GTIN-14 (or None) and the batch/lot number (or None)."""

    gtin: str | None
    lot_number: str | None
    raw: str


def gtin14(value: str) -> str | None:
    """A GTIN-8/12/13/14 as 14 digits; None when `value` is not a GTIN's digits."""
    digits = (value or "").strip()
    if not digits.isdigit() or len(digits) not in (8, 12, 13, 14):
        return None
    return digits.zfill(14)


def _gtin_forms(gtin: str) -> list[str]:
    """The ways a stored GTIN may be written: GTIN-14 and its shorter forms with the leading
    zeros dropped."""
    return [gtin[cut:] for cut in (0, 1, 2, 6) if gtin[:cut] == "0" * cut]


def _message(body: str, *, printed: bool) -> GS1Message:
    try:
        if printed:
            return GS1Message.parse_hri(body, config=CONFIG)
        return GS1Message.parse(body, config=CONFIG)
    except (ParseError, ValueError) as error:
        raise ValidationError(
            f"The scanned code {_shown(body)} is not a readable GS1 element string ({error}).",
            code="unreadable",
        ) from error


def _shown(text: str) -> str:
    return "“" + text.replace(GROUP_SEPARATOR, "<GS>") + "”"


def _typed_by_hand(raw: str) -> bool:
    return not (raw.startswith(("]", "(")) or any(sep in raw for sep in SEPARATORS))


def scan_parse(text: str) -> Scan | None:
    """Read a label's element string; None when `text` is not a GS1 element string (a lot
    number typed by hand). A plain (non-GS1) Code 128 symbol carries the lot number alone."""
    raw = (text or "").strip()
    body, is_gs1 = raw, False
    if raw.startswith("]"):
        try:
            symbology = SymbologyIdentifier.extract(raw)
        except ParseError as error:
            raise ValidationError(
                f"The scanned code {_shown(raw)} starts with an unknown symbology identifier.",
                code="unreadable",
            ) from error
        body = raw[len(symbology) :].strip()
        is_gs1 = symbology.gs1_symbology in GS1Symbology.with_gs1_messages()
        if not is_gs1:
            return Scan(None, body, raw)
    printed = body.startswith("(")
    if is_gs1 or printed or not _typed_by_hand(body):
        message = _message(body, printed=printed)
    else:
        if not body.startswith(AI_GTIN) or len(body) < 19:
            return None
        try:
            message = GS1Message.parse(body, config=CONFIG)
        except (ParseError, ValueError):
            return None
    gtin = message.element_strings.get(ai=AI_GTIN)
    lot = message.element_strings.get(ai=AI_LOT)
    return Scan(gtin.value if gtin else None, lot.value if lot else None, raw)


def _check_digit_ok(gtin: str) -> bool:
    return gs1_standard_check_digit(gtin[:-1]) == int(gtin[-1])


def _unglued_lot(lots, value: str) -> Lot | None:
    """Without FNC1 separators, a variable-length lot number (10) runs into the element strings
    after it: the longest known lot number that starts the value, followed by readable element
    strings, is the lot."""
    prefixes = [value[:end] for end in range(len(value) - 1, 0, -1)]
    for lot in sorted(
        lots.filter(lot_number__in=prefixes), key=lambda lot: len(lot.lot_number), reverse=True
    ):
        try:
            GS1Message.parse(value[len(lot.lot_number) :], config=CONFIG)
        except (ParseError, ValueError):
            continue
        return lot
    return None


def lot_from_scan(text: str, *, user) -> Lot:
    """The lot a scanned label or a typed lot number names, in the user's scope. A label's GTIN
    must be the GTIN of the lot's material (compared as GTIN-14): a label of another material
    is refused, so is a GTIN or a lot number not known here."""
    raw = (text or "").strip()
    if not raw:
        raise ValidationError("Scan the lot label or type the lot number.", code="required")
    lots = selectors.lot_list(user=user)
    if _typed_by_hand(raw):
        lot = lots.filter(lot_number=raw).first()
        if lot is not None:
            return lot
    scan = scan_parse(raw)
    if scan is None:
        raise ValidationError(f"Lot {raw} is not known here.", code="unknown_lot")
    if not scan.lot_number:
        raise ValidationError(
            f"The scanned code {_shown(raw)} carries no batch/lot number (10): scan the label "
            "that names the lot.",
            code="no_lot",
        )
    if scan.gtin is None:
        lot = lots.filter(lot_number=scan.lot_number).first()
        if lot is None:
            raise ValidationError(f"Lot {scan.lot_number} is not known here.", code="unknown_lot")
        return lot
    gtin = scan.gtin
    if not _check_digit_ok(gtin):
        raise ValidationError(
            f"GTIN {gtin} has a wrong check digit: the label was misread; scan it again.",
            code="gtin_check_digit",
        )
    labelled = list(Material.objects.for_user(user).filter(gtin__in=_gtin_forms(gtin)))
    if not labelled:
        raise ValidationError(
            f"GTIN {gtin} is not known here: no material carries it.", code="unknown_gtin"
        )
    lot = lots.filter(lot_number=scan.lot_number).first() or _unglued_lot(lots, scan.lot_number)
    if lot is None:
        raise ValidationError(
            f"Lot {scan.lot_number} of {labelled[0].code} (GTIN {gtin}) is not known here.",
            code="unknown_lot",
        )
    if gtin14(lot.material.gtin) != gtin:
        names = ", ".join(f"{m.code} {m.name}" for m in labelled)
        recorded = f"GTIN {lot.material.gtin}" if lot.material.gtin else "no GTIN recorded"
        raise ValidationError(
            f"The label's GTIN {gtin} is {names}, but lot {lot} is {lot.material.code} "
            f"{lot.material.name} ({recorded}): wrong label or wrong lot.",
            code="gtin_mismatch",
        )
    return lot
