"""Django's command-line utility for the tiny test project (used by dbops command-mode tests)."""

import os
import sys

if __name__ == "__main__":
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mentorhub.settings")
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)
