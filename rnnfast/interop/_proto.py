"""A small, strict reader and writer of the protobuf wire format, for the parts of
ONNX's ``ModelProto`` that recurrent models use.

No onnx or protobuf package is needed.  The reader checks every length against the
bytes that remain *before* slicing or allocating, so a truncated or crafted file
raises :class:`ValueError` (never a crash, never an allocation larger than the
input).  Unknown fields are skipped (protobuf's rule); fields we need but cannot
honour (external data, segments) are refused by the callers.

Field numbers come from ``onnx/onnx.proto`` (IR version 10).
"""

import struct

import numpy as np

__all__ = ["ProtoError", "Tensor", "Attribute", "Node", "ValueInfo", "Graph", "Model",
           "parse_model", "parse_tensor", "encode_model", "encode_tensor",
           "DTYPE_OF_ONNX", "ONNX_OF_DTYPE"]

#: nesting depth at which the reader gives up (ONNX models of interest use ~5)
MAX_DEPTH = 32


class ProtoError(ValueError):
    """The bytes are not a well-formed protobuf message of the expected kind."""


# TensorProto.DataType -> numpy dtype (little endian, as ONNX stores raw_data)
DTYPE_OF_ONNX = {
    1: np.dtype("<f4"), 2: np.dtype("u1"), 3: np.dtype("i1"), 4: np.dtype("<u2"),
    5: np.dtype("<i2"), 6: np.dtype("<i4"), 7: np.dtype("<i8"), 9: np.dtype("?"),
    10: np.dtype("<f2"), 11: np.dtype("<f8"), 12: np.dtype("<u4"), 13: np.dtype("<u8"),
}
ONNX_OF_DTYPE = {v.newbyteorder("="): k for k, v in DTYPE_OF_ONNX.items()}
ONNX_OF_DTYPE.update({np.dtype(v.str): k for k, v in DTYPE_OF_ONNX.items()})

# ----------------------------------------------------------------------------
# wire level


def _varint(buf, pos, end):
    """Decode a varint at ``buf[pos:end]``; return ``(value, new_pos)``."""
    result = 0
    shift = 0
    while True:
        if pos >= end:
            raise ProtoError("truncated varint")
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            break
        shift += 7
        if shift >= 70:
            raise ProtoError("varint longer than 10 bytes")
    return result & 0xFFFFFFFFFFFFFFFF, pos


def _signed64(v):
    return v - (1 << 64) if v >= 1 << 63 else v


def _fields(buf, start=0, end=None):
    """Iterate ``(field_number, wire_type, value)`` over one message.

    ``value`` is an int (varint / fixed), or a ``(start, end)`` pair into ``buf``
    for length-delimited fields, checked to lie inside the message.
    """
    if end is None:
        end = len(buf)
    pos = start
    while pos < end:
        key, pos = _varint(buf, pos, end)
        field, wire = key >> 3, key & 7
        if field == 0:
            raise ProtoError("field number 0")
        if wire == 0:
            value, pos = _varint(buf, pos, end)
        elif wire == 1:
            if pos + 8 > end:
                raise ProtoError("truncated fixed64 field")
            value = int.from_bytes(buf[pos:pos + 8], "little")
            pos += 8
        elif wire == 5:
            if pos + 4 > end:
                raise ProtoError("truncated fixed32 field")
            value = int.from_bytes(buf[pos:pos + 4], "little")
            pos += 4
        elif wire == 2:
            n, pos = _varint(buf, pos, end)
            if n > end - pos:
                raise ProtoError(f"length-delimited field {field} claims {n} bytes, "
                                 f"{end - pos} remain")
            value = (pos, pos + n)
            pos += n
        else:  # groups (3, 4) and reserved wire types
            raise ProtoError(f"unsupported wire type {wire} (field {field})")
        yield field, wire, value


def _expect(wire, wanted, what):
    if wire != wanted:
        raise ProtoError(f"{what}: wire type {wire}, expected {wanted}")


def _text(buf, span, what):
    try:
        return bytes(buf[span[0]:span[1]]).decode("utf-8")
    except UnicodeDecodeError:
        raise ProtoError(f"{what} is not valid UTF-8") from None


def _ints(buf, wire, value, what):
    """A repeated int64 field: one varint, or a packed run of varints."""
    if wire == 0:
        return [_signed64(value)]
    _expect(wire, 2, what)
    out = []
    pos, end = value
    while pos < end:
        v, pos = _varint(buf, pos, end)
        out.append(_signed64(v))
    return out


