from django.urls import path

from . import execution, lots, mbrs, views

app_name = "batches"

BATCH = "batches/<str:number>/"
STEP = f"{BATCH}steps/<int:sequence>/"
LOT = "lots/<str:lot_number>/"

urlpatterns = [
    path("lots/", views.lot_list, name="lots"),
    path("lots/receive/", lots.lot_receive, name="lot-receive"),
    path(LOT, views.lot_detail, name="lot"),
    path(f"{LOT}disposition/", lots.lot_disposition, name="lot-disposition"),
    path(f"{LOT}lab-results/", lots.lab_result_add, name="lab-result-add"),
    path(f"{LOT}ship/", lots.lot_ship, name="lot-ship"),
    path(f"{LOT}recall/", views.recall, name="recall"),
    path("lots/<str:lot_number>/recall.csv", views.recall_csv, name="recall-csv"),
    path("lots/<str:lot_number>/recall.pdf", views.recall_pdf, name="recall-pdf"),
    path("shipments/", lots.shipment_list, name="shipments"),
    path("batches/", views.batch_list, name="batches"),
    path("batches/new/", execution.batch_plan, name="batch-new"),
    path(BATCH, views.batch_detail, name="batch"),
    path(f"{BATCH}execution/", execution.batch_execution, name="execution"),
    path(f"{BATCH}start/", execution.batch_start, name="batch-start"),
    path(STEP, execution.step_record, name="step-record"),
    path(f"{STEP}verify/", execution.step_verify, name="step-verify"),
    path(f"{BATCH}consume/", execution.batch_consume, name="batch-consume"),
    path(f"{BATCH}equipment/", execution.equipment_use_start, name="equipment-use-start"),
    path(f"{BATCH}equipment/<int:pk>/end/", execution.equipment_use_end, name="equipment-use-end"),
    path(f"{BATCH}complete/", execution.batch_complete, name="batch-complete"),
    path(f"{BATCH}submit/", execution.batch_submit, name="batch-submit"),
    path(f"{BATCH}packaging/", execution.packaging_start, name="packaging-start"),
    path(f"{BATCH}packaging/clearance/", execution.packaging_clearance, name="line-clearance"),
    path(
        f"{BATCH}packaging/reconciliation/",
        execution.packaging_reconciliation,
        name="label-reconciliation",
    ),
    path("products/<int:pk>/mbrs/new/", mbrs.mbr_new_version, name="mbr-new-version"),
    path("mbrs/<int:pk>/", views.mbr_detail, name="mbr"),
    path("mbrs/<int:pk>/edit/", mbrs.mbr_edit, name="mbr-edit"),
    path("mbrs/<int:pk>/review/", mbrs.mbr_review, name="mbr-review"),
    path("mbrs/<int:pk>/approval/", mbrs.mbr_approve, name="mbr-approve"),
    path("mbrs/<int:pk>/effective/", mbrs.mbr_make_effective, name="mbr-effective"),
    path("equipment/", views.equipment_list, name="equipment-list"),
    path("equipment/<str:code>/", views.equipment_detail, name="equipment"),
    path("equipment/<str:code>/cleaning/", execution.cleaning_record, name="cleaning-record"),
    path(
        "equipment/<str:code>/cleaning/<int:pk>/verify/",
        execution.cleaning_verify,
        name="cleaning-verify",
    ),
]
