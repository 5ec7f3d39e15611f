"""Argument checks: ladle.validation itself, and one table of bad arguments per public constructor.

Each row of the table is (callable, args, kwargs, exception type, a substring that names the
argument and its value). Paths to data on disk are written ``At("shards")`` and resolved from a
module fixture. A second table holds good arguments, NumPy scalars included, that must pass.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import ladle
from ladle import (
    ChainDataset,
    ConcatDataset,
    IterableDataset,
    PadCollate,
    StackDataset,
    Subset,
    TensorDataset,
    random_split,
)
from ladle.collate import default_collate, register_collate
from ladle.formats import (
    ImageFolder,
    NpyDataset,
    ShardDataset,
    ShardStream,
    commit_parts,
    decode_image,
    load_image,
    open_dataset,
    pack,
    write_part,
    write_shards,
)
from ladle.formats.imagefolder import find_classes, make_dataset
from ladle.transforms import (
    CenterCrop,
    Compose,
    Lambda,
    Normalize,
    RandomCrop,
    RandomHorizontalFlip,
    Resize,
    ToCHW,
    ToFloat,
)
from ladle.validation import (
    check_bool,
    check_callable,
    check_choice,
    check_fits_dtype,
    check_int,
    check_number,
    check_path,
    check_probability,
)

NAN, INF = math.nan, math.inf

# --- ladle.validation --------------------------------------------------------------------


def test_check_int_accepts_ints_and_numpy_integers() -> None:
    for value in (0, 7, np.int64(4), np.uint8(3), np.int32(-2)):
        got = check_int(value, "n")
        assert got == int(value) and type(got) is int
    assert check_int(5, "n", minimum=5, maximum=5) == 5


@pytest.mark.parametrize("value", [True, np.bool_(False), 2.0, 1.5, "3", None, [1], NAN])
def test_check_int_refuses_other_types(value: Any) -> None:
    with pytest.raises(
        TypeError, match=r"^batch_size should be an int, but got batch_size=.*; fix"
    ):
        check_int(value, "batch_size", fix="fix")
    with pytest.raises(ValueError, match="batch_size should be an int"):
        check_int(value, "batch_size", type_error=ValueError)


def test_check_int_range_names_the_bound_and_the_value() -> None:
    with pytest.raises(ValueError, match=r"^n should be an int >= 1, but got n=0; pass 1 or more$"):
        check_int(0, "n", minimum=1, fix="pass 1 or more")
    with pytest.raises(ValueError, match=r"^n should be an int <= 3, but got n=4$"):
        check_int(4, "n", maximum=3)
    with pytest.raises(ValueError, match=r"between 0 and 3, but got n=np\.int64\(-1\)|n=-1"):
        check_int(np.int64(-1), "n", minimum=0, maximum=3)


def test_check_bool() -> None:
    assert check_bool(True, "b") is True and check_bool(np.bool_(False), "b") is False
    for value in ("no", 0, 1, None, "True"):
        with pytest.raises(TypeError, match=r"^verify should be True or False, but got verify="):
            check_bool(value, "verify")
    with pytest.raises(ValueError, match="flag="):
        check_bool(0, "flag", type_error=ValueError)


def test_check_number() -> None:
    for value in (0, 1.5, np.float32(0.25), np.int64(3), -2):
        got = check_number(value, "x")
        assert got == float(value) and type(got) is float
    assert check_number(INF, "x", finite=False) == INF
    with pytest.raises(
        ValueError, match=r"^timeout should be a number, not NaN, but got timeout=nan"
    ):
        check_number(NAN, "timeout", finite=False)
    with pytest.raises(ValueError, match=r"x should be a finite number, but got x=inf"):
        check_number(INF, "x")
    with pytest.raises(ValueError, match=r"x should be a number > 0, but got x=0"):
        check_number(0, "x", positive=True)
    with pytest.raises(ValueError, match=r"x should be a number >= 0, but got x=-1; fix it"):
        check_number(-1, "x", minimum=0, fix="fix it")
    for value in (True, "1", None, 1j, [1.0]):
        with pytest.raises(TypeError, match=r"^x should be a number, but got x="):
            check_number(value, "x")


def test_check_probability() -> None:
    assert check_probability(0, "p") == 0.0 and check_probability(np.float64(1), "p") == 1.0
    for value in (-0.1, 1.01, NAN, INF):
        with pytest.raises(ValueError, match=r"p should be a .*number.*, but got p="):
            check_probability(value, "p")
    with pytest.raises(TypeError, match="p should be a number"):
        check_probability("0.5", "p")


def test_check_callable() -> None:
    assert check_callable(len, "fn") is len
    assert check_callable(None, "fn", optional=True) is None
    with pytest.raises(TypeError, match=r"^fn should be a callable, but got fn=None \(NoneType\)"):
        check_callable(None, "fn")
    with pytest.raises(
        TypeError, match=r"fn should be a callable or None, but got fn=5 \(int\); f"
    ):
        check_callable(5, "fn", optional=True, fix="f")


def test_check_choice() -> None:
    assert check_choice("edge", "mode", ("constant", "edge")) == "edge"
    assert type(check_choice(np.str_("edge"), "mode", ("constant", "edge"))) is str
    assert check_choice(2, "n", (1, 2)) == 2
    with pytest.raises(ValueError, match=r"^mode should be one of 'a', 'b', but got mode='c'; x$"):
        check_choice("c", "mode", ["a", "b"], fix="x")
    with pytest.raises(ValueError, match="n=True"):
        check_choice(True, "n", (1, 2))  # a bool is not the int 1
    with pytest.raises(ValueError, match=r"mode=\['a'\]"):
        check_choice(["a"], "mode", {"a", "b"})  # unhashable: no choice, no TypeError


def test_check_fits_dtype() -> None:
    for value, dtype in ((255, np.uint8), (-1.0, np.int8), (NAN, np.float32), (1, np.bool_)):
        check_fits_dtype(value, "v", dtype)
    for value, dtype in ((256, np.uint8), (1.5, np.int64), (NAN, np.int64), (INF, np.int32)):
        with pytest.raises(ValueError, match=rf"^v={value!r} does not fit the dtype"):
            check_fits_dtype(value, "v", dtype)
    with pytest.raises(ValueError, match=r"largest value is 65504"):
        check_fits_dtype(1e6, "v", np.float16)
    with pytest.raises(ValueError, match=r"from 0 to 1"):
        check_fits_dtype(2, "v", np.bool_)


def test_check_path() -> None:
    assert check_path("a/b", "path") == "a/b" and check_path(Path("x"), "path") == "x"
    with pytest.raises(ValueError, match=r"^out_dir should be a path, but got out_dir='', which"):
        check_path("", "out_dir")
    for value in (None, 5, b"bytes"):
        with pytest.raises(TypeError, match=r"^path should be a path \(a str or pathlib\.Path\)"):
            check_path(value, "path")


# --- data on disk, shared by the tables ---------------------------------------------------


class At:
    """A path under the module's data directory, resolved when the row runs."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return f"At({self.name!r})"


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("validation")
    write_shards([{"x": np.arange(3) + i, "y": i} for i in range(4)], root / "shards")
    np.save(root / "x.npy", np.arange(12).reshape(6, 2))
    for name in ("cat", "dog"):
        (root / "images" / name).mkdir(parents=True)
        (root / "images" / name / "a.png").write_bytes(b"")
    (root / "out").mkdir()
    return root


