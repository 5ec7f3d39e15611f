"""What a sample looks like on disk: its structure and the kind of each field.

The writer infers a schema from the first sample and holds every later sample to it; the reader
rebuilds it from JSON it cannot trust, so ``Schema.from_json`` validates every value and accepts
only plain numeric dtypes: nothing in a shard can name a Python object or a pickle.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["DTYPES", "Field", "Kind", "Schema", "SchemaError", "Structure", "encode_value"]

#: The dtypes a field may hold, stored little-endian. Object, string and structured dtypes are
#: refused: they could not be read back without trusting the file.
DTYPES = frozenset(
    np.dtype(name).newbyteorder("<").str
    for name in (
        "bool",
        "int8",
        "int16",
        "int32",
        "int64",
        "uint8",
        "uint16",
        "uint32",
        "uint64",
        "float16",
        "float32",
        "float64",
        "complex64",
        "complex128",
    )
)
MAX_NDIM = 31  # with the batch (or record) axis, NumPy 1.x's limit of 32
_INT64 = (-(2**63), 2**63 - 1)


class SchemaError(ValueError):
    """A sample does not fit the schema, or a schema read from disk is malformed."""


class Structure(enum.Enum):
    """How a sample's fields are held together."""

    DICT = "dict"
    TUPLE = "tuple"
    LIST = "list"
    VALUE = "value"  # the sample is a single field


class Kind(enum.Enum):
    """What one field holds; Python scalars come back as the same Python type."""

    ARRAY = "array"  # np.ndarray of a fixed ndim and dtype; shapes may vary
    SCALAR = "scalar"  # a NumPy scalar (np.float32(1.5)): comes back as the same NumPy type
    INT = "int"
    FLOAT = "float"
    BOOL = "bool"
    BYTES = "bytes"
    STR = "str"


@dataclass(frozen=True)
class Field:
    """One field: ``dtype`` for ARRAY and SCALAR (a little-endian dtype string), ``ndim`` for
    ARRAY."""

    name: str
    kind: Kind
    dtype: str | None = None
    ndim: int | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "kind": self.kind.value}
        if self.dtype is not None:
            out["dtype"] = self.dtype
        if self.ndim is not None:
            out["ndim"] = self.ndim
        return out


@dataclass(frozen=True)
class Schema:
    structure: Structure
    fields: tuple[Field, ...]

    @property
    def names(self) -> list[str]:
        return [field.name for field in self.fields]

    def to_json(self) -> dict[str, Any]:
        return {
            "structure": self.structure.value,
            "fields": [field.to_json() for field in self.fields],
        }

    @classmethod
    def from_json(cls, data: Any) -> Schema:
        """Rebuild a schema from untrusted JSON; anything unexpected raises SchemaError."""
        if not isinstance(data, dict):
            raise SchemaError(f"the schema should be a JSON object, but it is {_kind_of(data)}")
        try:
            structure = Structure(data.get("structure"))
        except ValueError:
            raise SchemaError(f"unknown sample structure {data.get('structure')!r}") from None
        raw_fields = data.get("fields")
        if not isinstance(raw_fields, list) or not raw_fields:
            raise SchemaError("the schema should list at least one field")
        fields = tuple(_field_from_json(raw) for raw in raw_fields)
        if len({field.name for field in fields}) != len(fields):
            raise SchemaError("the schema names a field twice")
        if structure is Structure.VALUE and len(fields) != 1:
            raise SchemaError(f"a single-value sample has one field, not {len(fields)}")
        return cls(structure, fields)

    def split(self, sample: Any, index: int) -> list[Any]:
        """The sample's field values in schema order; SchemaError if its structure differs."""
        structure = self.structure
        if structure is Structure.DICT:
            if not isinstance(sample, Mapping) or len(sample) != len(self.fields):
                raise SchemaError(
                    f"sample {index} should be a dict with keys {self.names}, but it is "
                    f"{_describe(sample)}"
                )
            try:
                return [sample[name] for name in self.names]
            except KeyError:
                raise SchemaError(
                    f"sample {index} has keys {sorted(map(str, sample))}, but sample 0 had "
                    f"{sorted(self.names)}; every sample must have the same keys"
                ) from None
        if structure is Structure.VALUE:
            return [sample]
        expected = tuple if structure is Structure.TUPLE else list
        if type(sample) is not expected or len(sample) != len(self.fields):
            raise SchemaError(
                f"sample {index} should be a {expected.__name__} of {len(self.fields)} values, "
                f"like sample 0, but it is {_describe(sample)}"
            )
        return list(sample)

    def join(self, values: list[Any]) -> Any:
        """A sample from its field values: the inverse of ``split``."""
        structure = self.structure
        if structure is Structure.DICT:
            return dict(zip(self.names, values, strict=True))
        if structure is Structure.TUPLE:
            return tuple(values)
        if structure is Structure.LIST:
            return values
        return values[0]


def infer_schema(sample: Any) -> Schema:
    """The schema of ``sample``, the first sample of a dataset."""
    if isinstance(sample, Mapping):
        for key in sample:
            if not isinstance(key, str):
                raise SchemaError(
                    f"sample 0 is a dict with the key {key!r}; shard fields are named by "
                    f"strings, so use str keys"
                )
        structure, named = Structure.DICT, list(sample.items())
    elif type(sample) in (tuple, list):
        structure = Structure.TUPLE if type(sample) is tuple else Structure.LIST
        named = [(str(i), value) for i, value in enumerate(sample)]
        if not named:
            raise SchemaError(f"sample 0 is an empty {type(sample).__name__}; it has no fields")
    else:
        structure, named = Structure.VALUE, [("value", sample)]
    fields = []
    for name, value in named:
        kind, encoded = encode_value(value, name, 0)
        dtype = encoded.dtype.str if kind in (Kind.ARRAY, Kind.SCALAR) else None
        ndim = encoded.ndim if kind is Kind.ARRAY else None
        fields.append(Field(name, kind, dtype, ndim))
    return Schema(structure, tuple(fields))


