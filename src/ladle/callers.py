"""Where ladle's warnings point: the user's line, however deep inside ladle they are found."""

from __future__ import annotations

import os
import sys
from types import FrameType

__all__ = ["outside_ladle"]

_PACKAGE = os.path.dirname(os.path.abspath(__file__)) + os.sep  # frames in here are ladle's


def outside_ladle() -> int:
    """The ``stacklevel`` of the first frame outside the ladle package, seen from the function
    that calls this one (a warning found through different depths, ladle.DataLoader's and
    ladle.torch's, or inside a loader's pass, points at the user's line every time)."""
    frame: FrameType | None = sys._getframe(1)  # the caller, whose own level is 1
    level = 1
    while frame is not None and frame.f_code.co_filename.startswith(_PACKAGE):
        frame, level = frame.f_back, level + 1
    return level
