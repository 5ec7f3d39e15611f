"""Finding the loader of ``ladle doctor SCRIPT``: a file's (or a module's) ``make_loader``.

The script is imported as a module under its own name (its ``__name__`` is not
``"__main__"``, so its training code under ``if __name__ == "__main__":`` does not run), with
its directory first on ``sys.path``: its classes pickle by reference, for worker processes
forked or spawned alike.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

from ladle.loader import DataLoader

__all__ = ["EntryError", "find_entry"]

_DEFAULT_ENTRIES = ("make_loader", "loader")


class EntryError(ValueError):
    """The script or its entry cannot give a loader; the message says how to fix it."""


def _load_file(path: Path) -> ModuleType:
    if not path.is_file():
        raise EntryError(f"script {str(path)!r} does not exist; give a Python file's path")
    name = path.stem
    if not name.isidentifier() or name in sys.modules:
        name = f"_ladle_doctor_{abs(hash(str(path.resolve())))}"
    folder = str(path.resolve().parent)
    if folder not in sys.path:
        sys.path.insert(0, folder)
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise EntryError(f"script {str(path)!r} cannot be imported: is it a .py file?")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    return module


def find_entry(script: str, entry: str | None = None) -> Any:
    """The factory (or DataLoader) named ``entry`` in ``script``: a path to a .py file, or a
    module name, optionally with ``:entry`` (``package.module:make_loader``). Without an
    entry: ``make_loader``, else a module-level ``loader``."""
    target, _, named = script.partition(":") if not Path(script).is_file() else (script, "", "")
    if named and entry is not None and named != entry:
        raise EntryError(f"the entry is given twice: {script!r} and --entry {entry}; give one")
    entry = entry or named or None
    if target.endswith(".py") or Path(target).is_file():
        module = _load_file(Path(target))
    else:
        try:
            module = importlib.import_module(target)
        except ModuleNotFoundError as error:
            raise EntryError(
                f"{target!r} is neither a Python file nor an importable module ({error}); give "
                f"a path such as train.py or a module such as mypackage.data:make_loader"
            ) from error
    names = (entry,) if entry else _DEFAULT_ENTRIES
    for name in names:
        if hasattr(module, name):
            found = getattr(module, name)
            break
    else:
        defined = sorted(
            name
            for name, value in vars(module).items()
            if not name.startswith("_")
            and (callable(value) or isinstance(value, DataLoader))
            and getattr(value, "__module__", module.__name__) == module.__name__
        )
        wanted = f"no {entry!r}" if entry else "neither make_loader nor loader"
        raise EntryError(
            f"{target} defines {wanted}; define make_loader(batch_size=...) returning a "
            f"ladle.DataLoader, or name your function with --entry NAME"
            + (f" (it defines {', '.join(defined)})" if defined else "")
        )
    if not callable(found) and not isinstance(found, DataLoader):
        raise EntryError(
            f"{target}:{name} is a {type(found).__name__}, neither a DataLoader nor a function "
            f"returning one; point --entry at a function make_loader(batch_size=...) that "
            f"returns a ladle.DataLoader"
        )
    return found
