"""Reading the weights and the node list out of an ONNX file, without the onnx package.

An ONNX file is one protobuf message (ModelProto). The reranker's converter needs only two
of its parts: the graph's initializers (the weight tensors) and, for each node, its type, name
and inputs (which say which weight belongs to which layer). The few protobuf wire rules those
need are written out here, so installing the reranker adds no dependency.

Field numbers, from onnx.proto: ModelProto.graph = 7; GraphProto.node = 1, .initializer = 5;
NodeProto.input = 1, .output = 2, .name = 3, .op_type = 4; TensorProto.dims = 1,
.data_type = 2, .float_data = 4, .int32_data = 5, .int64_data = 7, .name = 8, .raw_data = 9,
.data_location = 14.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# TensorProto.DataType -> numpy dtype name
DTYPES = {1: "float32", 2: "uint8", 3: "int8", 5: "int16", 6: "int32", 7: "int64",
          10: "float16", 11: "float64"}


class OnnxError(Exception):
    """The file is not an ONNX model this reader understands; the message says what is wrong."""


@dataclass
class Node:
    op_type: str = ""
    name: str = ""
    inputs: list[str] = field(default_factory=list)
    outputs: list[str] = field(default_factory=list)


def _varint(buf: memoryview, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if pos >= len(buf):
            raise OnnxError("truncated protobuf (a varint runs past the end)")
        b = buf[pos]
        pos += 1
        value |= (b & 0x7F) << shift
        if b < 0x80:
            return value, pos
        shift += 7


def _fields(buf: memoryview) -> Iterator[tuple[int, int, Any]]:
    """(field number, wire type, value) for each field: ints for varints, memoryviews else."""
    pos = 0
    while pos < len(buf):
        key, pos = _varint(buf, pos)
        num, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(buf, pos)
            yield num, wire, value
        elif wire == 2:
            size, pos = _varint(buf, pos)
            if pos + size > len(buf):
                raise OnnxError("truncated protobuf (a field runs past the end)")
            yield num, wire, buf[pos:pos + size]
            pos += size
        elif wire == 1:
            yield num, wire, buf[pos:pos + 8]
            pos += 8
        elif wire == 5:
            yield num, wire, buf[pos:pos + 4]
            pos += 4
        else:
            raise OnnxError(f"unsupported protobuf wire type {wire}")


def _packed_varints(value: Any) -> list[int]:
    if isinstance(value, int):
        return [value]
    out, pos = [], 0
    while pos < len(value):
        v, pos = _varint(value, pos)
        out.append(v)
    return out


def _signed64(v: int) -> int:
    return v - (1 << 64) if v >= 1 << 63 else v


def _tensor(buf: memoryview) -> tuple[str, Any]:
    import numpy as np

    name, dtype, dims = "", 0, []
    raw: memoryview | None = None
    floats: list[Any] = []
    ints: list[int] = []
    for num, _, value in _fields(buf):
        if num == 1:
            dims += [_signed64(v) for v in _packed_varints(value)]
        elif num == 2:
            dtype = value
        elif num == 4:
            floats.append(np.frombuffer(value, "<f4"))  # packed or one fixed32
        elif num in (5, 7):
            ints += [_signed64(v) for v in _packed_varints(value)]
        elif num == 8:
            name = bytes(value).decode("utf-8")
        elif num == 9:
            raw = value
        elif num == 14 and value == 1:
            raise OnnxError(f"tensor {name or '?'} keeps its data in an external file; "
                            "give an ONNX file with the weights inside")
    if dtype not in DTYPES:
        raise OnnxError(f"tensor {name}: unsupported data type {dtype}")
    np_type = np.dtype(DTYPES[dtype]).newbyteorder("<")
    if raw is not None:
        arr = np.frombuffer(raw, np_type).copy()
    elif floats:
        arr = np.concatenate(floats).astype(np_type)
    else:
        arr = np.asarray(ints, dtype=np.int64).astype(np_type)
    count = int(np.prod(dims)) if dims else 1
    if arr.size != count:
        raise OnnxError(f"tensor {name}: {arr.size} values for shape {dims}")
    return name, arr.reshape(dims)


def _node(buf: memoryview) -> Node:
    node = Node()
    for num, _, value in _fields(buf):
        if num == 1:
            node.inputs.append(bytes(value).decode("utf-8"))
        elif num == 2:
            node.outputs.append(bytes(value).decode("utf-8"))
        elif num == 3:
            node.name = bytes(value).decode("utf-8")
        elif num == 4:
            node.op_type = bytes(value).decode("utf-8")
    return node


def read(path: Path) -> tuple[dict[str, Any], list[Node]]:
    """The initializers (name -> numpy array) and the nodes of the model's main graph."""
    try:
        data = memoryview(Path(path).read_bytes())
    except OSError as e:
        raise OnnxError(f"cannot read {path}: {e}") from e
    try:
        graph = next((v for n, w, v in _fields(data) if n == 7 and w == 2), None)
        if graph is None:
            raise OnnxError("it has no graph")
        weights: dict[str, Any] = {}
        nodes: list[Node] = []
        for num, wire, value in _fields(graph):
            if wire != 2:
                continue
            if num == 5:
                name, arr = _tensor(value)
                weights[name] = arr
            elif num == 1:
                nodes.append(_node(value))
    except (OnnxError, ValueError, UnicodeDecodeError) as e:
        raise OnnxError(f"{path} is not a readable ONNX model: {e}") from e
    if not weights:
        raise OnnxError(f"{path} holds no weights")
    return weights, nodes
