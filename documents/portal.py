"""The sponsor portal's documents: the sponsor's own controlled documents and the site-wide ones
that govern its products (released versions only, with their files), and the training roster
of the people who worked on its batches. Nothing of another sponsor."""

import django_filters
from django.core.paginator import Paginator
from django.db.models import Q
from django.shortcuts import get_object_or_404, render

from qms.access import portal_required
from sponsors.portal import _own_sponsor

from . import selectors
from .models import Document, DocumentType
from .views import (
    MATRIX_PAGE_SIZE,
    PAGE_SIZE,
    label_statuses,
    serve_version_file,
    signatures_by_version,
)


class PortalDocumentFilter(django_filters.FilterSet):
    q = django_filters.CharFilter(method="search", label="Search")
    doc_type = django_filters.ChoiceFilter(choices=DocumentType.choices, label="Type")

    class Meta:
        model = Document
        fields = ["q", "doc_type"]

    def search(self, queryset, name, value):
        return queryset.filter(Q(number__icontains=value) | Q(title__icontains=value))


@portal_required
def document_list(request):
    sponsor = _own_sponsor(request)
    documents = selectors.document_list(user=request.user).order_by("number")
    filterset = PortalDocumentFilter(request.GET, queryset=documents)
    page = label_statuses(Paginator(filterset.qs, PAGE_SIZE).get_page(request.GET.get("page")))
    context = {"sponsor": sponsor, "filter": filterset, "page": page}
    return render(request, "portal/document_list.html", context)


def _document(request, number: str) -> Document:
    return get_object_or_404(selectors.document_list(user=request.user), number=number)


@portal_required
def document_detail(request, number: str):
    sponsor = _own_sponsor(request)
    document = _document(request, number)
    versions = list(
        selectors.released_version_list(user=request.user)
        .filter(document=document)
        .order_by("-version")
    )
    signatures = signatures_by_version(versions)
    for version in versions:
        version.signature_rows = signatures[version.pk]
    in_force = next((v for v in versions if v.version == document.in_force_version), None)
    context = {
        "sponsor": sponsor,
        "document": document,
        "versions": versions,
        "in_force": in_force,
    }
    return render(request, "portal/document_detail.html", context)


@portal_required
def version_file(request, number: str, version: int):
    _own_sponsor(request)
    record = get_object_or_404(
        selectors.released_version_list(user=request.user),
        document__number=number,
        version=version,
    )
    return serve_version_file(request, record)


@portal_required
def training_roster(request):
    sponsor = _own_sponsor(request)
    matrix = selectors.training_roster(user=request.user, sponsor=sponsor)
    page = Paginator(matrix.rows, MATRIX_PAGE_SIZE).get_page(request.GET.get("page"))
    context = {"sponsor": sponsor, "matrix": matrix, "page": page}
    return render(request, "portal/training_roster.html", context)
