"""dbops: declarative PostgreSQL backups, migrations and restores for Kubernetes."""

__version__ = "0.1.0"
