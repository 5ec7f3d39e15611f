"""Fixtures shared by the test modules."""

from __future__ import annotations

import gc
import os
from collections.abc import Iterator

import pytest


@pytest.fixture
def directory(tmp_path: object) -> Iterator[str]:
    """A directory for slab pools' segments, which must hold none of them at the end."""
    path = str(tmp_path)
    yield path
    gc.collect()
    assert os.listdir(path) == [], "a name outlived its pool"