def encode_value(value: Any, name: str, index: int) -> tuple[Kind, Any]:
    """The kind of one field value and the value ready to store (arrays little-endian)."""
    # NumPy scalars first (np.float64 is a float subclass), and bool before int (bool is one)
    if isinstance(value, np.str_ | np.bytes_):
        value = str(value) if isinstance(value, np.str_) else bytes(value)
    elif isinstance(value, np.generic):
        return Kind.SCALAR, _stored_array(np.asarray(value), name, index)
    if isinstance(value, bool):
        return Kind.BOOL, value
    if isinstance(value, int):
        if not _INT64[0] <= value <= _INT64[1]:
            raise SchemaError(
                f"field {name!r} of sample {index} is the int {value}, outside int64; store it "
                f"as a str or split it"
            )
        return Kind.INT, value
    if isinstance(value, float):
        return Kind.FLOAT, value
    if isinstance(value, bytes | bytearray | memoryview):
        return Kind.BYTES, bytes(value)
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as error:
            raise SchemaError(
                f"field {name!r} of sample {index} is a str that UTF-8 cannot encode ({error}); "
                f"remove lone surrogates, or store the data as bytes"
            ) from None
        return Kind.STR, value
    if isinstance(value, np.ndarray) or _is_tensor(value):
        try:
            array = _as_array(value)
        except (TypeError, RuntimeError) as error:  # e.g. bfloat16, which NumPy lacks
            raise SchemaError(
                f"field {name!r} of sample {index} cannot become a NumPy array ({error}); "
                f"cast it to a NumPy dtype first (e.g. float32)"
            ) from None
        return Kind.ARRAY, _stored_array(array, name, index)
    raise SchemaError(
        f"field {name!r} of sample {index} is {_describe(value)}; shards hold NumPy arrays and "
        f"scalars, int, float, bool, bytes and str (nested containers are not supported: "
        f"flatten them into fields)"
    )


def _stored_array(array: np.ndarray, name: str, index: int) -> np.ndarray:
    dtype = array.dtype.newbyteorder("<") if array.dtype.byteorder == ">" else array.dtype
    if dtype.str not in DTYPES:
        raise SchemaError(
            f"field {name!r} of sample {index} has dtype {array.dtype}; shards hold bool, "
            f"integer, float and complex arrays only (convert strings to bytes or str fields)"
        )
    if array.ndim > MAX_NDIM:
        raise SchemaError(
            f"field {name!r} of sample {index} has {array.ndim} dimensions, more than the "
            f"{MAX_NDIM} a shard holds; reshape it"
        )
    return np.asarray(array, dtype=dtype, order="C")  # keeps 0-d arrays 0-d


def _is_tensor(value: Any) -> bool:
    return type(value).__module__.split(".")[0] in ("torch", "jax", "jaxlib")


def _as_array(value: Any) -> np.ndarray:
    if isinstance(value, np.ndarray):
        return value
    if type(value).__module__.startswith("torch"):
        return np.asarray(value.detach().cpu().numpy())
    return np.asarray(value)


def _field_from_json(raw: Any) -> Field:
    if not isinstance(raw, dict):
        raise SchemaError(f"a field should be a JSON object, but it is {_kind_of(raw)}")
    name = raw.get("name")
    if not isinstance(name, str):
        raise SchemaError(f"a field's name should be a string, but it is {_kind_of(name)}")
    try:
        kind = Kind(raw.get("kind"))
    except ValueError:
        raise SchemaError(f"field {name!r} has the unknown kind {raw.get('kind')!r}") from None
    dtype = raw.get("dtype")
    ndim = raw.get("ndim")
    if kind in (Kind.ARRAY, Kind.SCALAR):
        if not isinstance(dtype, str) or dtype not in DTYPES:
            raise SchemaError(f"field {name!r} has the unsupported dtype {dtype!r}")
    elif dtype is not None:
        raise SchemaError(f"field {name!r} of kind {kind.value} cannot have a dtype")
    if kind is Kind.ARRAY:
        if not is_count(ndim, MAX_NDIM + 1):
            raise SchemaError(f"field {name!r} has the invalid ndim {ndim!r}")
    elif ndim is not None:
        raise SchemaError(f"field {name!r} of kind {kind.value} cannot have an ndim")
    return Field(name, kind, dtype, ndim)


def is_count(value: Any, limit: int = 2**62) -> bool:
    """A non-negative JSON integer below ``limit`` (bool is not an integer here)."""
    return type(value) is int and 0 <= value < limit


def is_shape(value: Any, ndim: int, limit: int = 2**62) -> bool:
    return (
        isinstance(value, list)
        and len(value) == ndim
        and all(is_count(n) for n in value)
        and math.prod(value) < limit
    )


def _kind_of(value: Any) -> str:
    return type(value).__name__


def _describe(value: Any) -> str:
    if isinstance(value, np.ndarray):
        return f"an array of shape {value.shape} and dtype {value.dtype}"
    text = repr(value)
    if len(text) > 60:
        text = text[:57] + "..."
    return f"{type(value).__name__} {text}"
