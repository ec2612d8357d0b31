"""The manufacturing record and genealogy."""

from django.apps import AppConfig


class BatchesConfig(AppConfig):
    name = "batches"
    verbose_name = "Manufacturing record"
