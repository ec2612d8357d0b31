"""Which side of the house a page is for: CMO pages refuse sponsor users, portal pages refuse
everyone but sponsor users, and on the portal only a sponsor approver may submit anything (an
auditor's access is read-only). Records out of a user's sponsor scope are 404s (tenancy)."""

from functools import wraps

from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied

from sponsors.selectors import is_sponsor_user

from .tenancy import sponsor_ids_for

SAFE_METHODS = ("GET", "HEAD", "OPTIONS")


def cmo_required(view):
    @login_required
    @wraps(view)
    def wrapper(request, *args, **kwargs):
        if is_sponsor_user(request.user):
            raise PermissionDenied("This page is for CMO staff; sponsor users use the portal.")
        return view(request, *args, **kwargs)

    return wrapper


def portal_required(view):
    @login_required
    @wraps(view)
    def wrapper(request, *args, **kwargs):
        if not is_sponsor_user(request.user):
            raise PermissionDenied("The portal is for sponsor users.")
        if request.method not in SAFE_METHODS and not sponsor_ids_for(
            request.user, "sponsor_approve"
        ):
            raise PermissionDenied("Your access is read-only: you may not change records.")
        return view(request, *args, **kwargs)

    return wrapper
