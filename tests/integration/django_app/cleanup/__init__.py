"""A cleanup release of MentorHub: a data migration (installed only with MENTORHUB_EXTRA_APPS=cleanup)."""