def _resolve(value: Any, root: Path) -> Any:
    if isinstance(value, At):
        return root / value.name
    if isinstance(value, tuple):
        return tuple(_resolve(v, root) for v in value)
    if isinstance(value, dict):
        return {k: _resolve(v, root) for k, v in value.items()}
    return value


class Stream(IterableDataset[int]):
    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(range(3))


DS = TensorDataset(np.arange(6))
INTS = [np.array([1, 2]), np.array([3])]


def _getitem(dataset: Any, index: Any) -> Any:
    return operator.getitem(dataset, index)


def _stream_from(path: Path, position: Any) -> Any:
    return next(ShardStream(path).iter_from(position))


def _check_shard(path: Path, shard: Any, record: Any) -> None:
    ShardDataset(path).check(shard, record)


# --- bad arguments: (callable, args, kwargs, exception, substring naming the argument) ------

Row = tuple[Callable[..., Any], tuple[Any, ...], dict[str, Any], type[BaseException], str]

DATASETS: list[Row] = [
    (TensorDataset, (3,), {}, TypeError, "argument 0"),
    (TensorDataset, (), {}, ValueError, "at least one array"),
    (TensorDataset, (np.zeros(3), np.zeros(2)), {}, ValueError, "argument 1 has 2"),
    (Subset, (DS, [1.5]), {}, TypeError, "indices=[1.5]"),
    (Subset, (DS, 5), {}, TypeError, "indices=5"),
    (Subset, (DS, "ab"), {}, TypeError, "indices='ab'"),
    (Subset, (DS, [[0, 1]]), {}, TypeError, "indices=[[0, 1]]"),
    (Subset, (DS, np.array([True, False])), {}, TypeError, "np.flatnonzero(mask)"),
    (Subset, (None, [0]), {}, TypeError, "dataset=None"),
    (Subset, (Stream(), [0]), {}, TypeError, "dataset is an IterableDataset"),
    (ConcatDataset, (5,), {}, TypeError, "datasets=5"),
    (ConcatDataset, ("ab",), {}, TypeError, "datasets='ab'"),
    (ConcatDataset, ([DS, 5],), {}, TypeError, "datasets[1]=5"),
    (ConcatDataset, ([],), {}, ValueError, "at least one dataset"),
    (ConcatDataset, ([DS, Stream()],), {}, TypeError, "support IterableDataset: dataset 1"),
    (ChainDataset, (5,), {}, TypeError, "datasets=5"),
    (ChainDataset, ([DS],), {}, TypeError, "dataset 0 is TensorDataset"),
    (StackDataset, (5,), {}, TypeError, "args[0]=5"),
    (StackDataset, (), {"a": None}, TypeError, "a=None"),
    (StackDataset, (), {}, ValueError, "at least one dataset"),
    (StackDataset, (DS, TensorDataset(np.arange(2))), {}, ValueError, "dataset 1 has 2"),
    (random_split, (DS, 5), {}, TypeError, "lengths=5"),
    (random_split, (DS, "33"), {}, TypeError, "lengths='33'"),
    (random_split, (DS, [3, "3"]), {}, TypeError, "lengths[1]='3'"),
    (random_split, (DS, [True, 5]), {}, TypeError, "lengths[0]=True"),
    (random_split, (DS, [0.5, NAN]), {}, ValueError, "lengths[1]=nan"),
    (random_split, (DS, [INF, 1]), {}, ValueError, "lengths[0]=inf"),
    (random_split, (DS, [-1, 7]), {}, ValueError, "lengths[0]=-1"),
    (random_split, (DS, [2.5, 3.5]), {}, ValueError, "lengths[0]=2.5"),
    (random_split, (DS, [3, 4]), {}, ValueError, "sum to 7"),
    (random_split, (5, [5]), {}, TypeError, "dataset=5"),
    (random_split, (DS, [6]), {"seed": -1}, ValueError, "seed=-1"),
    (random_split, (DS, [6]), {"seed": 1.5}, TypeError, "seed=1.5"),
    (random_split, (DS, [6], 42), {}, TypeError, "generator=42"),
    (_getitem, (DS, 1.5), {}, IndexError, "index=1.5"),
    (_getitem, (DS, True), {}, IndexError, "index=True"),
    (_getitem, (DS, "0"), {}, IndexError, "index='0'"),
    (_getitem, (Subset(DS, [0, 1]), 0.0), {}, TypeError, "index=0.0"),
    (_getitem, (ConcatDataset([DS]), 1.5), {}, TypeError, "index=1.5"),
    (_getitem, (StackDataset(DS), 1.5), {}, TypeError, "index=1.5"),
    (DS.__getitems__, ([1.5],), {}, TypeError, "indices=[1.5]"),
    (Subset(DS, [0, 1]).__getitems__, ([0.5],), {}, TypeError, "indices=[0.5]"),
    (StackDataset(DS).__getitems__, (["0"],), {}, TypeError, "indices=['0']"),
]

