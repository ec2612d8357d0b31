"""Governed disposition of a batch and its output lots: release or reject by e-signature, with
every blocking reason named, and the sponsor's release where its quality agreement requires it
(release authority cmo / sponsor / conditional)."""

from collections import defaultdict
from dataclasses import dataclass, field

from django.db import transaction
from django.db.models import F
from django.utils import timezone

from qms.audit import audit_context
from qms.errors import RuleViolation
from qms.models import Signature
from qms.signatures import signature_apply, signer_verify
from qms.tenancy import sponsor_ids_for
from sponsors.models import QualityAgreement, ReleaseAuthority, Severity

from .models import Batch, ExecutedStep, LabResult, Lot, MbrStep, PackagingRecord
from .services import BatchError, oos_results


@dataclass
class ReleaseCheck:
    """Why a batch cannot be released now; `evidence` lists the missing evidence alone."""

    blockers: list[str] = field(default_factory=list)
    evidence: list[str] = field(default_factory=list)
    sponsor_release_required: bool = False
    sponsor_release_reason: str = ""

    @property
    def evidence_complete(self) -> bool:
        return not self.evidence


def _missing_evidence(batch: Batch) -> list[str]:
    return _evidence_gaps(
        batch.mbr.steps.all(), batch.executed_steps.all(), getattr(batch, "packaging", None)
    )


def _evidence_gaps(steps, executed_steps, packaging) -> list[str]:
    missing = []
    executed = {step.step_id: step for step in executed_steps}
    for step in steps:
        done = executed.get(step.pk)
        if done is None:
            missing.append(f"step {step.sequence} ({step.title}) is not recorded")
        elif step.requires_verification and done.verified_by_id is None:
            missing.append(
                f"step {step.sequence} ({step.title}) is not verified by a second person"
            )
    if packaging is None:
        missing.append("packaging evidence is not recorded")
    else:
        if packaging.line_cleared_at is None:
            missing.append("line clearance is not signed")
        if not packaging.is_reconciled:
            missing.append("label reconciliation is not recorded")
    return missing


def _deviation_blocker(deviation) -> str | None:
    """A linked deviation lets the batch as made be released only once closed with the
    disposition "use as is"; "reject" and "rework" are decisions against releasing it."""
    if deviation.status != deviation.Status.CLOSED:
        return f"deviation {deviation.number} ({deviation.get_severity_display().lower()}) is open"
    if not deviation.disposition:
        return f"deviation {deviation.number} is closed without a disposition for the batch"
    if deviation.disposition != deviation.Disposition.USE_AS_IS:
        return f"deviation {deviation.number} was closed with disposition {deviation.disposition}"
    return None


def release_check(batch: Batch) -> ReleaseCheck:
    """Every reason the batch cannot be released now, in words a reviewer acts on."""
    return release_checks([batch])[batch.pk]


def release_checks(batches) -> dict[int, ReleaseCheck]:
    """`release_check` of many batches (the release queue) in a constant number of queries."""
    from deviations.models import Deviation

    batches = list(batches)
    ids = [batch.pk for batch in batches]
    linked: dict[int, dict[int, Deviation]] = defaultdict(dict)
    by_batch = Deviation.batches.through.objects.filter(
        batch_id__in=ids, deviation__sponsor_id=F("batch__sponsor_id")
    ).select_related("deviation")
    for link in by_batch:
        linked[link.batch_id][link.deviation_id] = link.deviation
    by_lot = Deviation.lots.through.objects.filter(
        lot__produced_by_id__in=ids, deviation__sponsor_id=F("lot__produced_by__sponsor_id")
    ).select_related("deviation", "lot")
    for link in by_lot:
        linked[link.lot.produced_by_id][link.deviation_id] = link.deviation
    oos_by_batch: dict[int, list[LabResult]] = defaultdict(list)
    oos = oos_results(LabResult.objects.filter(lot__produced_by_id__in=ids)).select_related("lot")
    for result in oos:
        oos_by_batch[result.lot.produced_by_id].append(result)
    steps: dict[int, list[MbrStep]] = defaultdict(list)
    for step in MbrStep.objects.filter(mbr_id__in={batch.mbr_id for batch in batches}):
        steps[step.mbr_id].append(step)
    executed: dict[int, list[ExecutedStep]] = defaultdict(list)
    for done in ExecutedStep.objects.filter(batch_id__in=ids):
        executed[done.batch_id].append(done)
    packaging = {p.batch_id: p for p in PackagingRecord.objects.filter(batch_id__in=ids)}
    agreements: dict[int, list[QualityAgreement]] = defaultdict(list)
    in_force = QualityAgreement.objects.filter(
        sponsor_id__in={batch.sponsor_id for batch in batches}
    ).in_force(timezone.now())
    for agreement in in_force:
        agreements[agreement.sponsor_id].append(agreement)
    now = timezone.now()
    checks = {}
    for batch in batches:
        check = ReleaseCheck()
        if batch.status not in (Batch.Status.COMPLETED, Batch.Status.UNDER_REVIEW):
            check.blockers.append(f"the batch is {batch.get_status_display().lower()}")
        deviations = sorted(linked[batch.pk].values(), key=lambda d: d.number)
        check.blockers.extend(
            blocker for deviation in deviations if (blocker := _deviation_blocker(deviation))
        )
        for result in oos_by_batch[batch.pk]:
            if not result.is_investigated:
                check.blockers.append(
                    f"{result.test} on lot {result.lot} is out of specification without a "
                    "closed investigation"
                )
        check.evidence = _evidence_gaps(
            steps[batch.mbr_id], executed[batch.pk], packaging.get(batch.pk)
        )
        check.blockers.extend(check.evidence)
        at = batch.completed_at or now
        agreement = next((a for a in agreements[batch.sponsor_id] if a.effective_from <= at), None)
        authority = agreement.release_authority if agreement else ReleaseAuthority.SPONSOR
        if agreement is None:
            check.sponsor_release_required = True
            check.sponsor_release_reason = "no quality agreement is in force"
        elif authority == ReleaseAuthority.SPONSOR:
            check.sponsor_release_required = True
            check.sponsor_release_reason = f"agreement v{agreement.version}: the sponsor releases"
        elif authority == ReleaseAuthority.CONDITIONAL:
            grave = any(d.severity in (Severity.MAJOR, Severity.CRITICAL) for d in deviations)
            if grave or oos_by_batch[batch.pk]:
                check.sponsor_release_required = True
                check.sponsor_release_reason = (
                    f"agreement v{agreement.version}: conditional release, and the batch has a "
                    "major/critical deviation or an OOS result"
                )
        checks[batch.pk] = check
    return checks


