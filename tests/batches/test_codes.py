"""Codes that appear in addresses (materials, equipment, customers, suppliers, products) follow
the one identifier pattern wherever they are entered (admin forms validate the model)."""

import pytest
from django.core.exceptions import ValidationError

from batches.models import Customer, Equipment, Material
from sponsors.models import Product
from suppliers.models import Supplier
from tests.factories import SponsorFactory

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("code", ["TANK/4", "TANK 4", "TANK%2F4", "-TANK", "T\x00"])
@pytest.mark.parametrize(
    "build",
    [
        lambda code: Material(code=code, name="Lactose", kind="raw", unit="kg"),
        lambda code: Equipment(code=code, name="Tank", kind="tank", qualified_until="2099-01-01"),
        lambda code: Customer(code=code, name="Northwind"),
        lambda code: Supplier(code=code, name="Chemco", status="approved"),
        lambda code: Product(sponsor=SponsorFactory(), code=code, name="Alphacillin"),
    ],
    ids=["material", "equipment", "customer", "supplier", "product"],
)
def test_a_code_that_cannot_stand_in_an_address_is_refused(build, code):
    record = build(code)

    with pytest.raises(ValidationError) as refused:
        record.full_clean()

    assert "it appears in addresses (URLs)" in str(refused.value.message_dict["code"])


def test_a_plain_code_is_accepted():
    Material(code="RM-IBU.2:a+b_c", name="Ibuprofen", kind="raw", unit="kg").full_clean()