TRANSFORMS: list[Row] = [
    (RandomHorizontalFlip, (1.5,), {}, ValueError, "p=1.5"),
    (RandomHorizontalFlip, (NAN,), {}, ValueError, "p=nan"),
    (RandomHorizontalFlip, ("0.5",), {}, TypeError, "p='0.5'"),
    (RandomHorizontalFlip, (None,), {}, TypeError, "p=None"),
    (RandomCrop, (0,), {}, ValueError, "size=(0, 0)"),
    (RandomCrop, (2.5,), {}, TypeError, "size=2.5"),
    (RandomCrop, (True,), {}, TypeError, "size=True"),
    (RandomCrop, ((1, 2, 3),), {}, TypeError, "size=(1, 2, 3)"),
    (RandomCrop, (None,), {}, TypeError, "size=None"),
    (RandomCrop, (4,), {"padding": -1}, ValueError, "padding=-1"),
    (RandomCrop, (4,), {"padding": 1.5}, TypeError, "padding=1.5"),
    (RandomCrop, (4,), {"padding": (1, 2, 3)}, TypeError, "padding=(1, 2, 3)"),
    (RandomCrop, (4,), {"pad_if_needed": "no"}, TypeError, "pad_if_needed='no'"),
    (RandomCrop, (4,), {"pad_if_needed": 1}, TypeError, "pad_if_needed=1"),
    (RandomCrop, (4,), {"fill": "red"}, TypeError, "fill='red'"),
    (RandomCrop, (4,), {"fill": None}, TypeError, "fill=None"),
    (RandomCrop, (4,), {"fill": ()}, TypeError, "fill=()"),
    (RandomCrop, (4,), {"padding_mode": "wrap"}, ValueError, "padding_mode='wrap'"),
    (RandomCrop, (4,), {"padding_mode": None}, ValueError, "padding_mode=None"),
    (CenterCrop, (-1,), {}, ValueError, "size=(-1, -1)"),
    (CenterCrop, ("a",), {}, TypeError, "size='a'"),
    (Resize, (0,), {}, ValueError, "size=(0, 0)"),
    (Resize, (8,), {"interpolation": "cubic"}, ValueError, "interpolation='cubic'"),
    (Resize, (8,), {"max_size": 8}, ValueError, "max_size=8"),
    (Resize, (8,), {"max_size": 9.5}, ValueError, "max_size=9.5"),
    (Resize, ((8, 8),), {"max_size": 10}, ValueError, "max_size=10"),
    (Resize, (8,), {"antialias": "no"}, TypeError, "antialias='no'"),
    (Normalize, (0.5, -1), {}, ValueError, "std=-1"),
    (Normalize, (0.5, 0), {}, ValueError, "std=0"),
    (Normalize, (0.5, [1, 0.0]), {}, ValueError, "std[1]=0.0"),
    (Normalize, (0.5, [1, INF]), {}, ValueError, "std[1]=inf"),
    (Normalize, (NAN, 1), {}, ValueError, "mean=nan"),
    (Normalize, ([0.5, NAN], 1), {}, ValueError, "mean[1]=nan"),
    (Normalize, ([True], 1), {}, TypeError, "mean=[True]"),
    (Normalize, ("0.5", 1), {}, TypeError, "mean='0.5'"),
    (Normalize, (["0.5"], 1), {}, TypeError, "mean=['0.5']"),
    (Normalize, (0.5, []), {}, TypeError, "std=[]"),
    (Normalize, (0.5, None), {}, TypeError, "std=None"),
    (Normalize, (0.5, [[1, 2]]), {}, TypeError, "std=[[1, 2]]"),
    (Normalize, (0.5, 1), {"layout": "chw"}, ValueError, "layout='chw'"),
    (ToFloat, (np.int32,), {}, TypeError, "dtype=<class 'numpy.int32'>"),
    (ToFloat, (None,), {}, TypeError, "dtype=None"),
    (ToFloat, (), {"scale": "yes"}, TypeError, "scale='yes'"),
    (Compose, (5,), {}, TypeError, "transforms=5"),
    (Compose, (ToCHW(),), {}, TypeError, "transforms=ToCHW()"),
    (Compose, ([ToCHW(), 3],), {}, TypeError, "transforms[1] is 3"),
    (Lambda, (5,), {}, TypeError, "fn=5"),
    (RandomCrop(4, padding=2, fill=NAN), (np.zeros((2, 2), np.uint8),), {}, ValueError, "fill=nan"),
]

