"""Writes numpy arrays as a torch.save zip file without torch, for generated test inputs (a
resnet50-sized state dict) where committing a fixture would be too big.

The pickle is the one torch 2.x writes for a state dict (an OrderedDict of _rebuild_tensor_v2 calls
whose storages are persistent ids), emitted opcode by opcode; entries are stored uncompressed at
64-byte-aligned offsets, as torch does. fixtures/pytorch/make_pytorch_fixtures.py's companion check
(test_pytorch_with_torch.py, run where torch is installed) loads these files with
torch.load(weights_only=True).
"""
import struct
import zipfile

import numpy as np

STORAGE = {
    np.dtype("float32"): "FloatStorage",
    np.dtype("float16"): "HalfStorage",
    np.dtype("float64"): "DoubleStorage",
    np.dtype("int64"): "LongStorage",
    np.dtype("int32"): "IntStorage",
    np.dtype("uint8"): "ByteStorage",
    np.dtype("bool"): "BoolStorage",
}


def _unicode(s):
    b = s.encode()
    return b"X" + struct.pack("<I", len(b)) + b


def _int(i):
    return b"J" + struct.pack("<i", i) if i < 2**31 else b"\x8a\x08" + struct.pack("<q", i)


def _ints(values):
    return b"(" + b"".join(_int(v) for v in values) + b"t"


def state_dict_pickle(arrays):
    """The data.pkl of a state dict: name -> (storage key, array)."""
    out = [b"\x80\x02", b"ccollections\nOrderedDict\n", b")R", b"("]
    for i, (name, a) in enumerate(arrays.items()):
        strides = [s // a.itemsize for s in a.strides] if a.size else [1] * a.ndim
        out += [
            _unicode(name),
            b"ctorch._utils\n_rebuild_tensor_v2\n",
            b"((",
            _unicode("storage"),
            f"ctorch\n{STORAGE[a.dtype]}\n".encode(),
            _unicode(str(i)),
            _unicode("cpu"),
            _int(a.size),
            b"tQ",
            _int(0),
            _ints(a.shape),
            _ints(strides),
            b"\x89",
            b"ccollections\nOrderedDict\n)R",
            b"tR",
        ]
    out += [b"u."]
    return b"".join(out)


def save(arrays, path, top="archive"):
    """Writes `arrays` (name -> C-contiguous numpy array) as a torch.save zip file."""
    arrays = {k: np.asarray(v, order="C") for k, v in arrays.items()}  # (ascontiguousarray makes 0-d arrays 1-d)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as z:

        def write(name, data):
            info = zipfile.ZipInfo(f"{top}/{name}", date_time=(1980, 1, 1, 0, 0, 0))
            # Pad the local header's extra field so the entry's bytes start 64-byte aligned.
            offset = z.fp.tell() + 30 + len(info.filename.encode())
            pad = (-(offset + 4)) % 64
            info.extra = struct.pack("<HH", 0xCAFE, pad) + b"\0" * pad
            z.writestr(info, data)

        write("data.pkl", state_dict_pickle(arrays))
        write("byteorder", b"little")
        for i, a in enumerate(arrays.values()):
            write(f"data/{i}", a.tobytes())
        write("version", b"3\n")


LEGACY_MAGIC = 0x1950A86A20F9469CFC6C


def _binstring(s):
    b = s.encode()
    return b"U" + bytes([len(b)]) + b if len(b) < 256 else b"T" + struct.pack("<i", len(b)) + b


def save_python2_legacy(arrays, path, location="cuda:0"):
    """Writes `arrays` as a Python 2 era torch.save file (the legacy format, before torch 1.6): every
    text a Python 2 `str` (SHORT_BINSTRING), storages on `location`, as torch 0.4-1.5 wrote them from
    Python 2 (lpips' weights are such files)."""
    arrays = {k: np.asarray(v, order="C") for k, v in arrays.items()}
    magic = b"\x80\x02\x8a\x0a" + LEGACY_MAGIC.to_bytes(10, "little") + b"."
    version = b"\x80\x02M\xe9\x03."
    info = b"\x80\x02}(" + _binstring("protocol_version") + b"M\xe9\x03" + _binstring("little_endian") + b"\x88u."
    out = [b"\x80\x02ccollections\nOrderedDict\n)R("]
    for i, (name, a) in enumerate(arrays.items()):
        strides = [s // a.itemsize for s in a.strides] if a.size else [1] * a.ndim
        out += [
            _binstring(name),
            b"ctorch._utils\n_rebuild_tensor_v2\n((",
            _binstring("storage"),
            f"ctorch\n{STORAGE[a.dtype]}\n".encode(),
            _binstring(str(1933719376 + i)),
            _binstring(location),
            b"\x8a\x01" + bytes([a.size]) if a.size < 128 else _int(a.size),
            b"NtQ",
            _int(0),
            _ints(a.shape),
            _ints(strides),
            b"\x89N",
            b"tR",
        ]
    out.append(b"u.")
    keys = b"\x80\x02](" + b"".join(_binstring(str(1933719376 + i)) for i in range(len(arrays))) + b"e."
    with open(path, "wb") as f:
        f.write(magic + version + info + b"".join(out) + keys)
        for a in arrays.values():
            f.write(struct.pack("<q", a.size) + a.tobytes())
