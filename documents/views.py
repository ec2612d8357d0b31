"""CMO pages of controlled documents and training: the document list, a document with its
version history, requirements and who must retrain, a version with its file, signatures and
training records, every lifecycle action, and the training matrix."""

import hashlib
from datetime import UTC

import django_filters
from django import forms
from django.contrib import messages
from django.contrib.auth import get_user_model
from django.contrib.contenttypes.models import ContentType
from django.core.files.storage import default_storage
from django.core.paginator import Paginator
from django.db.models import Exists, OuterRef, Q
from django.http import Http404, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.utils.http import content_disposition_header
from django.views.decorators.http import require_POST

from qms.access import cmo_required
from qms.errors import RuleViolation
from qms.forms import signature_password_field
from qms.models import Signature
from qms.records import record_trail
from qms.signatures import signature_check
from qms.tenancy import sponsor_ids_for
from sponsors.models import AccessGrant, Sponsor, UserProfile
from sponsors.selectors import sponsor_list

from . import selectors, services
from .models import Document, DocumentType, DocumentVersion, TrainingRequirement, _governs

PAGE_SIZE = 25
MATRIX_PAGE_SIZE = 25
Status = DocumentVersion.Status


def moment_field(label: str, help_text: str = "") -> forms.DateTimeField:
    return forms.DateTimeField(
        label=label,
        required=False,
        help_text=help_text,
        widget=forms.DateTimeInput(attrs={"type": "datetime-local"}),
    )


def aware(moment):
    if moment is not None and timezone.is_naive(moment):
        return timezone.make_aware(moment, UTC)
    return moment


def may(user, sponsor_id, action: str) -> bool:
    if user.is_superuser:
        return True
    ids = sponsor_ids_for(user, action)
    return sponsor_id in ids if sponsor_id is not None else bool(ids)


# --- the file ---------------------------------------------------------------------------------


def serve_version_file(request, version: DocumentVersion):
    """Send a version's file under its recorded name and type, after checking it still has the
    SHA-256 recorded at upload; a missing or altered file is an error page, never served."""
    if not version.has_file:
        raise Http404(f"{version.label} has no file.")
    try:
        stored = default_storage.open(version.file.name, "rb")
    except OSError:
        return render(
            request,
            "error.html",
            {
                "title": "File missing",
                "detail": f"The file of {version.label} ({version.file_name}) is missing from "
                "storage. Tell QA: the controlled copy must be restored from backup.",
            },
            status=404,
        )
    with stored:
        content = stored.read()
    actual = hashlib.sha256(content).hexdigest()
    if actual != version.sha256:
        return render(
            request,
            "error.html",
            {
                "title": "File integrity check failed",
                "detail": f"The stored file of {version.label} ({version.file_name}) does not "
                f"match the SHA-256 recorded at upload ({version.sha256[:16]}…; the file now "
                f"has {actual[:16]}…): it was changed after upload, so it is not served. Tell "
                "QA.",
            },
            status=409,
        )
    content_type = version.content_type or "application/octet-stream"
    response = HttpResponse(content, content_type=content_type)
    response["Content-Disposition"] = content_disposition_header(True, version.file_name)
    response["X-Content-SHA256"] = version.sha256
    return response


def signatures_by_version(versions) -> dict[int, list]:
    """{version id: [(signature, check)]} for several versions in one query."""
    versions = list(versions)
    if not versions:
        return {}
    by_pk = {str(v.pk): v for v in versions}
    found: dict[int, list] = {v.pk: [] for v in versions}
    signatures = Signature.objects.filter(
        content_type=ContentType.objects.get_for_model(DocumentVersion),
        object_id__in=list(by_pk),
    ).select_related("content_type")
    for signature in signatures:
        version = by_pk[signature.object_id]
        found[version.pk].append((signature, signature_check(signature, version)))
    return found


def label_statuses(page):
    """Give each annotated document of a page the label of its latest version's status."""
    labels = dict(Status.choices)
    for document in page:
        document.latest_status_label = labels.get(document.latest_status, "")
    return page


# --- list -------------------------------------------------------------------------------------