BATCHING: list[Row] = [
    (PadCollate, ("0",), {}, TypeError, "pad_value='0'"),
    (PadCollate, (True,), {}, TypeError, "pad_value=True"),
    (PadCollate, (None,), {}, TypeError, "pad_value=None"),
    (PadCollate, (), {"keys": 5}, TypeError, "keys=5"),
    (PadCollate, (), {"keys": "ids"}, TypeError, "keys='ids'"),
    (PadCollate, (), {"keys": [["ids"]]}, TypeError, "keys=[['ids']]"),
    (PadCollate, (), {"keys": []}, ValueError, "keys=[]"),
    (PadCollate, (), {"pad_to_multiple_of": 0}, ValueError, "pad_to_multiple_of=0"),
    (PadCollate, (), {"pad_to_multiple_of": 2.0}, TypeError, "pad_to_multiple_of=2.0"),
    (PadCollate, (), {"pad_to_multiple_of": True}, TypeError, "pad_to_multiple_of=True"),
    (PadCollate(pad_value=NAN), (INTS,), {}, ValueError, "pad_value=nan"),
    (PadCollate(pad_value=2.5), (INTS,), {}, ValueError, "pad_value=2.5"),
    (register_collate, (5, len), {}, TypeError, "cls=5"),
    (register_collate, (complex, 5), {}, TypeError, "fn=5"),
    (default_collate, (5,), {}, TypeError, "batch=5"),
    (default_collate, ({"a": 1},), {}, TypeError, "batch={'a': 1}"),
]

