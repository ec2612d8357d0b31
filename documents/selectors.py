"""Scoped reads of controlled documents and training: the version in force at a time, a person's
training status, who must retrain, the training matrix and roster, and the lots made under a
document version."""

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

from django.contrib.auth import get_user_model
from django.db.models import Exists, IntegerField, OuterRef, Q, Subquery
from django.utils import timezone

from batches.models import ExecutedStep, Lot
from sponsors.models import AccessGrant, Role, Sponsor

from .models import (
    BatchDocument,
    Document,
    DocumentVersion,
    TrainingRecord,
    TrainingRequirement,
    _governs,
)

CMO_ROLES = (Role.CMO_STAFF, Role.CMO_QA_APPROVER)


class TrainingState(StrEnum):
    CURRENT = "current"
    OUT_OF_DATE = "out_of_date"
    NEVER = "never"
    NO_VERSION = "no_version"


STATE_LABELS = {
    TrainingState.CURRENT: "current",
    TrainingState.OUT_OF_DATE: "out of date",
    TrainingState.NEVER: "never trained",
    TrainingState.NO_VERSION: "no effective version",
}


@dataclass(frozen=True)
class TrainingStatus:
    """A person's training on a document at a time, against the version then in force."""

    state: TrainingState
    in_force: int | None = None  # version number in force
    trained: int | None = None  # highest version trained on (completed by then)
    completed_at: datetime | None = None

    @property
    def label(self) -> str:
        return STATE_LABELS[self.state]

    @property
    def is_current(self) -> bool:
        return self.state == TrainingState.CURRENT


# --- documents and versions ---------------------------------------------------------------


def _in_force_number(at=None) -> Subquery:
    """The number of the version of `OuterRef("pk")` in force at `at`: effective by then, and
    neither superseded nor withdrawn by then."""
    at = at or timezone.now()
    return Subquery(
        DocumentVersion.objects.filter(
            Q(superseded_at__isnull=True) | Q(superseded_at__gt=at),
            Q(withdrawn_at__isnull=True) | Q(withdrawn_at__gt=at),
            document=OuterRef("pk"),
            status__in=DocumentVersion.IN_FORCE,
            effective_from__lte=at,
        )
        .order_by("-effective_from", "-version")
        .values("version")[:1],
        output_field=IntegerField(),
    )


def document_list(*, user):
    """The documents the user may see, each annotated with the version in force now
    (`in_force_version`), the latest version (`latest_version`) and its status."""
    latest = DocumentVersion.objects.filter(document=OuterRef("pk")).order_by("-version")
    return (
        Document.objects.for_user(user)
        .select_related("sponsor", "owner")
        .annotate(
            in_force_version=_in_force_number(),
            latest_version=Subquery(latest.values("version")[:1]),
            latest_status=Subquery(latest.values("status")[:1]),
        )
    )


def document_get(*, user, number: str) -> Document:
    return document_list(user=user).get(number=number)


def version_list(*, user):
    return DocumentVersion.objects.for_user(user).select_related(
        "document", "document__sponsor", "author", "reviewed_by", "approved_by"
    )


def released_version_list(*, user):
    """Versions a sponsor's people may see: approved or later (never a draft or one in review)."""
    return version_list(user=user).filter(status__in=DocumentVersion.RELEASED)


def _pick_in_force(versions, at: datetime) -> dict[int, DocumentVersion]:
    """From candidate versions ordered by document, latest effective date first: the one in force
    at `at` per document (none when the document was withdrawn by then)."""
    chosen: dict[int, DocumentVersion] = {}
    for version in versions:
        if version.document_id in chosen:
            continue
        chosen[version.document_id] = version
    return {
        doc_id: version
        for doc_id, version in chosen.items()
        if version.withdrawn_at is None or version.withdrawn_at > at
    }


def versions_in_force(documents, at: datetime | None = None) -> dict[int, DocumentVersion]:
    """{document id: version in force at `at`} for several documents, in one query."""
    at = at or timezone.now()
    candidates = (
        DocumentVersion.objects.filter(
            document__in=documents,
            status__in=DocumentVersion.IN_FORCE,
            effective_from__lte=at,
        )
        .select_related("document")
        .order_by("document_id", "-effective_from", "-version")
    )
    return _pick_in_force(candidates, at)


def versions_in_force_by_number(numbers, at: datetime) -> dict[str, DocumentVersion]:
    """{document number: version in force at `at`} for the documents with these numbers."""
    numbers = sorted(set(numbers))
    if not numbers:
        return {}
    candidates = (
        DocumentVersion.objects.filter(
            document__number__in=numbers,
            status__in=DocumentVersion.IN_FORCE,
            effective_from__lte=at,
        )
        .select_related("document")
        .order_by("document_id", "-effective_from", "-version")
    )
    return {v.document.number: v for v in _pick_in_force(candidates, at).values()}


