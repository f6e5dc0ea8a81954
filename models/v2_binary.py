"""The Open Inference Protocol's binary tensor data extension, for the server and its clients alike.

A body in this extension is a JSON header of ``Inference-Header-Content-Length``
bytes followed by the raw tensors, in the order of the header's tensors
that carry ``parameters.binary_data_size``: numbers little-endian in their
native size, BOOL one byte (0 or 1), BYTES a 4-byte little-endian length
before each element. Outputs are answered raw when the request asks for it
(``parameters.binary_data`` on an output, else ``binary_data_output`` on the
request), which is what tritonclient does by default.

Both directions are here so that the server and any client (the bench, the
tests) read and write one layout: :func:`split_body` and :func:`read_tensors`
turn a body back into the JSON document with every tensor's ``data`` filled
in (BYTES as text, as the JSON wire carries it), so the server scores a
binary request through the same path as a JSON one and answers the same
numbers; :func:`encode_tensor` and :func:`pack_body` go the other way.
Anything that does not add up raises :class:`BinaryTensorError`, whose
message names the tensor and the sizes, for a 400.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Protocol

import numpy as np
import orjson

__all__ = [
    "BINARY_CONTENT_TYPE",
    "BINARY_DATA",
    "BINARY_DATA_OUTPUT",
    "BINARY_DATA_SIZE",
    "INFERENCE_HEADER_LENGTH",
    "BinaryTensorError",
    "binary_outputs",
    "binary_size",
    "decode_tensor",
    "encode_tensor",
    "pack_body",
    "read_tensors",
    "split_body",
]

#: The HTTP header giving the JSON header's length when raw tensors follow it.
INFERENCE_HEADER_LENGTH = "Inference-Header-Content-Length"
#: The Content-Type of a body that is not JSON alone.
BINARY_CONTENT_TYPE = "application/octet-stream"
#: Tensor parameter: this tensor's bytes follow the JSON header.
BINARY_DATA_SIZE = "binary_data_size"
#: Requested-output parameter: answer this output raw.
BINARY_DATA = "binary_data"
#: Request parameter: answer every output raw unless the output says otherwise.
BINARY_DATA_OUTPUT = "binary_data_output"

#: Fixed-size datatypes -> their little-endian numpy dtype.
_DTYPES: dict[str, np.dtype[Any]] = {
    "BOOL": np.dtype("u1"),  # checked for 0/1, then read as booleans
    "UINT8": np.dtype("u1"),
    "UINT16": np.dtype("<u2"),
    "UINT32": np.dtype("<u4"),
    "UINT64": np.dtype("<u8"),
    "INT8": np.dtype("i1"),
    "INT16": np.dtype("<i2"),
    "INT32": np.dtype("<i4"),
    "INT64": np.dtype("<i8"),
    "FP16": np.dtype("<f2"),
    "FP32": np.dtype("<f4"),
    "FP64": np.dtype("<f8"),
}
_LENGTH = struct.Struct("<I")


class BinaryTensorError(ValueError):
    """A binary body that does not agree with its JSON header; the message says where."""


class Tensor(Protocol):
    """What the codec reads of a request input or a response output."""

    name: str
    datatype: str
    shape: list[int]
    data: list[Any] | None
    parameters: dict[str, Any] | None


def binary_size(parameters: Mapping[str, Any] | None) -> int | None:
    """A tensor's ``binary_data_size``, or None for a tensor carried in JSON."""
    if not parameters or BINARY_DATA_SIZE not in parameters:
        return None
    size = parameters[BINARY_DATA_SIZE]
    if isinstance(size, bool) or not isinstance(size, int) or size < 0:
        raise BinaryTensorError(
            f"{BINARY_DATA_SIZE} must be a byte count, got {size!r}"
        )
    return size


def _elements(name: str, shape: Sequence[int]) -> int:
    if any(dim < 0 for dim in shape):
        raise BinaryTensorError(
            f"tensor {name!r}: shape {list(shape)} has a negative dimension"
        )
    return math.prod(shape)


def decode_tensor(
    name: str, datatype: str, shape: Sequence[int], raw: bytes | memoryview
) -> list[Any]:
    """The flat row-major values of one raw tensor, as the JSON wire carries them."""
    count = _elements(name, shape)
    if datatype == "BYTES":
        return _decode_bytes(name, count, raw)
    dtype = _DTYPES.get(datatype)
    if dtype is None:
        raise BinaryTensorError(
            f"tensor {name!r}: datatype {datatype!r} has no binary form"
        )
    if len(raw) != count * dtype.itemsize:
        raise BinaryTensorError(
            f"tensor {name!r}: {len(raw)} bytes, but shape {list(shape)} of "
            f"{datatype} takes {count * dtype.itemsize}"
        )
    values = np.frombuffer(raw, dtype=dtype)
    if datatype == "BOOL":
        if values.size and int(values.max()) > 1:
            raise BinaryTensorError(f"tensor {name!r}: a BOOL element is a byte 0 or 1")
        return values.astype(bool).tolist()
    return values.tolist()