FORMATS: list[Row] = [
    (ShardDataset, (At("shards"),), {"verify": "no"}, TypeError, "verify='no'"),
    (ShardDataset, (At("shards"),), {"verify": 1}, TypeError, "verify=1"),
    (ShardDataset, (At("shards"),), {"transform": 5}, TypeError, "transform=5"),
    (ShardDataset, ("",), {}, ValueError, "path=''"),
    (ShardDataset, (None,), {}, TypeError, "path=None"),
    (ShardStream, (At("shards"),), {"verify": "no"}, TypeError, "verify='no'"),
    (_stream_from, (At("shards"), -1), {}, ValueError, "position=-1"),
    (_stream_from, (At("shards"), 1.5), {}, TypeError, "position=1.5"),
    (_check_shard, (At("shards"), 0.5, 0), {}, TypeError, "shard=0.5"),
    (_check_shard, (At("shards"), 3, 0), {}, IndexError, "shard 3 is out of range"),
    (_check_shard, (At("shards"), 0, 1.5), {}, TypeError, "record=1.5"),
    (_getitem, (ShardDataset, 1.5), {}, TypeError, "index=1.5"),
    (write_shards, ([1], ""), {}, ValueError, "out_dir=''"),
    (write_shards, ([1], None), {}, TypeError, "out_dir=None"),
    (write_shards, (5, At("out/a")), {}, TypeError, "dataset=5"),
    (write_shards, ("abc", At("out/a")), {}, TypeError, "dataset='abc'"),
    (write_shards, ([1], At("out/a")), {"shard_bytes": 0}, ValueError, "shard_bytes=0"),
    (write_shards, ([1], At("out/a")), {"shard_bytes": 1.5}, TypeError, "shard_bytes=1.5"),
    (write_shards, ([1], At("out/a")), {"shard_bytes": True}, TypeError, "shard_bytes=True"),
    (write_shards, ([1], At("out/a")), {"samples_per_shard": 0}, ValueError, "samples_per_shard=0"),
    (write_shards, ([1], At("out/a")), {"samples_per_shard": 2.0}, TypeError, "shard=2.0"),
    (write_shards, ([1], At("out/a")), {"metadata": [("a", 1)]}, TypeError, "metadata=[("),
    (write_shards, ([1], At("out/a")), {"metadata": {"a": (1,)}}, ValueError, "metadata"),
    (write_shards, ([1], At("out/a")), {"progress": "yes"}, TypeError, "progress='yes'"),
    (write_shards, ([1], At("out/a")), {"overwrite": "no"}, TypeError, "overwrite='no'"),
    (write_shards, ([1], At("out/a")), {"jobs": 0}, ValueError, "jobs=0"),
    (write_shards, ([1], At("out/a")), {"jobs": "2"}, TypeError, "jobs='2'"),
    (write_part, ([1], At("out/p")), {"part": -1}, ValueError, "part=-1"),
    (write_part, ([1], At("out/p")), {"part": 0.0}, TypeError, "part=0.0"),
    (write_part, ([1], At("out/p")), {"part": 0, "shard_bytes": 0}, ValueError, "shard_bytes=0"),
    (write_part, (5, At("out/p")), {"part": 0}, TypeError, "data=5"),
    (commit_parts, (At("out/p"),), {"parts": -1}, ValueError, "parts=-1"),
    (commit_parts, (At("out/p"),), {"overwrite": "no"}, TypeError, "overwrite='no'"),
    (ImageFolder, (At("images"),), {"extensions": 5}, TypeError, "extensions=5"),
    (ImageFolder, (At("images"),), {"extensions": ""}, ValueError, "extensions=''"),
    (ImageFolder, (At("images"),), {"extensions": []}, TypeError, "extensions=[]"),
    (ImageFolder, (At("images"),), {"extensions": [".png", 5]}, TypeError, "extensions=['.png'"),
    (ImageFolder, (At("images"),), {"transform": 5}, TypeError, "transform=5"),
    (ImageFolder, (At("images"),), {"target_transform": "x"}, TypeError, "target_transform='x'"),
    (ImageFolder, (At("images"),), {"loader": "x"}, TypeError, "loader='x'"),
    (ImageFolder, (At("images"),), {"is_valid_file": 5}, TypeError, "is_valid_file=5"),
    (ImageFolder, (At("images"),), {"allow_empty": "no"}, TypeError, "allow_empty='no'"),
    (ImageFolder, (None,), {}, TypeError, "root=None"),
    (ImageFolder, ("",), {}, ValueError, "root=''"),
    (make_dataset, (At("images"), ["cat"], ".png"), {}, TypeError, "class_to_idx=['cat']"),
    (make_dataset, (At("images"), {"cat": 0.5}, ".png"), {}, TypeError, "class_to_idx="),
    (make_dataset, (At("images"), None, ".png", None, "no"), {}, TypeError, "allow_empty='no'"),
    (find_classes, ("",), {}, ValueError, "directory=''"),
    (NpyDataset, (At("x.npy"),), {"transform": 5}, TypeError, "transform=5"),
    (NpyDataset, ("",), {}, ValueError, "files=''"),
    (NpyDataset, (5,), {}, TypeError, "files should be a path"),
    (NpyDataset, ([],), {}, ValueError, "files=[]"),
    (_getitem, (NpyDataset, 1.5), {}, TypeError, "index=1.5"),
    (open_dataset, (At("x.npy"),), {"crop": 0}, ValueError, "crop=0"),
    (open_dataset, (At("x.npy"),), {"crop": 2.5}, TypeError, "crop=2.5"),
    (open_dataset, ("",), {}, ValueError, "path=''"),
    (pack, (At("images"), ""), {}, ValueError, "out=''"),
    (pack, ("", At("out/b")), {}, ValueError, "src=''"),
    (load_image, ("",), {}, ValueError, "path=''"),
    (load_image, (At("images/cat/a.png"),), {"mode": "rgb"}, ValueError, "mode='rgb'"),
    (load_image, (At("images/cat/a.png"),), {"mode": 5}, TypeError, "mode=5"),
    (decode_image, (b"png",), {"mode": "XYZ"}, ValueError, "mode='XYZ'"),
    (decode_image, ("a.png",), {}, TypeError, "use load_image(path)"),
]


