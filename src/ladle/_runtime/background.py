"""``Background``: one thread that works through the latest plan of items, in order.

For fetching ahead (the shard cache's prefetch): the owner replaces the plan whenever it learns
where reading goes next, and stale items are dropped. The thread starts when a plan arrives and
ends when the plan is done, so an idle owner holds no thread, and nothing is left to join at
exit. After a fork the child has no thread; its first ``plan`` starts its own. Exceptions of the
work function are the owner's to surface: they are kept in ``errors`` (the last few), and the
item is not retried here.
"""

from __future__ import annotations

import os
import threading
from collections import deque
from collections.abc import Callable, Iterable
from typing import Generic, TypeVar

__all__ = ["Background"]

T = TypeVar("T")

_KEPT_ERRORS = 8


class Background(Generic[T]):
    def __init__(self, work: Callable[[T], None], name: str) -> None:
        self._work = work
        self._name = name
        self._reset()

    def _reset(self) -> None:
        self._pid = os.getpid()
        self._lock = threading.Lock()
        self._pending: deque[T] = deque()
        self._thread: threading.Thread | None = None
        self.errors: deque[BaseException] = deque(maxlen=_KEPT_ERRORS)

    def plan(self, items: Iterable[T]) -> None:
        """Work through ``items`` next, in order, instead of whatever was still pending."""
        if self._pid != os.getpid():
            self._reset()  # forked: the parent's thread does not exist here
        with self._lock:
            self._pending = deque(items)
            if self._pending and self._thread is None:
                self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
                self._thread.start()

    def _run(self) -> None:
        while True:
            with self._lock:
                if not self._pending:
                    self._thread = None
                    return
                item = self._pending.popleft()
            try:
                self._work(item)
            except Exception as error:
                self.errors.append(error)
