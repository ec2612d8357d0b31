"""Deviations, OOS investigations, CAPA and their sponsor deadlines."""

from django.apps import AppConfig


class DeviationsConfig(AppConfig):
    name = "deviations"
    verbose_name = "Quality events"