def _ids(rows: list[Row]) -> list[str]:
    names = []
    for call, _, kwargs, _, needle in rows:
        owner = getattr(call, "__qualname__", type(call).__name__)
        names.append(f"{owner}-{next(iter(kwargs), '')}-{needle}")
    return names


@pytest.mark.parametrize(
    ("call", "args", "kwargs", "error", "needle"),
    DATASETS + TRANSFORMS + BATCHING + FORMATS,
    ids=_ids(DATASETS + TRANSFORMS + BATCHING + FORMATS),
)
def test_bad_arguments_are_refused_and_named(
    data: Path,
    call: Callable[..., Any],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    error: type[BaseException],
    needle: str,
) -> None:
    args, kwargs = _resolve(args, data), _resolve(kwargs, data)
    if call is _getitem and isinstance(args[0], type):  # a dataset on disk, made here
        source = data / ("shards" if args[0] is ShardDataset else "x.npy")
        args = (args[0](source), *args[1:])
    with pytest.raises(error) as caught:
        call(*args, **kwargs)
    assert (
        type(caught.value) is error
        or not issubclass(error, TypeError | ValueError)
        or (isinstance(caught.value, error))
    )
    assert needle in str(caught.value), f"{needle!r} not in {caught.value}"


def test_bad_paths_write_nothing(
    data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ValueError, match="out_dir=''"):
        write_shards([{"x": 1}], "")
    assert list(tmp_path.iterdir()) == []


