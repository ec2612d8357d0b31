"""Suppliers of materials. The approved supplier list grows here."""

from django.db import models

from qms.audit import audited
from qms.bounds import identifier_validator


@audited(sponsor=None)
class Supplier(models.Model):
    class Status(models.TextChoices):
        APPROVED = "approved", "Approved"
        CONDITIONAL = "conditional", "Conditionally approved"
        DISQUALIFIED = "disqualified", "Disqualified"
        PENDING = "pending", "Qualification pending"

    code = models.CharField(max_length=40, unique=True, validators=[identifier_validator])
    name = models.CharField(max_length=200)
    country = models.CharField(max_length=2, blank=True)
    gln = models.CharField(max_length=13, blank=True, help_text="GS1 location number.")
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.PENDING)

    class Meta:
        ordering = ["code"]

    def __str__(self) -> str:
        return self.name

    @property
    def may_supply(self) -> bool:
        return self.status in {self.Status.APPROVED, self.Status.CONDITIONAL}
