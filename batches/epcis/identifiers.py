"""Identifiers of GS1 EPCIS 2.0 as this site maps them: class-level lots (lgtin, GS1 Digital
Link with a lot, this site's own lot URI), GLNs of parties, and the CBV vocabularies."""

import re
from dataclasses import dataclass
from enum import StrEnum
from urllib.parse import quote, unquote, urlsplit

from django.conf import settings

from ..models import Lot, Unit

CONTEXT = "https://ref.gs1.org/standards/epcis/2.0.0/epcis-context.jsonld"
DEFAULT_NAMESPACE = "https://qms.invalid/epcis/"
COMPANY_PREFIX_LENGTH = 7

LGTIN = "urn:epc:class:lgtin:"
SGTIN = "urn:epc:id:sgtin:"
IDPAT_SGTIN = "urn:epc:idpat:sgtin:"
SGLN = "urn:epc:id:sgln:"
PGLN = "urn:epc:id:pgln:"
EPC_ID = "urn:epc:id:"

UOM_UNITS = {
    "KGM": Unit.KG,
    "GRM": Unit.G,
    "MGM": Unit.MG,
    "LTR": Unit.L,
    "MLT": Unit.ML,
    "C62": Unit.EACH,
    "H87": Unit.EACH,
    "EA": Unit.EACH,
}
UNIT_UOMS = {Unit.KG: "KGM", Unit.G: "GRM", Unit.MG: "MGM", Unit.L: "LTR", Unit.ML: "MLT"}

CBV_PREFIXES = {
    "bizstep": ("urn:epcglobal:cbv:bizstep:", "https://ref.gs1.org/cbv/BizStep-"),
    "sdt": ("urn:epcglobal:cbv:sdt:", "https://ref.gs1.org/cbv/SDT-"),
    "btt": ("urn:epcglobal:cbv:btt:", "https://ref.gs1.org/cbv/BTT-"),
}
PARTY_RANK = {"owning_party": 0, "possessing_party": 1, "location": 2}
ILMD_LOT_KEYS = ("cbvmda:lotNumber", "urn:epcglobal:cbv:mda:lotNumber")

_DIGITS = re.compile(r"[0-9]+")


def namespace() -> str:
    """The base of this site's own identifiers (batches, customers, suppliers, lots of
    materials without a GTIN), for what GS1 keys cannot name."""
    return getattr(settings, "QMS_EPCIS_NAMESPACE", DEFAULT_NAMESPACE)


class Malformed(ValueError):
    pass


class IdKind(StrEnum):
    LOT = "lot"
    CLASS = "class"
    INSTANCE = "instance"
    OTHER = "other"


@dataclass(frozen=True)
class Identifier:
    uri: str
    kind: str
    gtin: str = ""
    lot: str = ""
    material_code: str = ""


def check_digit(body: str) -> str:
    """GS1 mod-10 check digit of a key without its check digit."""
    total = sum(int(d) * (3 if i % 2 == 0 else 1) for i, d in enumerate(reversed(body)))
    return str((10 - total % 10) % 10)


def normal_gtin(value: str) -> str:
    """A GTIN-8/12/13/14 as 14 digits, or '' when it is not a valid GTIN."""
    value = (value or "").strip()
    if not _DIGITS.fullmatch(value) or len(value) not in (8, 12, 13, 14):
        return ""
    value = value.zfill(14)
    return value if check_digit(value[:13]) == value[13] else ""


def _epc_gtin(company: str, item: str, uri: str) -> str:
    if (
        not _DIGITS.fullmatch(company)
        or not _DIGITS.fullmatch(item)
        or len(company) + len(item) != 13
        or not 6 <= len(company) <= 12
    ):
        raise Malformed(f"{uri}: the company prefix and item reference must be 13 digits together")
    body = item[0] + company + item[1:]
    return body + check_digit(body)


def own_parts(uri: str, kind: str) -> list[str] | None:
    prefix = f"{namespace()}{kind}/"
    if not uri.startswith(prefix):
        return None
    parts = [unquote(part) for part in uri[len(prefix) :].split("/")]
    if not all(parts):
        raise Malformed(f"{uri}: an empty part in a {kind} identifier")
    return parts