PUBLIC_CONSTRUCTORS = {
    TensorDataset,
    Subset,
    ConcatDataset,
    ChainDataset,
    StackDataset,
    random_split,
    RandomHorizontalFlip,
    RandomCrop,
    CenterCrop,
    Resize,
    Normalize,
    ToFloat,
    Compose,
    Lambda,
    PadCollate,
    register_collate,
    ShardDataset,
    ShardStream,
    write_shards,
    ImageFolder,
    make_dataset,
    find_classes,
    NpyDataset,
    open_dataset,
    pack,
    load_image,
    decode_image,
}


def test_every_public_constructor_has_rows() -> None:
    covered = {row[0] for row in DATASETS + TRANSFORMS + BATCHING + FORMATS}
    assert covered >= PUBLIC_CONSTRUCTORS, PUBLIC_CONSTRUCTORS - covered


# --- good arguments, NumPy scalars included ----------------------------------------------

GOOD: list[tuple[Callable[..., Any], tuple[Any, ...], dict[str, Any]]] = [
    (TensorDataset, (np.zeros(4), np.arange(4)), {}),
    (Subset, (DS, np.array([0, 1], np.int32)), {}),
    (Subset, (DS, range(3)), {}),
    (Subset, ([10, 20], [np.int64(1)]), {}),
    (Subset, (DS, []), {}),
    (ConcatDataset, ((DS, [1, 2]),), {}),
    (ChainDataset, ((Stream(), Stream()),), {}),
    (StackDataset, (), {"a": DS, "b": list(range(6))}),
    (random_split, (DS, np.array([2, 4])), {"seed": np.int64(0)}),
    (random_split, (DS, [np.int64(2), 4]), {"seed": 0}),
    (random_split, (DS, [0.5, np.float32(0.5)]), {"seed": 0}),
    (RandomHorizontalFlip, (np.float64(0.5),), {}),
    (RandomHorizontalFlip, (1,), {}),
    (
        RandomCrop,
        (np.int64(4),),
        {"padding": np.int64(2), "pad_if_needed": np.True_, "fill": np.float32(0)},
    ),
    (RandomCrop, ((np.int32(2), 3),), {"padding": [1, 2], "fill": (1, 2, 3)}),
    (CenterCrop, ([np.uint8(5)],), {}),
    (Resize, (np.int64(8),), {"max_size": np.int64(10), "antialias": None}),
    (Resize, ((8, 6),), {"interpolation": np.str_("nearest")}),
    (Normalize, (np.float32(0.5), np.array([0.2, 0.3])), {}),
    (Normalize, ([0, 0], [1, 2]), {"layout": "HWC"}),
    (Normalize, (np.array(0.5), 1), {}),
    (ToFloat, (np.float16,), {"scale": np.bool_(False)}),
    (ToFloat, ("float64",), {}),
    (Compose, ((ToCHW(), np.fliplr),), {}),
    (Lambda, (np.fliplr,), {}),
    (PadCollate, (np.float32(-1),), {"keys": ("ids", 0), "pad_to_multiple_of": np.int64(4)}),
    (PadCollate, (NAN,), {}),
    (ShardDataset, (At("shards"),), {"verify": np.bool_(False), "transform": None}),
    (ShardStream, (At("shards"),), {"verify": True}),
    (_check_shard, (At("shards"), np.int64(0), np.int32(1)), {}),
    (
        write_shards,
        ([{"x": 1}, {"x": 2}], At("out/good")),
        {"shard_bytes": np.int64(1000), "samples_per_shard": np.int64(1), "overwrite": True},
    ),
    (ImageFolder, (At("images"),), {"extensions": [".PNG"], "allow_empty": np.False_}),
    (NpyDataset, (At("x.npy"),), {"transform": None}),
    (open_dataset, (At("x.npy"),), {"crop": np.int64(8)}),
]


@pytest.mark.parametrize(("call", "args", "kwargs"), GOOD)
def test_good_arguments_are_accepted(
    data: Path, call: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]
) -> None:
    args, kwargs = _resolve(args, data), _resolve(kwargs, data)
    call(*args, **kwargs)


def test_numpy_integers_become_python_ints() -> None:
    crop = RandomCrop(np.int64(4), padding=np.int64(1))
    assert crop.size == (4, 4) and all(type(n) is int for n in crop.padding or ())
    assert type(PadCollate(pad_to_multiple_of=np.int64(4)).pad_to_multiple_of) is int
    assert type(Resize(np.int64(8), max_size=np.int64(9)).max_size) is int
    assert RandomHorizontalFlip(np.float32(0.25)).p == 0.25
    assert ladle.DataLoader(Subset(DS, np.array([1, 2])), batch_size=2) is not None
