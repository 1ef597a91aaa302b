"""The in-Job work: backups, restores, verification, migrations and checks (no Kopf)."""
