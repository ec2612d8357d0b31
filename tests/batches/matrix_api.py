"""The manufacturing API's write routes in the isolation matrix (tests/test_isolation.py).

Each is posted with an empty JSON body: CMO users get 400 on their own sponsor's record (the
input is missing) or the service's refusal where the route needs no input (409: the world's
batches are released, its MBRs effective, its equipment uses ended), 404 on the other sponsor's;
sponsor users get 403 on every one. Equipment is site-wide: every CMO user reaches it."""

OWN, OTHER = "own", "other"


def _lot(w, s, a):
    return [w.mfg[s]["lot"].lot_number]


def _batch(w, s, a):
    return [w.mfg[s]["batch"].number]


def _mbr(w, s, a):
    return [w.mfg[s]["mbr"].pk]


def _use(w, s, a):
    batch = w.mfg[s]["batch"]
    return [batch.number, batch.equipment_uses.order_by("id").first().pk]


def _cleaning(w, s, a):
    """The one cleaning in the world is on the shared tank; site records are the same for both
    sides."""
    tank = w.mfg["tanks"][OWN]
    return [tank.code, tank.cleanings.order_by("id").first().pk]


def _routes() -> dict:
    from tests.test_isolation import Route

    def write(args, ok=400, **kwargs):
        return Route(
            "api", args=args, method="post", json_body="{}", ok=ok, cmo_writes=True, **kwargs
        )

    return {
        "api:lot-disposition": write(_lot),
        "api:lot-lab-results": write(_lot),
        "api:batch-start": write(_batch, ok=409),
        "api:batch-steps": write(_batch),
        "api:batch-step-verify": write(lambda w, s, a: [*_batch(w, s, a), 1]),
        "api:batch-consumptions": write(_batch),
        "api:batch-equipment-uses": write(_batch),
        "api:batch-equipment-use-end": write(_use, ok=409),
        "api:batch-packaging": write(_batch),
        "api:batch-line-clearance": write(_batch),
        "api:batch-reconciliation": write(_batch),
        "api:batch-complete": write(_batch),
        "api:batch-submit-for-review": write(_batch, ok=409),
        "api:equipment-cleanings": write(lambda w, s, a: [w.mfg["tanks"][s].code], site_wide=True),
        "api:equipment-cleaning-verify": write(_cleaning, site_wide=True),
        "api:master-batch-record-review": write(_mbr),
        "api:master-batch-record-approve": write(_mbr),
        "api:master-batch-record-make-effective": write(_mbr, ok=409),
    }


def __getattr__(name: str):
    """`ROUTES`, built when tests/test_isolation.py reads it (its Route class is defined by
    then; this module is imported before it is)."""
    if name == "ROUTES":
        routes = _routes()
        globals()["ROUTES"] = routes
        return routes
    raise AttributeError(name)
