"""Kernel pages: landing, the audit trail browser, in-app notifications, and error pages."""

import django_filters
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.db import DatabaseError
from django.http import HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.template import TemplateDoesNotExist, TemplateSyntaxError
from django.template.loader import render_to_string
from django.urls import NoReverseMatch
from django.utils.html import escape
from django.views.decorators.http import require_POST, require_safe

from sponsors.selectors import is_sponsor_user, sponsor_list

from .access import cmo_required
from .errors import RuleViolation
from .models import AuditEvent
from .notifications import notification_mark_read, notifications_for


@login_required
@require_safe
def home(request):
    if is_sponsor_user(request.user):
        return redirect("portal:home")
    from sponsors.views import dashboard

    return dashboard(request)


def locked_out(request, credentials=None, *args, **kwargs):
    """django-axes lockout response (21 CFR 11.300(d))."""
    detail = "This account is locked after 5 failed attempts; try again in 15 minutes."
    if request.path.startswith("/api/"):
        return JsonResponse({"error": "account_locked", "detail": detail}, status=403)
    return render(request, "registration/locked.html", {"detail": detail}, status=403)


class AuditEventFilter(django_filters.FilterSet):
    sponsor = django_filters.ModelChoiceFilter(queryset=None, label="Sponsor")
    model = django_filters.CharFilter(label="Record type", lookup_expr="icontains")
    object_id = django_filters.CharFilter(label="Record id")
    actor = django_filters.CharFilter(field_name="actor_username", label="User")
    since = django_filters.IsoDateTimeFilter(field_name="occurred_at", lookup_expr="gte")
    until = django_filters.IsoDateTimeFilter(field_name="occurred_at", lookup_expr="lte")

    class Meta:
        model = AuditEvent
        fields = ["sponsor", "model", "object_id", "actor", "since", "until"]

    def __init__(self, *args, user=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.filters["sponsor"].queryset = sponsor_list(user=user)


@cmo_required
def audit_list(request):
    events = AuditEvent.objects.for_user(request.user).select_related("sponsor").order_by("-seq")
    filterset = AuditEventFilter(request.GET, queryset=events, user=request.user)
    page = Paginator(filterset.qs, 50).get_page(request.GET.get("page"))
    return render(request, "qms/audit_list.html", {"filter": filterset, "page": page})


@login_required
@require_safe
def notification_list(request):
    page = Paginator(notifications_for(request.user), 25).get_page(request.GET.get("page"))
    return render(request, "qms/notifications.html", {"page": page})


@login_required
@require_POST
def notification_read(request, pk: int):
    notification = get_object_or_404(notifications_for(request.user), pk=pk)
    try:
        notification_mark_read(notification=notification, user=request.user)
    except RuleViolation as error:
        messages.error(request, error.detail)
    if request.htmx:
        return HttpResponse(render_to_string("qms/_notification_read.html", request=request))
    return redirect("notifications")


def _error_page(request, status: int, title: str, detail: str):
    """The project's own error page: `{"error", "detail"}` under /api/, HTML elsewhere; never
    anything internal (no traceback, settings or query)."""
    if request.path.startswith("/api/"):
        return JsonResponse(
            {"error": title.lower().replace(" ", "_"), "detail": detail}, status=status
        )
    return render(request, "error.html", {"title": title, "detail": detail}, status=status)


def _bare_error_page(status: int, title: str, detail: str) -> HttpResponse:
    return HttpResponse(
        f"<!doctype html><title>{escape(title)}</title><h1>{escape(title)}</h1>"
        f"<p>{escape(detail)}</p>",
        status=status,
    )


def handler403(request, exception=None):
    detail = str(exception) if exception and str(exception) else "You may not open this page."
    return _error_page(request, 403, "Forbidden", detail)


def handler404(request, exception=None):
    return _error_page(request, 404, "Not found", "No such page or record, or not yours to see.")


def handler500(request):
    """The failure may be the database or a template: when the full page cannot be made, a bare
    one is served."""
    title, detail = "Server error", "Something went wrong on our side."
    try:
        return _error_page(request, 500, title, detail)
    except (DatabaseError, NoReverseMatch, TemplateDoesNotExist, TemplateSyntaxError):
        return _bare_error_page(500, title, detail)


def handler400(request, exception=None):
    return _error_page(request, 400, "Bad request", "The request could not be understood.")
