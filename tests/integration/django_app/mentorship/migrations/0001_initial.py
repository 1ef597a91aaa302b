"""Mentors and bookings."""

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):
    initial = True
    dependencies: list[tuple[str, str]] = []

    operations = [
        migrations.CreateModel(
            name="Mentor",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("bio", models.TextField()),
                ("rating", models.DecimalField(decimal_places=2, default=0, max_digits=3)),
                ("is_approved", models.BooleanField(default=False)),
            ],
        ),
        migrations.CreateModel(
            name="Booking",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("session_date", models.DateField()),
                ("topic", models.CharField(max_length=200)),
                ("mentor", models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, to="mentorship.mentor")),
            ],
        ),
    ]
