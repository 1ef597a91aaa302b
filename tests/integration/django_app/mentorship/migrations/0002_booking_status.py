"""Booking status, with an index (the runbook's idx_bookings_status)."""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("mentorship", "0001_initial")]

    operations = [
        migrations.AddField(
            model_name="booking",
            name="status",
            field=models.CharField(db_index=True, default="pending", max_length=50),
        ),
    ]
