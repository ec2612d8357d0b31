"""Controlled documents, their versions and the training they require."""

from django.apps import AppConfig


class DocumentsConfig(AppConfig):
    name = "documents"
    verbose_name = "Documents and training"
