"""The isolation-matrix entries (tests/test_isolation.py) of the manufacturing-record acts: every
page and POST is for CMO staff only (sponsor users 403), another sponsor's lot, batch, MBR or
product is a 404. Posted empty, each act is refused (400) by its form or its service; drafting a
new MBR version needs no input and succeeds (302), as does opening an effective version's edit
page (sent back to the version)."""

OWN, OTHER = "own", "other"


def _lot(w, s, a):
    return [w.mfg[s]["lot"].lot_number]


def _batch(w, s, a):
    return [w.mfg[s]["batch"].number]


def _step(w, s, a):
    return [w.mfg[s]["batch"].number, 1]


def _use(w, s, a):
    batch = w.mfg[s]["batch"]
    return [batch.number, batch.equipment_uses.order_by("pk").first().pk]


def _mbr(w, s, a):
    return [w.mfg[s]["mbr"].pk]


def _tank(w, s, a):
    return [w.mfg["tanks"][s].code]


def _cleaning(w, s, a):
    """The one cleaning the world records is of the shared tank (the own side's); asked for
    under the other side's tank, it is not found."""
    from batches.models import CleaningRecord

    cleaning = CleaningRecord.objects.get(equipment=w.mfg["tanks"][OWN])
    return [w.mfg["tanks"][s].code, cleaning.pk]


def _cleaning_expected(actor, side):
    from tests.test_isolation import SPONSOR_ACTORS

    if actor in SPONSOR_ACTORS:
        return 403
    return 400 if side == OWN else 404


def _routes() -> dict:
    from tests.test_isolation import Route

    def act(args, ok=400):
        return Route("cmo", args=args, method="post", ok=ok)

    return {
        "batches:lot-receive": Route("cmo", scoped=False),
        "batches:lot-disposition": act(_lot),
        "batches:lab-result-add": act(_lot),
        "batches:lot-ship": act(_lot),
        "batches:shipments": Route("cmo", scoped=False),
        "batches:batch-new": Route("cmo", scoped=False),
        "batches:execution": Route("cmo", args=_batch),
        "batches:batch-start": act(_batch),
        "batches:step-record": act(_step),
        "batches:step-verify": act(_step),
        "batches:batch-consume": act(_batch),
        "batches:equipment-use-start": act(_batch),
        "batches:equipment-use-end": act(_use),
        "batches:batch-complete": act(_batch),
        "batches:batch-submit": act(_batch),
        "batches:packaging-start": act(_batch),
        "batches:line-clearance": act(_batch),
        "batches:label-reconciliation": act(_batch),
        "batches:mbr-new-version": act(lambda w, s, a: [w.products[s].pk], ok=302),
        "batches:mbr-edit": Route("cmo", args=_mbr, ok=302),
        "batches:mbr-review": act(_mbr),
        "batches:mbr-approve": act(_mbr),
        "batches:mbr-effective": act(_mbr),
        "batches:cleaning-record": Route("cmo", args=_tank, method="post", ok=400, site_wide=True),
        "batches:cleaning-verify": Route(
            "cmo", args=_cleaning, method="post", expect=_cleaning_expected
        ),
    }


def __getattr__(name: str):
    """`ROUTES`, built when tests/test_isolation.py reads it (its Route class is defined by
    then; this module is imported before it is)."""
    if name == "ROUTES":
        routes = _routes()
        globals()["ROUTES"] = routes
        return routes
    raise AttributeError(name)
