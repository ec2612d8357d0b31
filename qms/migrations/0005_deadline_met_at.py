"""When a deadline was met, and which deadlines are met by sending their notice.

Existing rows: sponsor notices and their escalations are met by their notice, so those already
notified become met at the time they were sent; the other deadlines already met take the time
the audit trail recorded for that change; an escalation closed because its notice was met takes
the notice's time."""

from django.db import migrations, models

MET_BY_NOTICE = """
UPDATE qms_deadline SET is_met_by_notice = true
 WHERE kind IN ('deviation_notice', 'deviation_notice_escalation', 'capa_notice');
UPDATE qms_deadline SET status = 'met', met_at = notified_at
 WHERE is_met_by_notice AND status = 'notified';
UPDATE qms_deadline AS escalation SET met_at = notice.met_at
  FROM qms_deadline AS notice
 WHERE escalation.escalates_id = notice.id AND escalation.status = 'met'
   AND escalation.met_at IS NULL AND escalation.notified_at IS NULL;
UPDATE qms_deadline AS deadline SET met_at = (
       SELECT min(event.occurred_at) FROM qms_audit_event AS event
        WHERE event.model = 'qms.deadline' AND event.object_id = deadline.id::text
          AND event.changes -> 'status' ->> 1 = 'met')
 WHERE deadline.status = 'met' AND deadline.met_at IS NULL AND deadline.escalates_id IS NULL;
"""


class Migration(migrations.Migration):
    dependencies = [
        ("qms", "0004_alter_signature_meaning"),
    ]

    operations = [
        migrations.AddField(
            model_name="deadline",
            name="met_at",
            field=models.DateTimeField(
                blank=True, help_text="When the obligation was fulfilled.", null=True
            ),
        ),
        migrations.AddField(
            model_name="deadline",
            name="is_met_by_notice",
            field=models.BooleanField(
                default=False,
                help_text="Sending the notice is what the deadline asks for (a sponsor notice, "
                "an escalation): the sweep marks it met when it sends it.",
            ),
        ),
        migrations.RunSQL(MET_BY_NOTICE, migrations.RunSQL.noop),
    ]