def _packed_fixed(buf, wire, value, dtype, what):
    """A repeated float/double field: one fixed value, or a packed run."""
    size = np.dtype(dtype).itemsize
    if wire == 2:
        s, e = value
        if (e - s) % size:
            raise ProtoError(f"{what}: packed length {e - s} is not a multiple of {size}")
        return np.frombuffer(bytes(buf[s:e]), dtype=dtype)
    _expect(wire, 5 if size == 4 else 1, what)
    return np.frombuffer(value.to_bytes(size, "little"), dtype=dtype)


# ----------------------------------------------------------------------------
# messages


class Tensor:
    """``TensorProto``: ``name``, ``dims``, ``data_type`` and the data fields."""

    def __init__(self):
        self.name = ""
        self.dims = []
        self.data_type = 0
        self.raw_data = None
        self.float_data = []
        self.double_data = []
        self.int32_data = []
        self.int64_data = []
        self.uint64_data = []
        self.has_string_data = False
        self.external = False
        self.segment = False

    def to_numpy(self, what="tensor"):
        """The tensor as a new C-contiguous ndarray (native byte order).

        Sizes are checked against the bytes present before anything is allocated.
        """
        label = f"{what} {self.name!r}" if self.name else what
        if self.external:
            raise ProtoError(f"{label} keeps its data in an external file; rnnfast reads "
                             f"self-contained models only (save the model with "
                             f"save_as_external_data=False)")
        if self.segment:
            raise ProtoError(f"{label} is segmented; not supported")
        if self.data_type == 8 or self.has_string_data:
            raise ProtoError(f"{label} holds strings; expected numbers")
        dtype = DTYPE_OF_ONNX.get(self.data_type)
        if dtype is None:
            raise ProtoError(f"{label} has data_type {self.data_type}, which rnnfast "
                             f"does not read (float, double, float16 and integers only)")
        if any(d < 0 for d in self.dims):
            raise ProtoError(f"{label} has a negative dimension: {self.dims}")
        count = 1
        for d in self.dims:
            count *= d
        if self.raw_data is not None:
            s, e, buf = self.raw_data
            if e - s != count * dtype.itemsize:
                raise ProtoError(f"{label}: dims {self.dims} need "
                                 f"{count * dtype.itemsize} bytes of raw_data, got {e - s}")
            arr = np.frombuffer(bytes(buf[s:e]), dtype=dtype)
        else:
            if self.data_type == 1:
                src = self.float_data
            elif self.data_type == 11:
                src = self.double_data
            elif self.data_type in (7,):
                src = self.int64_data
            elif self.data_type in (12, 13):
                src = self.uint64_data
            else:  # int32_data carries int32, smaller ints, bool and float16 bits
                src = self.int32_data
            n = sum(len(a) for a in src)
            if n != count:
                raise ProtoError(f"{label}: dims {self.dims} need {count} values, "
                                 f"got {n}")
            if self.data_type in (1, 11):
                arr = (np.concatenate(src) if src else np.zeros(0, dtype)).astype(dtype)
            elif self.data_type == 10:
                bits = np.array([v for a in src for v in a], dtype=np.int64)
                arr = (bits & 0xFFFF).astype("<u2").view("<f2")
            else:
                vals = [v for a in src for v in a]
                try:
                    arr = np.array(vals, dtype=np.int64 if dtype.kind != "u" else np.uint64)
                    arr = arr.astype(dtype)
                except OverflowError:
                    raise ProtoError(f"{label}: integer values out of range") from None
        arr = arr.astype(dtype.newbyteorder("="), copy=True)
        return arr.reshape(self.dims)


