"""Change control across sponsors: change requests and each sponsor's obligation."""

from django.apps import AppConfig


class ChangecontrolConfig(AppConfig):
    name = "changecontrol"
    verbose_name = "Change control"
