"""Runner command lines: a flag and its user-given value, kept together whatever the value looks like."""

from __future__ import annotations


def option(flag: str, value: str) -> list[str]:
    """``[flag, value]``, or ``[flag=value]`` when the value starts with '-' (argparse would take it for a flag)."""
    return [f"{flag}={value}"] if value.startswith("-") else [flag, value]
