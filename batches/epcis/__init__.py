"""GS1 EPCIS 2.0 (JSON-LD) import and export of lot genealogy: receipts and shipments are
ObjectEvents, batches are TransformationEvents, lots are class-level lgtin or Digital Link ids.
An import maps each event onto the services of the manufacturing record; it writes no row itself.
"""

from .exporter import epcis_export
from .identifiers import (
    CONTEXT,
    DEFAULT_NAMESPACE,
    Identifier,
    IdKind,
    Malformed,
    check_digit,
    gln_from,
    lot_identifier,
    namespace,
    normal_gtin,
    parse_identifier,
)
from .importer import epcis_import
from .report import EpcisError, ImportReport, Issue

__all__ = [
    "CONTEXT",
    "DEFAULT_NAMESPACE",
    "EpcisError",
    "IdKind",
    "Identifier",
    "ImportReport",
    "Issue",
    "Malformed",
    "check_digit",
    "epcis_export",
    "epcis_import",
    "gln_from",
    "lot_identifier",
    "namespace",
    "normal_gtin",
    "parse_identifier",
]
