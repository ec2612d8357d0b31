"""Suppliers and the approved supplier list."""

from django.apps import AppConfig


class SuppliersConfig(AppConfig):
    name = "suppliers"
