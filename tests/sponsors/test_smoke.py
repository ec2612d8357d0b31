from qms.tenancy import sponsor_ids_for


def test_cmo_staff_scope_is_own_sponsor(cmo_staff, sponsor_a, sponsor_b):
    assert sponsor_ids_for(cmo_staff, "view") == {sponsor_a.pk}
