"""Shared, generic fixtures. Keep this small: many test modules (and helpers) rely on it."""

from __future__ import annotations

from datetime import datetime

import pytest

from mtlscore import pki


@pytest.fixture
def now() -> datetime:
    """The pinned validation time every PKI-factory certificate is built around."""
    return pki.NOW