def parse_identifier(uri) -> Identifier:
    """Classify an EPC or class identifier: a lot (lgtin, Digital Link with a lot, this site's
    own lot URI), a class without lot, a serialised instance, or something else."""
    if not isinstance(uri, str) or not uri.strip():
        raise Malformed("an identifier must be a non-empty string")
    if uri.startswith(LGTIN):
        parts = uri[len(LGTIN) :].split(".", 2)
        if len(parts) != 3 or not parts[2]:
            raise Malformed(
                f"{uri} is not an lgtin (urn:epc:class:lgtin:<company prefix>.<item "
                "reference>.<lot>)"
            )
        return Identifier(uri, IdKind.LOT, _epc_gtin(parts[0], parts[1], uri), unquote(parts[2]))
    if uri.startswith(SGTIN):
        parts = uri[len(SGTIN) :].split(".", 2)
        if len(parts) != 3 or not parts[2]:
            raise Malformed(f"{uri} is not an sgtin")
        return Identifier(uri, IdKind.INSTANCE, _epc_gtin(parts[0], parts[1], uri))
    if uri.startswith(IDPAT_SGTIN):
        parts = uri[len(IDPAT_SGTIN) :].split(".")
        if len(parts) == 3 and parts[2] == "*" and parts[1] != "*":
            return Identifier(uri, IdKind.CLASS, _epc_gtin(parts[0], parts[1], uri))
        return Identifier(uri, IdKind.CLASS)
    if uri.startswith(EPC_ID):
        return Identifier(uri, IdKind.INSTANCE)
    own = own_parts(uri, "lot")
    if own is not None:
        if len(own) != 2:
            raise Malformed(f"{uri}: a lot URI is {namespace()}lot/<material code>/<lot>")
        return Identifier(uri, IdKind.LOT, lot=own[1], material_code=own[0])
    if uri.startswith(("https://", "http://")):
        return _digital_link(uri)
    return Identifier(uri, IdKind.OTHER)


def _digital_link(uri: str) -> Identifier:
    segments = urlsplit(uri).path.split("/")
    if "01" not in segments:
        return Identifier(uri, IdKind.OTHER)
    values = segments[segments.index("01") :]
    if len(values) % 2:
        raise Malformed(f"{uri}: a GS1 Digital Link path is pairs of key and value")
    pairs = dict(zip(values[0::2], values[1::2], strict=True))
    gtin = normal_gtin(pairs["01"])
    if not gtin:
        raise Malformed(f"{uri}: {pairs['01']} is not a GTIN (wrong length or check digit)")
    if "21" in pairs:
        return Identifier(uri, IdKind.INSTANCE, gtin)
    if pairs.get("10"):
        return Identifier(uri, IdKind.LOT, gtin, unquote(pairs["10"]))
    return Identifier(uri, IdKind.CLASS, gtin)


def gln_from(uri: str) -> str:
    """The GLN an sgln/pgln URN or a Digital Link (414, 417) names; '' for other URIs."""
    for prefix, parts_wanted in ((SGLN, 3), (PGLN, 2)):
        if uri.startswith(prefix):
            parts = uri[len(prefix) :].split(".")
            body = "".join(parts[:2])
            if len(parts) != parts_wanted or not _DIGITS.fullmatch(body) or len(body) != 12:
                raise Malformed(f"{uri}: not a valid {prefix.rsplit(':', 2)[-2]}")
            return body + check_digit(body)
    if uri.startswith(("https://", "http://")):
        segments = urlsplit(uri).path.split("/")
        for key in ("417", "414"):
            if key in segments and segments.index(key) + 1 < len(segments):
                value = segments[segments.index(key) + 1]
                if len(value) != 13 or normal_gtin(value) == "":
                    raise Malformed(f"{uri}: {value} is not a GLN")
                return value
    return ""


def lot_identifier(lot: Lot) -> str:
    """A lot as a class-level identifier: lgtin when its material has a GTIN, else this site's
    own lot URI."""
    gtin = normal_gtin(lot.material.gtin)
    if gtin:
        company = gtin[1 : 1 + COMPANY_PREFIX_LENGTH]
        item = gtin[0] + gtin[1 + COMPANY_PREFIX_LENGTH : 13]
        return f"{LGTIN}{company}.{item}.{quote(lot.lot_number, safe='')}"
    code = quote(lot.material.code, safe="")
    return f"{namespace()}lot/{code}/{quote(lot.lot_number, safe='')}"


def party_identifier(record, kind: str) -> str:
    gln = normal_gtin(record.gln) if len(record.gln or "") == 13 else ""
    if gln:
        gln = gln[1:]
        return f"{PGLN}{gln[:COMPANY_PREFIX_LENGTH]}.{gln[COMPANY_PREFIX_LENGTH:12]}"
    return f"{namespace()}{kind}/{quote(record.code, safe='')}"


def cbv(value: str, vocabulary: str) -> str:
    for prefix in CBV_PREFIXES[vocabulary]:
        if value.startswith(prefix):
            return value[len(prefix) :]
    return value