def _decode_bytes(name: str, count: int, raw: bytes | memoryview) -> list[Any]:
    """Length-prefixed elements, exactly ``count`` of them filling ``raw``; text where UTF-8."""
    view = memoryview(raw)
    values: list[Any] = []
    offset = 0
    while offset < len(view):
        if len(values) == count:
            raise BinaryTensorError(
                f"tensor {name!r}: {len(view) - offset} bytes after its {count} BYTES elements"
            )
        if offset + 4 > len(view):
            raise BinaryTensorError(
                f"tensor {name!r}: element {len(values)} has a truncated length prefix"
            )
        (length,) = _LENGTH.unpack_from(view, offset)
        offset += 4
        if offset + length > len(view):
            raise BinaryTensorError(
                f"tensor {name!r}: element {len(values)} of {length} bytes "
                f"runs past the tensor's {len(view)} bytes"
            )
        element = bytes(view[offset : offset + length])
        offset += length
        try:
            values.append(element.decode())
        except UnicodeDecodeError:
            raise BinaryTensorError(
                f"tensor {name!r}: element {len(values)} is not UTF-8 text"
            ) from None
    if len(values) != count:
        raise BinaryTensorError(
            f"tensor {name!r}: {len(values)} BYTES elements, but its shape holds {count}"
        )
    return values


def encode_tensor(datatype: str, values: np.ndarray | Iterable[Any]) -> bytes:
    """One tensor's raw bytes; BYTES elements are text (UTF-8) or bytes.

    Float tensors take None as NaN (the JSON wire's null); integer and BOOL
    tensors have no such value and refuse it.
    """
    if datatype == "BYTES":
        # a column repeats few values (a classifier's labels): each is framed once
        framed: dict[str | bytes, bytes] = {}
        parts = []
        for value in values:
            key = value if isinstance(value, bytes) else str(value)
            part = framed.get(key)
            if part is None:
                element = key if isinstance(key, bytes) else key.encode()
                part = framed[key] = _LENGTH.pack(len(element)) + element
            parts.append(part)
        return b"".join(parts)
    dtype = _DTYPES.get(datatype)
    if dtype is None:
        raise BinaryTensorError(f"datatype {datatype!r} has no binary form")
    try:
        array = np.asarray(
            values if isinstance(values, np.ndarray) else list(values),
            dtype=bool if datatype == "BOOL" else dtype,
        )
    except (TypeError, ValueError, OverflowError) as exc:
        raise BinaryTensorError(
            f"values do not fit a {datatype} tensor: {exc}"
        ) from None
    return array.astype(dtype, copy=False).tobytes()


def split_body(body: bytes, header_length: str | int) -> tuple[bytes, memoryview]:
    """``(JSON header, raw tensors)`` of a body whose header is ``header_length`` bytes."""
    try:
        length = int(header_length)
    except ValueError:
        raise BinaryTensorError(
            f"{INFERENCE_HEADER_LENGTH} must be a byte count, got {header_length!r}"
        ) from None
    if not 0 < length <= len(body):
        raise BinaryTensorError(
            f"{INFERENCE_HEADER_LENGTH} of {length} bytes does not fit "
            f"a body of {len(body)} bytes"
        )
    view = memoryview(body)
    return bytes(view[:length]), view[length:]


def read_tensors(tensors: Sequence[Tensor], raw: memoryview) -> None:
    """Fill in the ``data`` of every tensor with a ``binary_data_size`` from ``raw``, in order.

    ``raw`` must be exactly the binary tensors' bytes: a tensor given both
    ways, a size that runs past the body, or bytes no tensor claims is an
    error rather than a guess.
    """
    offset = 0
    for tensor in tensors:
        size = binary_size(tensor.parameters)
        if size is None:
            continue
        if tensor.data is not None:
            raise BinaryTensorError(
                f"tensor {tensor.name!r} has both {BINARY_DATA_SIZE} and JSON data"
            )
        if offset + size > len(raw):
            raise BinaryTensorError(
                f"tensor {tensor.name!r}: {BINARY_DATA_SIZE} {size} runs past the "
                f"{len(raw) - offset} bytes left after the JSON header"
            )
        tensor.data = decode_tensor(
            tensor.name, tensor.datatype, tensor.shape, raw[offset : offset + size]
        )
        offset += size
    if offset != len(raw):
        raise BinaryTensorError(
            f"{len(raw) - offset} bytes after the JSON header that no tensor's "
            f"{BINARY_DATA_SIZE} claims"
        )


def binary_outputs(
    parameters: Mapping[str, Any] | None,
    requested: Sequence[tuple[str, Mapping[str, Any] | None]],
    names: Iterable[str],
) -> frozenset[str]:
    """Which of ``names`` to answer raw.

    ``parameters`` are the request's, ``requested`` the (name, parameters)
    of the outputs it names: an output's ``binary_data`` wins over the
    request's ``binary_data_output``, which is off unless given.
    """
    default = _flag(parameters, BINARY_DATA_OUTPUT) or False
    chosen = {name: _flag(given, BINARY_DATA) for name, given in requested}
    return frozenset(
        name
        for name in names
        if (default if chosen.get(name) is None else chosen[name])
    )


def _flag(parameters: Mapping[str, Any] | None, key: str) -> bool | None:
    if not parameters or key not in parameters:
        return None
    value = parameters[key]
    if not isinstance(value, bool):
        raise BinaryTensorError(f"parameter {key} must be true or false, got {value!r}")
    return value


def pack_body(
    document: dict[str, Any], key: str, raw: Mapping[str, bytes]
) -> tuple[bytes, int | None]:
    """The body carrying ``document`` with the tensors under ``key`` named in ``raw`` sent raw.

    Each such tensor loses its ``data`` and gains ``binary_data_size``;
    answers ``(body, header length)``, the length None when nothing is raw
    (the body is then plain JSON).
    """
    if not raw:
        return orjson.dumps(document), None
    parts: list[bytes] = []
    for tensor in document[key]:
        payload = raw.get(tensor["name"])
        if payload is None:
            continue
        tensor.pop("data", None)
        tensor["parameters"] = {
            **(tensor.get("parameters") or {}),
            BINARY_DATA_SIZE: len(payload),
        }
        parts.append(payload)
    header = orjson.dumps(document)
    return header + b"".join(parts), len(header)
