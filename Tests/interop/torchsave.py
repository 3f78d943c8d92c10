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