def parse_tensor(buf, start=0, end=None, depth=0):
    """Decode a ``TensorProto``; raw data stays a reference into ``buf``."""
    t = Tensor()
    for field, wire, value in _fields(buf, start, end):
        if field == 1:
            t.dims.extend(_ints(buf, wire, value, "TensorProto.dims"))
        elif field == 2:
            _expect(wire, 0, "TensorProto.data_type")
            t.data_type = _signed64(value)
        elif field == 3:
            t.segment = True
        elif field == 4:
            t.float_data.append(_packed_fixed(buf, wire, value, "<f4", "float_data"))
        elif field == 5:
            t.int32_data.append(_ints(buf, wire, value, "int32_data"))
        elif field == 6:
            t.has_string_data = True
        elif field == 7:
            t.int64_data.append(_ints(buf, wire, value, "int64_data"))
        elif field == 8:
            _expect(wire, 2, "TensorProto.name")
            t.name = _text(buf, value, "TensorProto.name")
        elif field == 9:
            _expect(wire, 2, "TensorProto.raw_data")
            t.raw_data = (value[0], value[1], buf)
        elif field == 10:
            t.double_data.append(_packed_fixed(buf, wire, value, "<f8", "double_data"))
        elif field == 11:
            vals = _ints(buf, wire, value, "uint64_data")
            t.uint64_data.append([v & 0xFFFFFFFFFFFFFFFF for v in vals])
        elif field == 13:
            t.external = True
        elif field == 14:
            _expect(wire, 0, "TensorProto.data_location")
            if value == 1:
                t.external = True
    return t


class Attribute:
    """``AttributeProto``: ``name``, ``type`` and the value fields we use."""

    def __init__(self):
        self.name = ""
        self.type = 0
        self.f = None
        self.i = None
        self.s = None
        self.t = None
        self.floats = []
        self.ints = []
        self.strings = []
        self.other = False   # graphs, sparse tensors, type protos: never needed here

    @property
    def value(self):
        """The value by ``type`` (FLOAT 1, INT 2, STRING 3, TENSOR 4, FLOATS 6,
        INTS 7, STRINGS 8); None for kinds rnnfast does not use."""
        kind = self.type
        if kind == 0:  # old files may omit the type: infer it from the field set
            kind = (1 if self.f is not None else 2 if self.i is not None else
                    3 if self.s is not None else 4 if self.t is not None else
                    6 if self.floats else 7 if self.ints else 8 if self.strings else 0)
        if kind == 1:
            return 0.0 if self.f is None else self.f
        if kind == 2:
            return 0 if self.i is None else self.i
        if kind == 3:
            return b"" if self.s is None else self.s
        if kind == 4:
            return self.t
        if kind == 6:
            return [float(v) for v in self.floats]
        if kind == 7:
            return list(self.ints)
        if kind == 8:
            return list(self.strings)
        return None


def _parse_attribute(buf, start, end, depth):
    a = Attribute()
    for field, wire, value in _fields(buf, start, end):
        if field == 1:
            _expect(wire, 2, "AttributeProto.name")
            a.name = _text(buf, value, "AttributeProto.name")
        elif field == 20:
            _expect(wire, 0, "AttributeProto.type")
            a.type = _signed64(value)
        elif field == 2:
            _expect(wire, 5, "AttributeProto.f")
            a.f = struct.unpack("<f", value.to_bytes(4, "little"))[0]
        elif field == 3:
            _expect(wire, 0, "AttributeProto.i")
            a.i = _signed64(value)
        elif field == 4:
            _expect(wire, 2, "AttributeProto.s")
            a.s = bytes(buf[value[0]:value[1]])
        elif field == 5:
            _expect(wire, 2, "AttributeProto.t")
            a.t = parse_tensor(buf, value[0], value[1], depth + 1)
        elif field == 7:
            a.floats.extend(_packed_fixed(buf, wire, value, "<f4", "floats").tolist())
        elif field == 8:
            a.ints.extend(_ints(buf, wire, value, "AttributeProto.ints"))
        elif field == 9:
            _expect(wire, 2, "AttributeProto.strings")
            a.strings.append(bytes(buf[value[0]:value[1]]))
        elif field in (6, 10, 11, 14, 15, 22, 23):
            a.other = True
    return a


class Node:
    """``NodeProto``: inputs, outputs, name, op_type, domain, attributes."""

    def __init__(self):
        self.input = []
        self.output = []
        self.name = ""
        self.op_type = ""
        self.domain = ""
        self.attribute = []

    def attrs(self):
        return {a.name: a for a in self.attribute}


def _parse_node(buf, start, end, depth):
    n = Node()
    for field, wire, value in _fields(buf, start, end):
        if field in (1, 2, 3, 4, 7):
            _expect(wire, 2, "NodeProto string field")
            s = _text(buf, value, "NodeProto string")
            if field == 1:
                n.input.append(s)
            elif field == 2:
                n.output.append(s)
            elif field == 3:
                n.name = s
            elif field == 4:
                n.op_type = s
            else:
                n.domain = s
        elif field == 5:
            _expect(wire, 2, "NodeProto.attribute")
            n.attribute.append(_parse_attribute(buf, value[0], value[1], depth + 1))
    return n


