"""Command-line entry points: the operator, the runner commands and CRD generation."""
