"""The exception tree.

Every ladle error derives from :class:`LadleError` and from the builtin type torch raises in the
same situation, so ``except TypeError`` written for torch keeps working.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "ArgumentError",
    "ArgumentTypeError",
    "CollateError",
    "CollateKeyError",
    "CollateSizeError",
    "FormatError",
    "ImageDecodeError",
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


class CollateKeyError(LadleError, KeyError):
    """A sample lacks a key the batch's first sample has (ladle.torch: torch raises KeyError)."""


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

    def __reduce__(self) -> tuple[Any, ...]:
        # BaseException pickles self.args, the message alone, which __init__ cannot take: a
        # worker's FormatError would reach the main process as a RuntimeError.
        message = str(self.args[0]) if self.args else ""
        return type(self), (message, self.path, self.record), self.__dict__


class ImageDecodeError(FormatError, OSError):
    """A file that Pillow cannot decode as an image: truncated, damaged or not an image.

    Also an OSError, as Pillow's own ``UnidentifiedImageError`` is, so code written for
    torchvision's ImageFolder that guards with ``except OSError`` keeps working.
    """
