"""GS1 EPCIS 2.0 over the API: POST a JSON-LD document to import its genealogy, GET a lot's
genealogy as a document. Both go through `batches.epcis`; scoping is the user's."""

import re

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import exceptions, status
from rest_framework.permissions import SAFE_METHODS, BasePermission, IsAuthenticated
from rest_framework.renderers import JSONRenderer
from rest_framework.response import Response
from rest_framework.views import APIView

from qms.api import ERROR_RESPONSES
from qms.api_query import query_parameters_check
from qms.parsers import StreamedJSONParser
from qms.tenancy import sponsor_ids_for

from .epcis import EpcisError, epcis_export, epcis_import
from .selectors import lot_list


class JsonLdParser(StreamedJSONParser):
    media_type = "application/ld+json"


class JsonLdRenderer(JSONRenderer):
    media_type = "application/ld+json"
    format = "jsonld"


DOCUMENT = OpenApiResponse(OpenApiTypes.OBJECT, description="An EPCIS 2.0 JSON-LD document")
CONFLICT = OpenApiResponse(description="Not permitted to import (the rule is named)")


def _export(request, lot_number: str) -> Response:
    lot = lot_list(user=request.user).filter(lot_number=lot_number).first()
    if lot is None:
        raise exceptions.NotFound("Not found, or not in your sponsor scope.")
    document = epcis_export(lot=lot, user=request.user)
    response = Response(document)
    name = re.sub(r"[^A-Za-z0-9._-]", "_", lot.lot_number)
    response["Content-Disposition"] = f'attachment; filename="epcis-{name}.jsonld"'
    return response


class MayImport(BasePermission):
    """Importing records receipts, consumptions, batch completions and shipments through the
    services: it needs `change` on some sponsor."""

    message = "Importing EPCIS documents needs the change permission on a sponsor."

    def has_permission(self, request, view) -> bool:
        return request.method in SAFE_METHODS or bool(sponsor_ids_for(request.user, "change"))


class EpcisView(APIView):
    """POST: import an EPCIS 2.0 document (all or nothing). GET ?lot=<lot number>: export that
    lot's genealogy."""

    permission_classes = [IsAuthenticated, MayImport]
    parser_classes = [StreamedJSONParser, JsonLdParser]
    renderer_classes = [JSONRenderer, JsonLdRenderer]

    @extend_schema(
        operation_id="epcis_export_by_query",
        parameters=[OpenApiParameter("lot", str, required=True, description="Lot number")],
        responses={200: DOCUMENT, **ERROR_RESPONSES},
    )
    def get(self, request):
        query_parameters_check(request, {"lot"})
        lot_number = request.query_params.get("lot", "").strip()
        if not lot_number:
            raise exceptions.ValidationError({"lot": ["Name the lot: ?lot=<lot number>."]})
        return _export(request, lot_number)

    @extend_schema(
        operation_id="epcis_import",
        request=OpenApiTypes.OBJECT,
        responses={
            201: OpenApiResponse(OpenApiTypes.OBJECT, description="The import report"),
            400: OpenApiResponse(
                OpenApiTypes.OBJECT,
                description="Nothing imported; `errors` lists each problem with the event's "
                "index in eventList and its eventID",
            ),
            401: ERROR_RESPONSES[401],
            409: CONFLICT,
        },
    )
    def post(self, request):
        report = epcis_import(document=request.data, user=request.user)
        if not report.ok:
            body = {"error": str(EpcisError.INVALID), "detail": report.summary}
            body.update(report.as_dict())
            return Response(body, status=status.HTTP_400_BAD_REQUEST)
        return Response(report.as_dict(), status=status.HTTP_201_CREATED)


class EpcisLotView(APIView):
    """A lot's genealogy (backward trace and forward scope) as an EPCIS 2.0 document."""

    renderer_classes = [JSONRenderer, JsonLdRenderer]

    @extend_schema(operation_id="epcis_export", responses={200: DOCUMENT, **ERROR_RESPONSES})
    def get(self, request, lot_number: str):
        query_parameters_check(request, ())
        return _export(request, lot_number)
