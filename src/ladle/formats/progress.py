"""Progress for long work: tqdm when it is installed, a plain line on stderr when it is not."""

from __future__ import annotations

import sys
import time
from types import TracebackType
from typing import Any

__all__ = ["Progress"]


class Progress:
    """``with Progress(total, "packing", enabled) as bar: bar.update(n)``.

    tqdm is optional: without it the count is printed to stderr at most twice a second.
    """

    def __init__(self, total: int | None, description: str, enabled: bool = True) -> None:
        self.total = total
        self.description = description
        self.enabled = enabled
        self.count = 0
        self._bar: Any = None
        self._last = 0.0
        if enabled:
            try:
                from tqdm import tqdm
            except ImportError:
                pass
            else:
                self._bar = tqdm(total=total, desc=description, unit="sample", dynamic_ncols=True)

    def update(self, n: int = 1) -> None:
        self.count += n
        if not self.enabled:
            return
        if self._bar is not None:
            self._bar.update(n)
            return
        now = time.monotonic()
        if now - self._last >= 0.5:
            self._last = now
            self._print("")

    def _print(self, end: str) -> None:
        of = f"/{self.total:,}" if self.total is not None else ""
        sys.stderr.write(f"\r{self.description}: {self.count:,}{of}{end}")
        sys.stderr.flush()

    def close(self) -> None:
        if not self.enabled:
            return
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        elif self.count:
            self._print("\n")
        self.enabled = False

    def __enter__(self) -> Progress:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()
