"""The harness of the framework tests fails where it must: a process or a /dev/shm segment left
behind by a child, or a child running past its time limit."""

from __future__ import annotations

import os

import fw_support
import pytest
from fw_support import run_child


@pytest.mark.parametrize(
    ("mode", "message"),
    [
        ("process", "processes left behind"),
        ("segment", "/dev/shm segments left behind"),
        ("hang", "ran past 2 s"),
    ],
)
def test_a_child_breaking_a_rule_fails_the_test_and_is_cleaned_up(
    monkeypatch: pytest.MonkeyPatch, mode: str, message: str
) -> None:
    monkeypatch.setattr(fw_support, "EXIT_GRACE", 0.5)
    with pytest.raises(AssertionError, match=message) as failure:
        run_child("leaky_child.py", [mode], timeout=2 if mode == "hang" else 60)
    if mode == "segment":
        (name,) = failure.value.args[0].split("[")[1].strip("]'").split("', '")
        assert not os.path.exists(os.path.join("/dev/shm", name)), "the segment stayed"