def version_in_force(document: Document, at: datetime | None = None) -> DocumentVersion | None:
    """The version of `document` in force at `at` (default now): the effective (or since
    superseded) version with the latest effective date on or before `at`; none before the
    first effective date or after the document was withdrawn."""
    return versions_in_force([document], at).get(document.pk)


# --- who must be trained --------------------------------------------------------------------


def _role_holders(roles, sponsor_id: int | None, at: datetime):
    """Active grants with one of `roles`: on the sponsor, or on any sponsor for a site-wide
    document."""
    grants = AccessGrant.objects.active(at=at).filter(role__in=roles, user__is_active=True)
    if sponsor_id is not None:
        grants = grants.filter(sponsor_id=sponsor_id)
    return grants


def people_required_for(document: Document, at: datetime | None = None):
    """The active users a document's training requirements apply to: the named people, and
    everyone holding a required role on the document's sponsor (on any sponsor for a site-wide
    document), ordered by name."""
    at = at or timezone.now()
    User = get_user_model()
    requirements = list(TrainingRequirement.objects.filter(document=document))
    roles = [r.role for r in requirements if r.role]
    named = [r.user_id for r in requirements if r.user_id]
    match = Q(pk__in=named)
    if roles:
        match |= Q(pk__in=_role_holders(roles, document.sponsor_id, at).values("user_id"))
    return (
        User.objects.filter(match, is_active=True)
        .distinct()
        .order_by("last_name", "first_name", "username")
    )


def required_documents_for(user, at: datetime | None = None):
    """The documents whose training requirements apply to `user`: named, or by a role the user
    holds (on the document's sponsor; on any sponsor for a site-wide document)."""
    at = at or timezone.now()
    held: dict[str, set[int]] = defaultdict(set)
    for role, sponsor_id in (
        AccessGrant.objects.active(at=at).filter(user=user).values_list("role", "sponsor_id")
    ):
        held[role].add(sponsor_id)
    match = Q(user_id=user.pk)
    for role, sponsor_ids in held.items():
        match |= Q(role=role, sponsor__isnull=True) | Q(role=role, sponsor_id__in=sponsor_ids)
    applies = TrainingRequirement.objects.filter(match, document=OuterRef("pk"))
    return Document.objects.filter(Exists(applies)).order_by("number")


def _status(records, in_force: DocumentVersion | None) -> TrainingStatus:
    """`records`: (version number, completed_at) of one person on one document, completed by the
    time of interest."""
    if in_force is None:
        return TrainingStatus(TrainingState.NO_VERSION)
    done = {number: completed for number, completed in records}
    if in_force.version in done:
        return TrainingStatus(
            TrainingState.CURRENT, in_force.version, in_force.version, done[in_force.version]
        )
    earlier = [number for number in done if number < in_force.version]
    if earlier:
        last = max(earlier)
        return TrainingStatus(TrainingState.OUT_OF_DATE, in_force.version, last, done[last])
    return TrainingStatus(TrainingState.NEVER, in_force.version)


def _records(user_ids, document_ids, at: datetime) -> dict[tuple[int, int], list]:
    found: dict[tuple[int, int], list] = defaultdict(list)
    rows = TrainingRecord.objects.filter(
        user_id__in=list(user_ids),
        version__document_id__in=list(document_ids),
        completed_at__lte=at,
    ).values_list("user_id", "version__document_id", "version__version", "completed_at")
    for user_id, document_id, number, completed_at in rows:
        found[(user_id, document_id)].append((number, completed_at))
    return found


def training_status(user, document: Document, at: datetime | None = None) -> TrainingStatus:
    """Is `user` trained on the version of `document` in force at `at`: current, out of date
    (trained only on an earlier version), never, or no version in force."""
    at = at or timezone.now()
    in_force = version_in_force(document, at)
    records = _records([user.pk], [document.pk], at)[(user.pk, document.pk)]
    return _status(records, in_force)


def training_statuses(document: Document, at: datetime | None = None):
    """[(person, TrainingStatus)] for everyone the document's requirements apply to."""
    at = at or timezone.now()
    people = list(people_required_for(document, at))
    in_force = version_in_force(document, at)
    records = _records([p.pk for p in people], [document.pk], at)
    return [(person, _status(records[(person.pk, document.pk)], in_force)) for person in people]


def who_must_retrain(document: Document, at: datetime | None = None):
    """The required people whose training is out of date: trained on an earlier version than
    the one in force, so a new effective version sends them back to training."""
    return [
        (person, status)
        for person, status in training_statuses(document, at)
        if status.state == TrainingState.OUT_OF_DATE
    ]


# --- training matrix and roster -------------------------------------------------------------


@dataclass
class MatrixRow:
    person: object
    cells: list  # one TrainingStatus or None (not required) per column

    @property
    def gaps(self) -> int:
        return sum(1 for cell in self.cells if cell is not None and not cell.is_current)


@dataclass
class Matrix:
    columns: list  # [(document, version in force or None)]
    rows: list[MatrixRow] = field(default_factory=list)


