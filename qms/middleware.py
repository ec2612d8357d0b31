"""Requests refused before any view runs: a path or query string with control characters (a NUL
cannot reach the database, and no identifier holds one), and a body larger than the limit for
its kind (`DATA_UPLOAD_MAX_MEMORY_SIZE`; `EPCIS_UPLOAD_MAX_SIZE` for an EPCIS import). File
uploads (multipart) are bounded by their own upload rules, not here."""

import re
from urllib.parse import unquote

from django.conf import settings
from django.http import HttpResponse, JsonResponse
from django.utils.html import format_html

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")

EPCIS_IMPORT_PATH = "/api/v1/epcis/"


def _is_api(request) -> bool:
    return request.path_info.startswith("/api/")


def _refusal(request, status: int, error: str, title: str, detail: str) -> HttpResponse:
    if _is_api(request):
        return JsonResponse({"error": error, "detail": detail}, status=status)
    page = format_html(
        '<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{}</title></head>'
        '<body><h1>{}</h1><p class="error-detail">{}</p><p><a href="/">Home</a></p></body></html>',
        title,
        title,
        detail,
    )
    return HttpResponse(page, status=status, content_type="text/html; charset=utf-8")


def body_limit(request) -> int | None:
    """The largest body accepted for `request`, in bytes (None: no limit here)."""
    if request.content_type == "multipart/form-data":
        return None
    if request.method == "POST" and request.path_info == EPCIS_IMPORT_PATH:
        return settings.EPCIS_UPLOAD_MAX_SIZE
    return settings.DATA_UPLOAD_MAX_MEMORY_SIZE


class RequestBoundsMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        query = unquote(request.META.get("QUERY_STRING", ""), errors="replace")
        if _CONTROL.search(request.path_info) or _CONTROL.search(query):
            return _refusal(
                request,
                400,
                "bad_request",
                "Bad request",
                "The address contains a control character (such as NUL); no record is named "
                "that way.",
            )
        limit = body_limit(request)
        try:
            length = int(request.META.get("CONTENT_LENGTH") or 0)
        except ValueError:
            length = 0
        if limit is not None and length > limit:
            return _refusal(
                request,
                413,
                "request_too_large",
                "Request too large",
                f"The request body has {length:,} bytes; at most {limit:,} are accepted here.",
            )
        return self.get_response(request)
