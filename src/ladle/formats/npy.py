"""Memory-mapped ``.npy`` files as a dataset: arrays larger than RAM, read row by row.

The operating system pages rows in as they are read, so a dataset costs no memory up front and
worker processes share the page cache instead of each holding a copy.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any, SupportsIndex

import numpy as np
import numpy.typing as npt

from ladle.dataset import Dataset
from ladle.errors import FormatError
from ladle.gathered import GatheredBatch
from ladle.indexing import as_index_array, batched, check_index, first_out_of_range, out_of_range
from ladle.seeding import each_sample
from ladle.validation import check_callable, check_path

__all__ = ["NpyDataset"]

Array = npt.NDArray[Any]
Path = str | os.PathLike[str]


def _read_header(path: str) -> tuple[tuple[int, ...], np.dtype[Any]]:
    """The shape and dtype a .npy file declares, read before mapping it, to refuse bad ones."""
    with open(path, "rb") as file:
        try:
            version = np.lib.format.read_magic(file)
            if version == (1, 0):
                shape, _, dtype = np.lib.format.read_array_header_1_0(file)
            else:  # 2.0, and 3.0, which differs only in allowing UTF-8 field names
                shape, _, dtype = np.lib.format.read_array_header_2_0(file)
        except ValueError as error:
            raise FormatError(
                f"NpyDataset cannot read {path!r} as a .npy file ({error}); pass files written "
                f"by np.save (for an .npz archive, np.save each of its arrays to its own file)",
                path,
            ) from error
    if dtype.hasobject:
        raise ValueError(
            f"NpyDataset cannot memory-map {path!r}: its dtype {dtype} holds Python objects, "
            f"stored as pickles, and NpyDataset never unpickles (loading a pickle can run code); "
            f"save a numeric or fixed-width string array instead, e.g. array.astype('U32')"
        )
    if not shape:
        raise ValueError(
            f"NpyDataset needs arrays with at least one dimension (its rows are the samples), "
            f"but {path!r} holds a 0-d array of dtype {dtype}; save np.atleast_1d(value) instead"
        )
    return shape, dtype


def _map(path: str) -> Array:
    """The file's rows as a read-only plain-ndarray view of a memory map.

    A plain ndarray rather than np.memmap: rows and gathers then have the type every collate
    path expects, and the view keeps the map open.
    """
    try:
        mapped = np.load(path, mmap_mode="r", allow_pickle=False)
    except ValueError as error:  # e.g. "mmap length is greater than file size": truncated
        raise FormatError(
            f"{path}: its header describes more data than the file holds ({error}); the file is "
            f"truncated or corrupted",
            path,
        ) from None
    view: Array = mapped.view(np.ndarray)
    return view


class NpyDataset(Dataset[Any]):
    """Samples are the rows of ``.npy`` files, memory-mapped read-only.

    ``files`` is one path (a sample is the row ``array[i]``), a sequence of paths (a tuple of
    rows, like :class:`~ladle.TensorDataset`) or a mapping of names to paths (a dict of rows).
    All arrays need the same number of rows. Rows are zero-copy, read-only views of the maps
    (rows of a 1-D array are NumPy scalars). ``__getitems__`` gathers a whole batch with one
    fancy index per file, which reads only the pages of the rows asked for.

    ``transform``, if given, is applied to each sample (the row, tuple or dict) and turns the
    vectorised gather off: ``__getitems__`` then returns the list of transformed samples, each
    loaded as ``__getitem__`` would, so random transforms draw the same ``sample_rng()`` values.

    Pickling (for spawned workers) keeps only the paths and the transform, never the mapped
    data: the receiving process maps the files again when it first reads a row. Forked workers
    inherit the maps. Files are refused if they hold Python objects (that would need pickle) or
    a 0-d array; ``allow_pickle`` is never set.
    """

    accepts_index_array = True

    def __init__(
        self,
        files: Path | Sequence[Path] | Mapping[str, Path],
        *,
        transform: Callable[[Any], Any] | None = None,
    ) -> None:
        self._single = isinstance(files, str | os.PathLike)
        self._keys: tuple[str, ...] | None = None
        named: list[tuple[str, Path]]
        if isinstance(files, str | os.PathLike):
            named = [("files", files)]
        elif isinstance(files, Mapping):
            named = [(f"files[{key!r}]", path) for key, path in files.items()]
            self._keys = tuple(files)
        elif isinstance(files, Sequence):
            named = [(f"files[{position}]", path) for position, path in enumerate(files)]
        else:
            raise TypeError(
                f"files should be a path, a sequence of paths or a mapping of names to paths, "
                f"but got {type(files).__name__}"
            )
        if not named:
            raise ValueError(f"NpyDataset needs at least one .npy file, but got files={files!r}")
        for name, path in named:
            if not isinstance(path, str | os.PathLike):
                raise TypeError(
                    f"NpyDataset {name} should be a path to a .npy file, but got "
                    f"{type(path).__name__} {path!r:.60}"
                )
        self._paths = tuple(
            os.path.abspath(check_path(path, f"NpyDataset {name}", fix="name a .npy file"))
            for name, path in named
        )
        headers = [_read_header(path) for path in self._paths]
        self._shapes = tuple(shape for shape, _ in headers)
        self._dtypes = tuple(dtype for _, dtype in headers)
        lengths = {shape[0] for shape in self._shapes}
        if len(lengths) > 1:
            rows = ", ".join(
                f"{name} ({path!r}) has {shape[0]}"
                for (name, _), path, shape in zip(named, self._paths, self._shapes, strict=True)
            )
            raise ValueError(
                f"NpyDataset files must have the same number of rows, but {rows}; pass arrays "
                f"of equal length"
            )
        self._length = self._shapes[0][0]
        self.transform = check_callable(transform, "transform", optional=True)
        self._arrays: list[Array] | None = [_map(path) for path in self._paths]

    def _pack(self, values: Sequence[Any]) -> Any:
        """``values`` (one per file) in the shape of ``files``: one value, a tuple or a dict."""
        if self._single:
            return values[0]
        if self._keys is not None:
            return dict(zip(self._keys, values, strict=True))
        return tuple(values)

    def _open(self) -> list[Array]:
        """The maps, opened again after unpickling; a file that changed since is refused."""
        arrays = []
        for path, shape, dtype in zip(self._paths, self._shapes, self._dtypes, strict=True):
            array = _map(path)
            if array.shape != shape or array.dtype != dtype:
                raise FormatError(
                    f"{path!r} changed since the NpyDataset was made: it held shape {shape} and "
                    f"dtype {dtype}, now {array.shape} and {array.dtype}; make a new NpyDataset",
                    path,
                )
            arrays.append(array)
        self._arrays = arrays
        return arrays

    @property
    def files(self) -> Any:
        """The absolute paths, in the shape of the ``files`` argument."""
        return self._pack(self._paths)

    @property
    def shapes(self) -> Any:
        """Each file's array shape, in the shape of ``files``."""
        return self._pack(self._shapes)

    @property
    def dtypes(self) -> Any:
        """Each file's dtype, in the shape of ``files``."""
        return self._pack(self._dtypes)

    @property
    def arrays(self) -> Any:
        """The whole read-only mapped arrays, in the shape of ``files``."""
        return self._pack(self._arrays if self._arrays is not None else self._open())

    def __len__(self) -> int:
        return self._length

    def __getitem__(self, index: SupportsIndex) -> Any:
        row = check_index(
            index,
            self._length,
            "NpyDataset",
            fix="fetch several rows at once with __getitems__(indices)",
        )
        arrays = self._arrays if self._arrays is not None else self._open()
        sample = self._pack([array[row] for array in arrays])
        return sample if self.transform is None else self.transform(sample)

    @batched
    def __getitems__(self, indices: Sequence[int] | Array) -> GatheredBatch | list[Any]:
        if self.transform is not None:
            return self._transformed(indices)
        idx = as_index_array(indices, "NpyDataset")
        arrays = self._arrays if self._arrays is not None else self._open()
        try:
            columns = [array[idx] for array in arrays]
        except IndexError:
            bad = first_out_of_range(idx, self._length)
            raise out_of_range(bad, self._length, "NpyDataset") from None
        return GatheredBatch(self._pack(columns), len(idx))

    def _transformed(self, indices: Sequence[int] | Array) -> list[Any]:
        """Each sample through ``__getitem__``, with ``sample_rng()`` keyed to it as the
        loader's per-sample path keys it, so both paths give the same random draws."""
        listed = indices.tolist() if isinstance(indices, np.ndarray) else indices
        return [self[index] for index in each_sample(listed)]

    def __getstate__(self) -> dict[str, Any]:
        # A memmap pickles as a full in-memory copy of its data: keep only the paths.
        state = self.__dict__.copy()
        state["_arrays"] = None
        return state

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.files!r}, {self._length} rows)"