def _matrix(documents: list[Document], at: datetime, people: set[int] | None = None) -> Matrix:
    """People × documents in five queries, however many of either: the in-force versions, the
    requirements, the role grants, the people and their training records."""
    in_force = versions_in_force(documents, at) if documents else {}
    columns = [(doc, in_force.get(doc.pk)) for doc in documents]
    if not documents:
        return Matrix(columns)
    requirements = list(
        TrainingRequirement.objects.filter(document__in=documents).values_list(
            "document_id", "role", "user_id"
        )
    )
    roles = {role for _doc, role, _user in requirements if role}
    holders: dict[str, dict[int | None, set[int]]] = defaultdict(lambda: defaultdict(set))
    if roles:
        for role, sponsor_id, user_id in (
            _role_holders(roles, None, at).values_list("role", "sponsor_id", "user_id").distinct()
        ):
            holders[role][sponsor_id].add(user_id)
    sponsor_of = {doc.pk: doc.sponsor_id for doc in documents}
    required: dict[int, set[int]] = defaultdict(set)  # document → people
    for document_id, role, user_id in requirements:
        if user_id:
            required[document_id].add(user_id)
            continue
        by_sponsor = holders.get(role, {})
        sponsor_id = sponsor_of[document_id]
        if sponsor_id is None:
            for user_ids in by_sponsor.values():
                required[document_id] |= user_ids
        else:
            required[document_id] |= by_sponsor.get(sponsor_id, set())
    everyone = set().union(*required.values()) if required else set()
    if people is not None:
        everyone &= people
    User = get_user_model()
    persons = list(
        User.objects.filter(pk__in=everyone, is_active=True).order_by(
            "last_name", "first_name", "username"
        )
    )
    records = _records([p.pk for p in persons], [doc.pk for doc in documents], at)
    matrix = Matrix(columns)
    for person in persons:
        cells = [
            _status(records[(person.pk, doc.pk)], version)
            if person.pk in required[doc.pk]
            else None
            for doc, version in columns
        ]
        matrix.rows.append(MatrixRow(person, cells))
    return matrix


def training_matrix(
    *,
    user,
    sponsor: Sponsor | None = None,
    doc_type: str = "",
    at: datetime | None = None,
) -> Matrix:
    """People × required documents for the documents the user may see that carry training
    requirements; filtered to one sponsor (its own documents and the site-wide ones that govern
    its products) and a document type. A constant number of queries."""
    at = at or timezone.now()
    documents = Document.objects.for_user(user).filter(
        Exists(TrainingRequirement.objects.filter(document=OuterRef("pk")))
    )
    if sponsor is not None:
        documents = documents.filter(
            Q(sponsor=sponsor) | (Q(sponsor__isnull=True) & _governs([sponsor.pk], "number"))
        )
    if doc_type:
        documents = documents.filter(doc_type=doc_type)
    return _matrix(list(documents.select_related("sponsor").order_by("number")), at)


def roster_people(*, user, sponsor: Sponsor) -> set[int]:
    """The people who performed or verified a step of the sponsor's batches."""
    steps = ExecutedStep.objects.for_user(user).filter(sponsor=sponsor)
    performed = set(steps.values_list("performed_by_id", flat=True).distinct())
    verified = set(
        steps.filter(verified_by__isnull=False).values_list("verified_by_id", flat=True).distinct()
    )
    return performed | verified


def training_roster(*, user, sponsor: Sponsor, at: datetime | None = None) -> Matrix:
    """The sponsor's view: the operators and verifiers of its batches × the documents that govern
    its products (its own and the site-wide ones its master batch records name) that they must
    be trained on, with their status."""
    at = at or timezone.now()
    people = roster_people(user=user, sponsor=sponsor)
    documents = (
        Document.objects.for_user(user)
        .filter(Q(sponsor=sponsor) | (Q(sponsor__isnull=True) & _governs([sponsor.pk], "number")))
        .filter(Exists(TrainingRequirement.objects.filter(document=OuterRef("pk"))))
        .select_related("sponsor")
        .order_by("number")
    )
    return _matrix(list(documents), at, people=people)


def training_record_list(*, user):
    """Training records the user may see, on documents the user may see."""
    return (
        TrainingRecord.objects.for_user(user)
        .filter(version__document__in=Document.objects.for_user(user))
        .select_related("user", "trainer", "version__document")
    )


# --- lots made under a version --------------------------------------------------------------


def lots_made_under_version(version: DocumentVersion, user):
    """The output lots of the batches that ran under `version` (it was in force when they
    started), as the user may see them: a queryset of `batches.Lot`."""
    ran_under = BatchDocument.objects.filter(batch_id=OuterRef("produced_by_id"), version=version)
    return (
        Lot.objects.for_user(user)
        .filter(produced_by__isnull=False)
        .filter(Exists(ran_under))
        .select_related("material", "produced_by", "produced_by__product", "sponsor")
        .order_by("produced_by__started_at", "lot_number")
    )
