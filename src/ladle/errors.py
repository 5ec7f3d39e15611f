"""The exception tree.

Every ladle error derives from :class:`LadleError` and from the builtin type torch raises in the
same situation, so ``except TypeError`` written for torch keeps working.
"""

from __future__ import annotations

__all__ = [
    "ArgumentError",
    "ArgumentTypeError",
    "CollateError",
    "CollateSizeError",
    "FormatError",
    "LadleError",
    "LoaderBrokenError",
    "LoaderClosedError",
    "LoaderTimeoutError",
    "WorkerDiedError",
]


class LadleError(Exception):
    """Base class of every error ladle raises itself."""


class CollateError(LadleError, TypeError):
    """A batch holds values that cannot be combined: unsupported or clashing types."""


class CollateSizeError(LadleError, RuntimeError):
    """A batch holds sequences or arrays whose sizes differ where they must be equal."""


class WorkerDiedError(LadleError, RuntimeError):
    """A worker process exited or was killed while the loader needed it."""

    def __init__(self, message: str, worker_id: int, pid: int | None, exitcode: int | None):
        super().__init__(message)
        self.worker_id = worker_id
        self.pid = pid
        self.exitcode = exitcode


class LoaderTimeoutError(LadleError, RuntimeError):
    """No batch arrived within the loader's ``timeout``."""


class LoaderBrokenError(LadleError, RuntimeError):
    """A pass that something broke (a dead worker, a timeout) was asked for another batch; the
    original error is its ``__cause__``. Start a new pass with ``iter(loader)``."""


class LoaderClosedError(LadleError, RuntimeError):
    """A pass that was closed for the user (a newer pass took over its persistent workers) was
    asked for another batch."""


class ArgumentError(LadleError, ValueError, AssertionError):
    """A bad argument where torch checks with an assertion: code written for torch catches
    it with ``except AssertionError``, code written for ladle with ``except ValueError``."""


class ArgumentTypeError(LadleError, TypeError, AssertionError):
    """A wrong kind of argument where torch checks with an assertion (see ArgumentError)."""


class FormatError(LadleError, ValueError):
    """A file on disk is not what its format says: corrupted, truncated or of another version.

    ``path`` is the file and ``record`` the record number within it (None when the damage is in
    the file's header or index rather than in one record).
    """

    def __init__(self, message: str, path: str, record: int | None = None):
        super().__init__(message)
        self.path = path
        self.record = record