class ValueInfo:
    """``ValueInfoProto``: name, element type and shape (ints or names or None)."""

    def __init__(self):
        self.name = ""
        self.elem_type = 0
        self.shape = None


def _parse_value_info(buf, start, end, depth):
    v = ValueInfo()
    for field, wire, value in _fields(buf, start, end):
        if field == 1:
            _expect(wire, 2, "ValueInfoProto.name")
            v.name = _text(buf, value, "ValueInfoProto.name")
        elif field == 2 and wire == 2:
            for f2, w2, v2 in _fields(buf, *value):          # TypeProto
                if f2 == 1 and w2 == 2:                       # tensor_type
                    for f3, w3, v3 in _fields(buf, *v2):
                        if f3 == 1 and w3 == 0:
                            v.elem_type = _signed64(v3)
                        elif f3 == 2 and w3 == 2:             # TensorShapeProto
                            v.shape = []
                            for f4, w4, v4 in _fields(buf, *v3):
                                if f4 == 1 and w4 == 2:       # Dimension
                                    dim = None
                                    for f5, w5, v5 in _fields(buf, *v4):
                                        if f5 == 1 and w5 == 0:
                                            dim = _signed64(v5)
                                        elif f5 == 2 and w5 == 2:
                                            dim = _text(buf, v5, "dim_param")
                                    v.shape.append(dim)
    return v


class Graph:
    """``GraphProto``: nodes, initializers, inputs, outputs."""

    def __init__(self):
        self.name = ""
        self.node = []
        self.initializer = []
        self.input = []
        self.output = []
        self.has_sparse_initializer = False


def _parse_graph(buf, start, end, depth):
    if depth > MAX_DEPTH:
        raise ProtoError("messages nested too deeply")
    g = Graph()
    for field, wire, value in _fields(buf, start, end):
        if field in (1, 5, 11, 12):
            _expect(wire, 2, "GraphProto field")
        if field == 1:
            g.node.append(_parse_node(buf, value[0], value[1], depth + 1))
        elif field == 2 and wire == 2:
            g.name = _text(buf, value, "GraphProto.name")
        elif field == 5:
            g.initializer.append(parse_tensor(buf, value[0], value[1], depth + 1))
        elif field == 11:
            g.input.append(_parse_value_info(buf, value[0], value[1], depth + 1))
        elif field == 12:
            g.output.append(_parse_value_info(buf, value[0], value[1], depth + 1))
        elif field == 15:
            g.has_sparse_initializer = True
    return g


class Model:
    """``ModelProto``: ir_version, opset imports ``{domain: version}`` and graph."""

    def __init__(self):
        self.ir_version = 0
        self.opset_import = {}
        self.graph = None
        self.producer_name = ""


def parse_model(data):
    """Decode a serialized ``ModelProto`` (bytes-like)."""
    buf = memoryview(data).cast("B") if not isinstance(data, bytes) else data
    m = Model()
    for field, wire, value in _fields(buf):
        if field == 1:
            _expect(wire, 0, "ModelProto.ir_version")
            m.ir_version = _signed64(value)
        elif field == 2 and wire == 2:
            m.producer_name = _text(buf, value, "ModelProto.producer_name")
        elif field == 7:
            _expect(wire, 2, "ModelProto.graph")
            m.graph = _parse_graph(buf, value[0], value[1], 1)
        elif field == 8:
            _expect(wire, 2, "ModelProto.opset_import")
            domain, version = "", None
            for f2, w2, v2 in _fields(buf, *value):
                if f2 == 1 and w2 == 2:
                    domain = _text(buf, v2, "OperatorSetIdProto.domain")
                elif f2 == 2 and w2 == 0:
                    version = _signed64(v2)
            if version is not None:
                m.opset_import[domain] = version
    if m.graph is None:
        raise ProtoError("no graph: not an ONNX model")
    return m


# ----------------------------------------------------------------------------
# writer


def _enc_varint(v):
    v &= 0xFFFFFFFFFFFFFFFF
    out = bytearray()
    while True:
        b = v & 0x7F
        v >>= 7
        if v:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def _key(field, wire):
    return _enc_varint((field << 3) | wire)


