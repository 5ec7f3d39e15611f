"""The exception tree.

Every ladle error derives from :class:`LadleError` and from the builtin type torch raises in the
same situation, so ``except TypeError`` written for torch keeps working.
"""

from __future__ import annotations

__all__ = ["CollateError", "CollateSizeError", "LadleError"]


class LadleError(Exception):
    """Base class of every error ladle raises itself."""


class CollateError(LadleError, TypeError):
    """A batch holds values that cannot be combined: unsupported or clashing types."""


class CollateSizeError(LadleError, RuntimeError):
    """A batch holds sequences or arrays whose sizes differ where they must be equal."""
