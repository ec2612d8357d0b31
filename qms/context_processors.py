"""Template context shared by every page."""

from django.conf import settings


def navigation(request):
    user = getattr(request, "user", None)
    unread = 0
    is_sponsor_user = False
    if user is not None and user.is_authenticated:
        from sponsors.selectors import user_sponsor

        is_sponsor_user = user_sponsor(user) is not None
        unread = user.notifications.filter(read_at__isnull=True).count()
    return {
        "site_name": settings.QMS_SITE_NAME,
        "unread_notifications": unread,
        "is_sponsor_user": is_sponsor_user,
    }