class DocumentFilter(django_filters.FilterSet):
    q = django_filters.CharFilter(method="search", label="Search")
    sponsor = django_filters.ModelChoiceFilter(
        queryset=Sponsor.objects.none(), method="for_sponsor", label="Sponsor"
    )
    site_wide = django_filters.BooleanFilter(
        field_name="sponsor",
        lookup_expr="isnull",
        label="Site-wide",
        widget=forms.NullBooleanSelect,
    )
    doc_type = django_filters.ChoiceFilter(choices=DocumentType.choices, label="Type")
    sort = django_filters.OrderingFilter(
        fields=(("number", "number"), ("title", "title"), ("doc_type", "type")), label="Sort"
    )

    class Meta:
        model = Document
        fields = ["q", "sponsor", "site_wide", "doc_type"]

    def __init__(self, *args, user=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.filters["sponsor"].queryset = sponsor_list(user=user)

    def search(self, queryset, name, value):
        return queryset.filter(Q(number__icontains=value) | Q(title__icontains=value))

    def for_sponsor(self, queryset, name, value):
        """The sponsor's documents and the site-wide ones that govern its products."""
        return queryset.filter(
            Q(sponsor=value) | (Q(sponsor__isnull=True) & _governs([value.pk], "number"))
        )


@cmo_required
def document_list(request):
    documents = selectors.document_list(user=request.user)
    filterset = DocumentFilter(request.GET, queryset=documents, user=request.user)
    page = label_statuses(Paginator(filterset.qs, PAGE_SIZE).get_page(request.GET.get("page")))
    context = {
        "filter": filterset,
        "page": page,
        "may_create": bool(sponsor_ids_for(request.user, "change")) or request.user.is_superuser,
    }
    template = "documents/_document_table.html" if request.htmx else "documents/list.html"
    return render(request, template, context)


class DocumentForm(forms.Form):
    number = forms.CharField(max_length=60, help_text="The reference steps cite, e.g. SOP-QA-001.")
    title = forms.CharField(max_length=200)
    doc_type = forms.ChoiceField(label="Type", choices=DocumentType.choices)
    sponsor = forms.ModelChoiceField(
        queryset=Sponsor.objects.none(),
        required=False,
        empty_label="Site-wide",
        help_text="Leave site-wide unless the document belongs to one sponsor.",
    )

    def __init__(self, *args, user, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["sponsor"].queryset = sponsor_list(user=user, action="change")


@cmo_required
def document_create(request):
    form = DocumentForm(request.POST or None, user=request.user)
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        try:
            document = services.document_create(
                number=data["number"],
                title=data["title"],
                doc_type=data["doc_type"],
                sponsor=data["sponsor"],
                by=request.user,
            )
        except RuleViolation as error:
            form.add_error(None, error.detail)
        else:
            messages.success(request, f"{document.number} created; add its first version.")
            return redirect(document.get_absolute_url())
    status = 400 if request.method == "POST" else 200
    return render(request, "documents/create.html", {"form": form}, status=status)


# --- a document ---------------------------------------------------------------------------------


class NewVersionForm(forms.Form):
    change_summary = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 3}), help_text="What changes, and why."
    )
    file = forms.FileField(required=False, help_text="PDF, DOCX, XLSX, PNG, JPG, TXT or CSV.")


def _cmo_people(sponsor_id):
    """Active CMO staff with a grant on the sponsor (on any sponsor for a site-wide document)."""
    grants = AccessGrant.objects.active().filter(user=OuterRef("pk"))
    if sponsor_id is not None:
        grants = grants.filter(sponsor_id=sponsor_id)
    return (
        get_user_model()
        .objects.filter(is_active=True)
        .filter(Exists(grants))
        .exclude(Exists(UserProfile.objects.filter(user=OuterRef("pk"))))
        .order_by("last_name", "first_name", "username")
    )


class PersonChoiceField(forms.ModelChoiceField):
    def label_from_instance(self, obj):
        return f"{obj.get_full_name() or obj.get_username()} ({obj.get_username()})"