def note_evidence(batch: Batch) -> None:
    """Record when the batch's evidence set was first complete (hand-off window)."""
    if batch.evidence_complete_at is not None or batch.completed_at is None:
        return
    if not _missing_evidence(batch):
        Batch.objects.filter(pk=batch.pk, evidence_complete_at__isnull=True).update(
            evidence_complete_at=timezone.now()
        )


def batch_disposition(
    *, batch: Batch, user, password: str, release: bool, request=None
) -> Signature:
    """Release ("released") or reject ("rejected") a batch and its output lots by e-signature.
    CMO QA approvers sign for the CMO; where the sponsor must release, the batch is released
    only when the sponsor approver signs too. Refused, naming each reason, while anything
    blocks release. The batch row is locked, so two approvers produce one disposition."""
    is_cmo = batch.sponsor_id in sponsor_ids_for(user, "approve") or user.is_superuser
    is_sponsor = batch.sponsor_id in sponsor_ids_for(user, "sponsor_approve")
    if not (is_cmo or is_sponsor):
        raise RuleViolation(
            BatchError.NOT_PERMITTED, f"{user.get_username()} may not dispose of batch {batch}."
        )
    signer_verify(user=user, password=password, request=request)
    with transaction.atomic(), audit_context(actor=user):
        locked = (
            Batch.objects.select_for_update(of=("self",))
            .select_related("mbr", "sponsor", "product")
            .get(pk=batch.pk)
        )
        if locked.status in (Batch.Status.RELEASED, Batch.Status.REJECTED):
            raise RuleViolation(
                BatchError.BATCH_STATUS,
                f"Batch {locked} is already {locked.get_status_display().lower()}.",
            )
        now = timezone.now()
        if not release:
            if locked.status not in (Batch.Status.COMPLETED, Batch.Status.UNDER_REVIEW):
                raise RuleViolation(
                    BatchError.BATCH_STATUS,
                    f"Batch {locked} is {locked.get_status_display().lower()}: it can be "
                    "rejected once completed.",
                )
            locked.status = Batch.Status.REJECTED
            locked.save(update_fields=["status"])
            locked.output_lots.update(status=Lot.Status.REJECTED)
            return signature_apply(record=locked, user=user, meaning=Signature.Meaning.REJECTED)
        check = release_check(locked)
        if check.blockers:
            raise RuleViolation(
                "release_blocked",
                f"Batch {locked} cannot be released: " + "; ".join(check.blockers) + ".",
            )
        if is_cmo:
            if locked.cmo_released_at is not None:
                raise RuleViolation(
                    BatchError.BATCH_STATUS,
                    f"Batch {locked} is already released by CMO QA; it awaits the sponsor's "
                    "release.",
                )
            locked.cmo_released_at = now
            final = not check.sponsor_release_required
        else:
            if not check.sponsor_release_required:
                raise RuleViolation(
                    BatchError.NOT_PERMITTED,
                    f"Batch {locked} is released by the CMO under the quality agreement; the "
                    "sponsor's release is not required.",
                )
            if locked.cmo_released_at is None:
                raise RuleViolation(
                    "release_blocked",
                    f"Batch {locked} cannot be released by the sponsor before CMO QA releases it.",
                )
            final = True
        if final:
            locked.status = Batch.Status.RELEASED
            locked.output_lots.update(status=Lot.Status.RELEASED)
        elif locked.status == Batch.Status.COMPLETED:
            locked.status = Batch.Status.UNDER_REVIEW
        locked.save(update_fields=["status", "cmo_released_at"])
        return signature_apply(record=locked, user=user, meaning=Signature.Meaning.RELEASED)
