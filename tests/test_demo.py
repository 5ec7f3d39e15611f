"""The main job: `ladle demo` trains a classifier through a DataLoader."""

import subprocess
import sys

import numpy as np

from ladle.demo import Digits, run_demo


def test_digits_are_deterministic_and_labelled() -> None:
    a, b = Digits(50, seed=1), Digits(50, seed=1)
    for i in range(50):
        (xa, ya), (xb, yb) = a[i], b[i]
        assert ya == yb and 0 <= ya < 10
        np.testing.assert_array_equal(xa, xb)
        assert xa.shape == (16, 16) and xa.dtype == np.uint8


def test_demo_learns() -> None:
    lines: list[str] = []
    history = run_demo(epochs=3, samples=3000, batch_size=64, seed=0, out=lines.append)
    assert len(lines) == 2 + 3 + 1
    assert all("% " in line and "wait " in line and "fetch " in line for line in lines[2:5])
    assert lines[-1].startswith("loader.stats(): ") and "data wait" in lines[-1]
    assert all(0 < h["data_wait_share"] < 1 for h in history)
    assert history[-1]["loss"] < history[0]["loss"]
    assert history[-1]["test_accuracy"] > 0.9
    assert all(h["samples_per_second"] > 0 for h in history)


def test_command_line_demo_runs() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "ladle", "demo", "--epochs", "1", "--samples", "1000"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "samples/s" in result.stdout and "ladle demo" in result.stdout
