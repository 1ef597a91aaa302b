"""Shared test configuration: fixture plugins and markers by directory."""

from __future__ import annotations

import pytest

pytest_plugins = ["tests.fixtures.databases", "tests.fixtures.cluster", "tests.fixtures.crds", "tests.fixtures.operator"]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark tests by their directory: tests/unit are unit tests, the rest integration tests."""
    for item in items:
        kind = "unit" if "/tests/unit/" in str(item.path) else "integration"
        item.add_marker(getattr(pytest.mark, kind))
