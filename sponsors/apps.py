"""Sponsors, products, quality agreements, roles and the sponsor portal."""

from django.apps import AppConfig


class SponsorsConfig(AppConfig):
    name = "sponsors"
    verbose_name = "Sponsors and quality agreements"
