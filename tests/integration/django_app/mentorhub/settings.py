"""Settings of the tiny MentorHub test project: the database comes from DBOPS_DATABASE_URI."""

import os
from urllib.parse import unquote, urlsplit

_uri = urlsplit(os.environ["DBOPS_DATABASE_URI"])

SECRET_KEY = "test-only-not-secret"
DEBUG = False
USE_TZ = True
INSTALLED_APPS = ["django.contrib.contenttypes", "django.contrib.auth", "mentorship"]
# a later release's apps (e.g. cleanup, a data migration), as a new image would install them
INSTALLED_APPS += [app for app in os.environ.get("MENTORHUB_EXTRA_APPS", "").split(",") if app]
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": _uri.path.lstrip("/"),
        "USER": unquote(_uri.username or ""),
        "PASSWORD": unquote(_uri.password or ""),
        "HOST": _uri.hostname or "",
        "PORT": str(_uri.port or ""),
        "OPTIONS": {"sslmode": os.environ.get("PGSSLMODE", "prefer")},
    }
}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
