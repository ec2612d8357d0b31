"""This app's entries of the isolation matrix (tests/test_isolation.py): per side, a sponsor's
SOP with an effective version and its file, a role training requirement and a signed training
record of the plant's QA approver (who worked on both sponsors' batches)."""

from django.contrib.auth import get_user_model
from django.core.files.uploadedfile import SimpleUploadedFile

from documents import services
from sponsors.models import Role
from tests.factories import PASSWORD

OWN, OTHER = "own", "other"
MARKER = "ZZOTHER"


def pdf_bytes(text: str) -> bytes:
    return b"%PDF-1.4\n% " + text.encode() + b"\n%%EOF\n"


def build(world) -> dict:
    author = get_user_model().objects.get(username="m-root")
    signer = get_user_model().objects.get(username="m-plant")
    out = {}
    for side in (OWN, OTHER):
        tag = MARKER if side == OTHER else "Alpha"
        document = services.document_create(
            number=f"SOP-{tag}-1",
            title=f"{tag} line clearance",
            doc_type="sop",
            sponsor=world.sponsors[side],
            by=author,
        )
        version = services.version_create_draft(
            document=document,
            change_summary=f"{tag} first issue",
            upload=SimpleUploadedFile(f"{tag}-clearance.pdf", pdf_bytes(f"{tag} matrix")),
            by=author,
        )
        services.version_submit_for_review(version=version, by=author)
        services.version_review(version=version, user=signer, password=PASSWORD)
        services.version_approve(version=version, user=signer, password=PASSWORD)
        requirement = services.training_requirement_add(
            document=document, role=Role.CMO_QA_APPROVER, by=author
        )
        record = services.training_record(user=signer, version=version, trainee_password=PASSWORD)
        out[side] = {
            "document": document,
            "version": version,
            "requirement": requirement,
            "record": record,
        }
    return out


def _number(world, side, actor):
    return [world.documents[side]["document"].number]


def _version(world, side, actor):
    version = world.documents[side]["version"]
    return [version.document.number, version.version]


def _requirement(world, side, actor):
    return [*_number(world, side, actor), world.documents[side]["requirement"].pk]


def _routes() -> dict:
    """Built on first access: `Route` lives in tests/test_isolation.py, which imports this module
    before defining it."""
    from tests.test_isolation import Route

    return {
        "documents:list": Route("cmo", scoped=False),
        "documents:create": Route("cmo", scoped=False),
        "documents:training-matrix": Route("cmo", scoped=False),
        "documents:detail": Route("cmo", args=_number),
        "documents:new-version": Route("cmo", args=_number, method="post", ok=400),
        "documents:requirement-add": Route("cmo", args=_number, method="post", ok=400),
        "documents:requirement-remove": Route("cmo", args=_requirement, method="post", ok=400),
        "documents:version": Route("cmo", args=_version),
        "documents:file": Route("cmo", args=_version),
        "documents:attach": Route("cmo", args=_version, method="post", ok=400),
        "documents:submit": Route("cmo", args=_version, method="post", ok=400),
        "documents:return": Route("cmo", args=_version, method="post", ok=400),
        "documents:review": Route("cmo", args=_version, method="post", ok=400),
        "documents:approve": Route("cmo", args=_version, method="post", ok=400),
        "documents:make-effective": Route("cmo", args=_version, method="post", ok=400),
        "documents:obsolete": Route("cmo", args=_version, method="post", ok=400),
        "documents:train": Route("cmo", args=_version, method="post", ok=400),
        "portal_documents:list": Route("portal", scoped=False),
        "portal_documents:training": Route("portal", scoped=False),
        "portal_documents:detail": Route("portal", args=_number),
        "portal_documents:file": Route("portal", args=_version),
        "api:document-list": Route("api", scoped=False),
        "api:document-detail": Route("api", args=_number),
        "api:document-version-list": Route("api", scoped=False),
        "api:document-version-detail": Route(
            "api", args=lambda w, s, a: [w.documents[s]["version"].pk]
        ),
        "api:training-record-list": Route("api", scoped=False),
        "api:training-record-detail": Route(
            "api", args=lambda w, s, a: [w.documents[s]["record"].pk]
        ),
    }


def __getattr__(name):
    if name == "ROUTES":
        routes = _routes()
        globals()["ROUTES"] = routes
        return routes
    raise AttributeError(name)
