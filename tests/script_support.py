"""Running a scenario in a fresh Python process with a hard time limit.

Anything that could hang (workers, signals, threads) runs this way: a hang fails the test
instead of the suite, and whatever the scenario leaves behind dies with its process.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from typing import Any

TESTS = os.path.dirname(os.path.abspath(__file__))
PRELUDE = f"import sys\nsys.path.insert(0, {TESTS!r})\n"


def run_script(
    code: str, timeout: float = 60, check: bool = True
) -> subprocess.CompletedProcess[str]:
    """Run ``code`` (dedented) in a new interpreter; fails on a hang or a non-zero exit."""
    result = subprocess.run(
        [sys.executable, "-c", PRELUDE + textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if check and result.returncode != 0:
        raise AssertionError(
            f"the script exited with {result.returncode}:\n{result.stdout}\n{result.stderr}"
        )
    return result


def run_json(code: str, timeout: float = 60) -> Any:
    """Run ``code``, which prints one JSON document as its last line, and return it."""
    result = run_script(code, timeout)
    lines = result.stdout.strip().splitlines()
    assert lines, result.stderr
    return json.loads(lines[-1])