def _len_field(field, payload):
    return _key(field, 2) + _enc_varint(len(payload)) + payload


def _int_field(field, v):
    return _key(field, 0) + _enc_varint(v)


def _str_field(field, s):
    return _len_field(field, s.encode("utf-8") if isinstance(s, str) else s)


def encode_tensor(name, arr):
    """Serialize an ndarray as a ``TensorProto`` with ``raw_data`` (little endian)."""
    arr = np.asarray(arr)
    dt = ONNX_OF_DTYPE.get(arr.dtype)
    if dt is None:
        raise TypeError(f"cannot encode dtype {arr.dtype} as an ONNX tensor")
    out = b"".join(_int_field(1, int(d)) for d in arr.shape)
    out += _int_field(2, dt)
    out += _str_field(8, name)
    out += _len_field(9, np.ascontiguousarray(arr, dtype=DTYPE_OF_ONNX[dt]).tobytes())
    return out


def encode_attribute(name, value):
    """``AttributeProto`` for an int, float, str, list of ints/floats/strs."""
    out = _str_field(1, name)
    if isinstance(value, bool) or isinstance(value, (int, np.integer)):
        return out + _int_field(20, 2) + _int_field(3, int(value))
    if isinstance(value, (float, np.floating)):
        return out + _int_field(20, 1) + _key(2, 5) + struct.pack("<f", float(value))
    if isinstance(value, str):
        return out + _int_field(20, 3) + _str_field(4, value)
    if isinstance(value, (list, tuple)):
        if all(isinstance(v, str) for v in value) and value:
            return out + _int_field(20, 8) + b"".join(_str_field(9, v) for v in value)
        if all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in value):
            payload = b"".join(_enc_varint(int(v)) for v in value)
            return out + _int_field(20, 7) + _len_field(8, payload)
        payload = b"".join(struct.pack("<f", float(v)) for v in value)
        return out + _int_field(20, 6) + _len_field(7, payload)
    raise TypeError(f"cannot encode attribute {name!r} of type {type(value).__name__}")


def encode_node(op_type, inputs, outputs, name="", attributes=None):
    out = b"".join(_str_field(1, s) for s in inputs)
    out += b"".join(_str_field(2, s) for s in outputs)
    if name:
        out += _str_field(3, name)
    out += _str_field(4, op_type)
    for k, v in (attributes or {}).items():
        out += _len_field(5, encode_attribute(k, v))
    return out


def encode_value_info(name, elem_type, shape):
    """``ValueInfoProto`` of a tensor; ``shape`` items are ints or dim names."""
    dims = b""
    for d in shape:
        dims += _len_field(1, _int_field(1, d) if isinstance(d, int) else _str_field(2, d))
    tensor_type = _int_field(1, elem_type) + _len_field(2, dims)
    return _str_field(1, name) + _len_field(2, _len_field(1, tensor_type))


def encode_model(nodes, initializers, inputs, outputs, opset, graph_name="rnnfast",
                 ir_version=None, producer="rnnfast"):
    """Serialize a ``ModelProto``.

    ``nodes``: encoded NodeProtos; ``initializers``: ``(name, ndarray)``; ``inputs``,
    ``outputs``: ``(name, elem_type, shape)``.
    """
    if ir_version is None:
        # the IR version that goes with each opset (onnx/helper.py's table)
        ir_version = (3 if opset <= 8 else 4 if opset <= 9 else 5 if opset <= 11 else
                      7 if opset <= 14 else 8 if opset <= 18 else 9 if opset <= 20 else 10)
    if ir_version < 4:   # IR 3: every initializer must also be a graph input
        inputs = list(inputs) + [(n, ONNX_OF_DTYPE[np.asarray(a).dtype],
                                  list(np.asarray(a).shape)) for n, a in initializers]
    graph = b"".join(_len_field(1, n) for n in nodes)
    graph += _str_field(2, graph_name)
    graph += b"".join(_len_field(5, encode_tensor(n, a)) for n, a in initializers)
    graph += b"".join(_len_field(11, encode_value_info(*v)) for v in inputs)
    graph += b"".join(_len_field(12, encode_value_info(*v)) for v in outputs)
    out = _int_field(1, ir_version)
    out += _str_field(2, producer)
    out += _len_field(7, graph)
    out += _len_field(8, _str_field(1, "") + _int_field(2, opset))
    return out
