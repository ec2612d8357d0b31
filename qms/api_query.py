"""Rules every API endpoint shares, named in the DRF settings: paging with a bounded
`page_size`, no silently ignored query parameters, and no writes by read-only users. Kept apart
from `qms.api` because DRF imports these classes while its own views are being defined."""

from rest_framework import exceptions, status
from rest_framework.filters import BaseFilterBackend
from rest_framework.pagination import PageNumberPagination
from rest_framework.permissions import SAFE_METHODS, BasePermission

from .tenancy import sponsor_ids_for

MAX_PAGE_SIZE = 200
ALWAYS_ALLOWED_PARAMETERS = frozenset({"page", "page_size", "format"})


class UnknownQueryParameter(exceptions.APIException):
    status_code = status.HTTP_400_BAD_REQUEST
    default_code = "unknown_query_parameter"


class ApiPagination(PageNumberPagination):
    """Pages of 50 rows by default; `page_size` chooses up to MAX_PAGE_SIZE, and anything else
    is refused rather than silently replaced."""

    page_size_query_param = "page_size"
    max_page_size = MAX_PAGE_SIZE

    def get_page_size(self, request):
        raw = request.query_params.get(self.page_size_query_param)
        if raw is None:
            return self.page_size
        try:
            size = int(raw)
        except ValueError:
            size = 0
        if not 1 <= size <= self.max_page_size:
            raise exceptions.ValidationError(
                {"page_size": f"must be a whole number from 1 to {self.max_page_size}."}
            )
        return size


def query_parameters_check(request, allowed) -> None:
    """Refuse query parameters outside `allowed` (and paging and `format`), naming them."""
    allowed = set(ALWAYS_ALLOWED_PARAMETERS) | set(allowed)
    unknown = sorted(set(request.query_params) - allowed)
    if unknown:
        known = ", ".join(sorted(allowed))
        raise UnknownQueryParameter(
            f"Unknown query parameter {', '.join(unknown)}; this endpoint accepts: {known}."
        )


class StrictQueryParameters(BaseFilterBackend):
    """Refuse a query parameter the endpoint does not know (a misspelt filter would otherwise
    return every row). Known: paging, `format`, the view's filterset and `query_parameters`."""

    def filter_queryset(self, request, queryset, view):
        from django_filters.rest_framework import DjangoFilterBackend

        allowed = set(getattr(view, "query_parameters", ()))
        filterset = DjangoFilterBackend().get_filterset_class(view, queryset)
        if filterset is not None:
            allowed |= set(filterset.base_filters)
        query_parameters_check(request, allowed)
        return queryset


WRITE_ACTIONS = ("change", "approve", "sponsor_approve")


class WritesNeedAWriteRole(BasePermission):
    """A request that changes something needs a role that may write on at least one sponsor
    (CMO staff, QA approvers, sponsor approvers); read-only users (sponsor auditors, anyone
    whose grants lapsed) are refused before their input is read. Services still check the
    action on the record's own sponsor."""

    message = "Your access is read-only: you may not change records."

    def has_permission(self, request, view) -> bool:
        if request.method in SAFE_METHODS:
            return True
        return any(sponsor_ids_for(request.user, action) for action in WRITE_ACTIONS)
