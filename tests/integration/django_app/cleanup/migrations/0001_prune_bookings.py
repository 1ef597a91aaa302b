"""Index bookings by user, then prune every tenth booking (10% of the table), as a cleanup release would."""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies: list[tuple[str, str]] = []

    operations = [
        migrations.RunSQL("CREATE INDEX bookings_user_idx ON bookings (user_id)",
                          reverse_sql="DROP INDEX bookings_user_idx"),
        migrations.RunSQL("DELETE FROM bookings WHERE id % 10 = 0", reverse_sql=migrations.RunSQL.noop),
    ]