class RequirementForm(forms.Form):
    role = forms.ChoiceField(
        choices=[("", "—"), *[(r.value, r.label) for r in selectors.CMO_ROLES]], required=False
    )
    person = PersonChoiceField(queryset=None, required=False, help_text="Or one named person.")

    def __init__(self, *args, document, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["person"].queryset = _cmo_people(document.sponsor_id)


class ReasonForm(forms.Form):
    reason = forms.CharField(max_length=500)


def _document(request, number: str) -> Document:
    return get_object_or_404(selectors.document_list(user=request.user), number=number)


def document_context(request, document: Document, **given) -> dict:
    user = request.user
    versions = list(
        selectors.version_list(user=user).filter(document=document).order_by("-version")
    )
    requirements = list(
        TrainingRequirement.objects.filter(document=document).select_related("user")
    )
    statuses = selectors.training_statuses(document)
    may_change = may(user, document.sponsor_id, "change")
    unfinished = next((v for v in versions if v.status in DocumentVersion.UNFINISHED), None)
    withdrawn = next((v for v in versions if v.status == Status.OBSOLETE), None)
    may_draft = may_change and unfinished is None and withdrawn is None
    signatures = signatures_by_version(versions)
    for version in versions:
        version.signature_rows = signatures[version.pk]
    in_force = next((v for v in versions if v.version == document.in_force_version), None)
    return {
        "document": document,
        "versions": versions,
        "requirements": requirements,
        "statuses": statuses,
        "must_retrain": [
            (p, s) for p, s in statuses if s.state == selectors.TrainingState.OUT_OF_DATE
        ],
        "unfinished": unfinished,
        "withdrawn": withdrawn,
        "may_change": may_change,
        "version_form": given.get("version_form") or (NewVersionForm() if may_draft else None),
        "requirement_form": given.get("requirement_form")
        or (RequirementForm(document=document) if may_change else None),
        "remove_form": given.get("remove_form"),
        "remove_pk": given.get("remove_pk"),
        **record_trail(document, *versions, *requirements),
        "signatures": in_force.signature_rows if in_force else [],
    }


@cmo_required
def document_detail(request, number: str):
    document = _document(request, number)
    return render(request, "documents/detail.html", document_context(request, document))


def _document_rerender(request, document, **given):
    context = document_context(request, document, **given)
    return render(request, "documents/detail.html", context, status=400)


@cmo_required
@require_POST
def version_create(request, number: str):
    document = _document(request, number)
    form = NewVersionForm(request.POST, request.FILES)
    if form.is_valid():
        try:
            version = services.version_create_draft(
                document=document,
                change_summary=form.cleaned_data["change_summary"],
                upload=form.cleaned_data["file"],
                by=request.user,
            )
        except RuleViolation as error:
            form.add_error(None, error.detail)
        else:
            messages.success(request, f"{version.label} drafted.")
            return redirect(version.get_absolute_url())
    return _document_rerender(request, document, version_form=form)


@cmo_required
@require_POST
def requirement_add(request, number: str):
    document = _document(request, number)
    form = RequirementForm(request.POST, document=document)
    if form.is_valid():
        try:
            services.training_requirement_add(
                document=document,
                role=form.cleaned_data["role"],
                user=form.cleaned_data["person"],
                by=request.user,
            )
        except RuleViolation as error:
            form.add_error(None, error.detail)
        else:
            messages.success(request, f"Training requirement of {document.number} added.")
            return redirect(document.get_absolute_url())
    return _document_rerender(request, document, requirement_form=form)


@cmo_required
@require_POST
def requirement_remove(request, number: str, pk: int):
    document = _document(request, number)
    requirement = get_object_or_404(TrainingRequirement, document=document, pk=pk)
    form = ReasonForm(request.POST)
    if form.is_valid():
        try:
            services.training_requirement_remove(
                requirement=requirement, by=request.user, reason=form.cleaned_data["reason"]
            )
        except RuleViolation as error:
            form.add_error(None, error.detail)
        else:
            messages.success(request, f"Training requirement {requirement} removed.")
            return redirect(document.get_absolute_url())
    return _document_rerender(request, document, remove_form=form, remove_pk=requirement.pk)


# --- a version ----------------------------------------------------------------------------------


class AttachForm(forms.Form):
    file = forms.FileField(help_text="Replaces the draft's file.")


class SignForm(forms.Form):
    password = signature_password_field()


class ApproveForm(forms.Form):
    effective_from = moment_field(
        "Effective from (UTC)",
        "Empty: effective now. A future date puts it in force then. A version carried by a "
        "change request takes effect when the change does.",
    )
    password = signature_password_field()


class MakeEffectiveForm(forms.Form):
    effective_from = moment_field("Effective from (UTC)", "Empty: the approved date, else now.")


class TrainingForm(forms.Form):
    trainee = PersonChoiceField(queryset=None)
    completed_at = moment_field("Completed (UTC)", "Empty: now.")
    note = forms.CharField(required=False, max_length=500)
    trainee_password = signature_password_field(
        label="Trainee's password",
        help_text="The trainee signs: read and understood (21 CFR 11.200).",
    )

    def __init__(self, *args, version, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["trainee"].queryset = _cmo_people(version.sponsor_id)


VERSION_FORMS = (
    "attach_form",
    "return_form",
    "review_form",
    "approve_form",
    "effective_form",
    "obsolete_form",
    "training_form",
)


def _version(request, number: str, version: int) -> DocumentVersion:
    return get_object_or_404(
        selectors.version_list(user=request.user),
        document__number=number,
        version=version,
    )


def version_context(request, version: DocumentVersion, **given) -> dict:
    from changecontrol.models import ChangeRequest

    user = request.user
    status = version.status
    may_change = may(user, version.sponsor_id, "change")
    may_approve = may(user, version.sponsor_id, "approve")
    records = list(
        version.training_records.select_related("user", "trainer").order_by("-completed_at")
    )
    signed = _training_signatures(records)
    for record in records:
        record.signature_rows = signed[record.pk]
    lots = selectors.lots_made_under_version(version, user)
    defaults = {
        "attach_form": AttachForm() if status == Status.DRAFT and may_change else None,
        "return_form": ReasonForm() if status == Status.IN_REVIEW and may_change else None,
        "review_form": SignForm()
        if status == Status.IN_REVIEW and not version.reviewed_at and may_change
        else None,
        "approve_form": ApproveForm()
        if status == Status.IN_REVIEW and version.reviewed_at and may_approve
        else None,
        "effective_form": MakeEffectiveForm()
        if status == Status.APPROVED and may_approve and not version.held_by_change
        else None,
        "obsolete_form": ReasonForm() if status == Status.EFFECTIVE and may_approve else None,
        "training_form": TrainingForm(version=version)
        if status in (Status.APPROVED, Status.EFFECTIVE) and may_change
        else None,
    }
    context = {
        "version": version,
        "document": version.document,
        "records": records,
        "lots": list(lots[:50]),
        "lot_count": lots.count(),
        "changes": list(
            ChangeRequest.objects.for_user(user).filter(document_version=version).order_by("number")
        ),
        "may_submit": status == Status.DRAFT and may_change,
        "submit_error": given.get("submit_error", ""),
        **record_trail(version),
    }
    for name in VERSION_FORMS:
        context[name] = given.get(name) or defaults[name]
    return context


def _training_signatures(records) -> dict[int, list]:
    from .models import TrainingRecord

    if not records:
        return {}
    by_pk = {str(r.pk): r for r in records}
    found: dict[int, list] = {r.pk: [] for r in records}
    for signature in Signature.objects.filter(
        content_type=ContentType.objects.get_for_model(TrainingRecord),
        object_id__in=list(by_pk),
    ).select_related("content_type"):
        record = by_pk[signature.object_id]
        found[record.pk].append((signature, signature_check(signature, record)))
    return found


@cmo_required
def version_detail(request, number: str, version: int):
    record = _version(request, number, version)
    return render(request, "documents/version.html", version_context(request, record))


def _version_rerender(request, version, **given):
    version.refresh_from_db()
    context = version_context(request, version, **given)
    return render(request, "documents/version.html", context, status=400)


def _done(request, version, text):
    messages.success(request, text)
    return redirect(version.get_absolute_url())


@cmo_required
def version_file(request, number: str, version: int):
    return serve_version_file(request, _version(request, number, version))


@cmo_required
@require_POST
def version_attach(request, number: str, version: int):
    record = _version(request, number, version)
    form = AttachForm(request.POST, request.FILES)
    if form.is_valid():
        try:
            services.version_attach_file(
                version=record, upload=form.cleaned_data["file"], by=request.user
            )
        except RuleViolation as error:
            form.add_error(None, error.detail)
        else:
            return _done(request, record, f"File of {record.label} attached.")
    return _version_rerender(request, record, attach_form=form)


@cmo_required
@require_POST
def version_submit(request, number: str, version: int):
    record = _version(request, number, version)
    try:
        services.version_submit_for_review(version=record, by=request.user)
    except RuleViolation as error:
        return _version_rerender(request, record, submit_error=error.detail)
    return _done(request, record, f"{record.label} submitted for review.")


@cmo_required
@require_POST
def version_return(request, number: str, version: int):
    record = _version(request, number, version)
    form = ReasonForm(request.POST)
    if form.is_valid():
        try:
            services.version_return_to_draft(
                version=record, by=request.user, reason=form.cleaned_data["reason"]
            )
        except RuleViolation as error:
            form.add_error(None, error.detail)
        else:
            return _done(request, record, f"{record.label} returned to draft.")
    return _version_rerender(request, record, return_form=form)


@cmo_required
@require_POST
def version_review(request, number: str, version: int):
    record = _version(request, number, version)
    form = SignForm(request.POST)
    if form.is_valid():
        try:
            services.version_review(
                version=record,
                user=request.user,
                password=form.cleaned_data["password"],
                request=request,
            )
        except RuleViolation as error:
            form.add_error(None, error.detail)
        else:
            return _done(request, record, f"{record.label} signed: reviewed.")
    return _version_rerender(request, record, review_form=form)


@cmo_required
@require_POST
def version_approve(request, number: str, version: int):
    record = _version(request, number, version)
    form = ApproveForm(request.POST)
    if form.is_valid():
        try:
            services.version_approve(
                version=record,
                user=request.user,
                password=form.cleaned_data["password"],
                effective_from=aware(form.cleaned_data["effective_from"]),
                request=request,
            )
        except RuleViolation as error:
            form.add_error(None, error.detail)
        else:
            record.refresh_from_db()
            return _done(
                request, record, f"{record.label} signed: approved ({record.get_status_display()})."
            )
    return _version_rerender(request, record, approve_form=form)


@cmo_required
@require_POST
def version_make_effective(request, number: str, version: int):
    record = _version(request, number, version)
    form = MakeEffectiveForm(request.POST)
    if form.is_valid():
        try:
            services.version_make_effective(
                version=record,
                by=request.user,
                effective_from=aware(form.cleaned_data["effective_from"]),
            )
        except RuleViolation as error:
            form.add_error(None, error.detail)
        else:
            record.refresh_from_db()
            if record.status == Status.EFFECTIVE:
                return _done(request, record, f"{record.label} is effective.")
            when = f"{record.effective_from:%Y-%m-%d %H:%M} UTC"
            return _done(request, record, f"{record.label} will become effective on {when}.")
    return _version_rerender(request, record, effective_form=form)


@cmo_required
@require_POST
def version_obsolete(request, number: str, version: int):
    record = _version(request, number, version)
    form = ReasonForm(request.POST)
    if form.is_valid():
        try:
            services.version_make_obsolete(
                version=record, by=request.user, reason=form.cleaned_data["reason"]
            )
        except RuleViolation as error:
            form.add_error(None, error.detail)
        else:
            return _done(request, record, f"{record.label} is obsolete; the document is withdrawn.")
    return _version_rerender(request, record, obsolete_form=form)


@cmo_required
@require_POST
def version_train(request, number: str, version: int):
    record = _version(request, number, version)
    form = TrainingForm(request.POST, version=record)
    if form.is_valid():
        trainee = form.cleaned_data["trainee"]
        try:
            services.training_record(
                user=trainee,
                version=record,
                trainee_password=form.cleaned_data["trainee_password"],
                trainer=request.user,
                completed_at=aware(form.cleaned_data["completed_at"]),
                note=form.cleaned_data["note"],
                request=request,
            )
        except RuleViolation as error:
            form.add_error(None, error.detail)
        else:
            name = trainee.get_full_name() or trainee.get_username()
            return _done(request, record, f"Training of {name} on {record.label} recorded.")
    return _version_rerender(request, record, training_form=form)


# --- training matrix ----------------------------------------------------------------------------


class MatrixFilterForm(forms.Form):
    sponsor = forms.ModelChoiceField(
        queryset=Sponsor.objects.none(), required=False, empty_label="All sponsors"
    )
    doc_type = forms.ChoiceField(
        label="Type", choices=[("", "All types"), *DocumentType.choices], required=False
    )
    gaps = forms.BooleanField(label="Only people with gaps", required=False)

    def __init__(self, *args, user, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["sponsor"].queryset = sponsor_list(user=user)


@cmo_required
def training_matrix(request):
    form = MatrixFilterForm(request.GET or None, user=request.user)
    data = form.cleaned_data if form.is_valid() else {}
    matrix = selectors.training_matrix(
        user=request.user, sponsor=data.get("sponsor"), doc_type=data.get("doc_type") or ""
    )
    rows = [row for row in matrix.rows if row.gaps] if data.get("gaps") else matrix.rows
    page = Paginator(rows, MATRIX_PAGE_SIZE).get_page(request.GET.get("page"))
    context = {"form": form, "matrix": matrix, "page": page}
    return render(request, "documents/training_matrix.html", context)
