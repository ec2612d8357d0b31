from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("changecontrol", "0002_initial"),
    ]

    operations = [
        migrations.AddField(
            model_name="changerequest",
            name="early_effective_reason",
            field=models.TextField(
                blank=True,
                help_text="Why the change became effective before its proposed effective date.",
            ),
        ),
        migrations.AddField(
            model_name="sponsorobligation",
            name="accepts_effective_from",
            field=models.DateField(
                blank=True,
                help_text="An approval may accept an effective date earlier than the lead time "
                "allows; the signature covers it.",
                null=True,
                verbose_name="earliest accepted effective date",
            ),
        ),
    ]
