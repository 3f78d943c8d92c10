"""Hostile torch.save files, made byte by byte (no torch): each `case_*` function writes its file into
a given directory and returns its path (and, where a case has one, what else the test needs).

The pickles are written opcode by opcode; the zip files are ZIP_STORED with the entries torch writes
(`archive/data.pkl`, `archive/data/N`, `archive/version`). Legacy-format files reuse
torchsave.save_python2_legacy's layout, split into its five pickles with pickletools.
"""
import io
import json
import os
import pickletools
import struct
import warnings
import zipfile

import numpy as np

import torchsave
from torchsave import _binstring, _int, _ints, _unicode

PROTO2 = b"\x80\x02"
ORDERED_DICT = b"ccollections\nOrderedDict\n"
REBUILD = b"ctorch._utils\n_rebuild_tensor_v2\n"
VALUE = np.float32(1.5)  # the stored value of the one-tensor cases


def tensor(key="0", storage="FloatStorage", numel=1, offset=0, shape=(1,), stride=(1,)):
    """The pickle fragment of one _rebuild_tensor_v2 call over persistent storage `key`."""
    return b"".join([
        REBUILD, b"((", _unicode("storage"), f"ctorch\n{storage}\n".encode(), _unicode(key), _unicode("cpu"),
        _int(numel), b"tQ", _int(offset), _ints(shape), _ints(stride), b"\x89", ORDERED_DICT, b")R", b"tR"])


def ordered_dict(entries):
    """An OrderedDict pickle fragment of name -> pickle fragment."""
    return ORDERED_DICT + b")R(" + b"".join(_unicode(k) + v for k, v in entries.items()) + b"u"


def deep_list(depth):
    """A list nested `depth` deep: EMPTY_LIST * depth, APPEND * (depth - 1)."""
    return b"]" * depth + b"a" * (depth - 1)


def write_zip(path, pkl, storages=None, top="archive"):
    """A torch.save zip: data.pkl (bytes, or an iterable of chunks streamed through a zip64 entry), the
    storages (key -> bytes, or a list of (key, bytes) pairs, duplicates allowed), byteorder and version."""
    storages = list(storages.items()) if isinstance(storages, dict) else list(storages or [])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # zipfile warns on a duplicate name: some cases want one
        with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as z:
            name = f"{top}/data.pkl"
            if isinstance(pkl, (bytes, bytearray)):
                z.writestr(zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0)), bytes(pkl))
            else:
                with z.open(name, "w", force_zip64=True) as f:
                    for chunk in pkl:
                        f.write(chunk)
            z.writestr(f"{top}/byteorder", b"little")
            for key, data in storages:
                z.writestr(zipfile.ZipInfo(f"{top}/data/{key}", date_time=(1980, 1, 1, 0, 0, 0)), data)
            z.writestr(f"{top}/version", b"3\n")
    return path


def one_tensor_zip(path, pkl):
    """A zip whose data.pkl is `pkl`, with one float32 storage '0' holding VALUE."""
    return write_zip(path, pkl, {"0": np.array([VALUE], np.float32).tobytes()})


def valid_state_dict():
    """An OrderedDict fragment with one real tensor w (storage '0')."""
    return ordered_dict({"w": tensor()})


# ---------------------------------------------------------------------------------------------------
# The legacy format (before torch 1.6): five pickles, then the storages' bytes.


def split_pickles(data, count):
    """The first `count` pickles of `data` (each ending at its STOP) and the bytes after them."""
    pickles, at = [], 0
    for _ in range(count):
        end = None
        for op, _arg, pos in pickletools.genops(io.BytesIO(data[at:])):
            if op.name == "STOP":
                end = at + pos + 1
        pickles.append(data[at:end])
        at = end
    return pickles, data[at:]


def legacy_parts(directory, arrays=None):
    """A valid legacy file of `arrays` (default one float32 tensor w = [VALUE]), split:
    [magic, version, info, main, keys], rest."""
    scratch = os.path.join(directory, ".legacy-scratch.pth")
    arrays = arrays if arrays is not None else {"w": np.array([VALUE], np.float32)}
    torchsave.save_python2_legacy(arrays, scratch, location="cpu")
    with open(scratch, "rb") as f:
        data = f.read()
    os.remove(scratch)
    return split_pickles(data, 5)


def write_legacy(path, pickles, rest):
    with open(path, "wb") as f:
        f.write(b"".join(pickles) + rest)
    return path


# ---------------------------------------------------------------------------------------------------
# The cases


def case_deep_tuple1(directory, stop=b"."):
    """1/2: EMPTY_TUPLE then 50,000 TUPLE1, ending in STOP (or in an unknown opcode)."""
    return one_tensor_zip(os.path.join(directory, "deep_tuple1.pth"), PROTO2 + b")" + b"\x85" * 50_000 + stop)


def case_deep_tuple1_bad_opcode(directory):
    return case_deep_tuple1(directory, stop=b"\xff")


def case_million_deep_list(directory):
    """3: a list nested a million deep."""
    return one_tensor_zip(os.path.join(directory, "deep_list.pth"), PROTO2 + deep_list(1_000_000) + b".")


def case_legacy_deep_keys(directory):
    """4: a legacy file whose storage-key list is a list nested 100,000 deep."""
    pickles, rest = legacy_parts(directory)
    pickles[4] = PROTO2 + deep_list(100_000) + b"."
    return write_legacy(os.path.join(directory, "legacy_deep_keys.pth"), pickles, rest)


def case_deep_rebuild_from_type(directory, depth=50_000):
    """5: _rebuild_from_type_v2 nested `depth` deep as an OrderedDict entry's value."""
    g = b"ctorch._tensor\n_rebuild_from_type_v2\n"
    nested = (b"(" + g + b"N") * depth + b"N" + b"Nt" * depth
    return one_tensor_zip(os.path.join(directory, "deep_rebuild.pth"), PROTO2 + ordered_dict({"w": g + nested + b"R"}) + b".")


def case_checkpoint_with_deep_list(directory):
    """6: a training checkpoint {"state_dict": OrderedDict(w=tensor), "x": list nested 2000 deep}."""
    pkl = PROTO2 + b"}(" + _unicode("state_dict") + valid_state_dict() + _unicode("x") + deep_list(2000) + b"u."
    return one_tensor_zip(os.path.join(directory, "checkpoint_deep.pth"), pkl)


def dag(levels=100):
    """None, then (x, x) `levels` times: 2**levels leaves, `levels` distinct values."""
    return b"N" + b"2\x86" * levels


def case_dag(directory):
    """7a: a 2**100-leaf DAG and nothing else."""
    return one_tensor_zip(os.path.join(directory, "dag.pth"), PROTO2 + dag() + b".")


def case_checkpoint_with_dag(directory):
    """7b: {"state_dict": {w: tensor}, "history": the DAG}."""
    pkl = PROTO2 + b"}(" + _unicode("state_dict") + b"}(" + _unicode("w") + tensor() + b"u" + _unicode("history") + dag() + b"u."
    return one_tensor_zip(os.path.join(directory, "checkpoint_dag.pth"), pkl)


def unknown_globals(count):
    return b"".join(b"cmod\nname%d\n)R0" % i for i in range(count))


def case_many_unknown_globals(directory):
    """8a: 100,000 distinct unknown globals called and popped, then an empty dict."""
    return one_tensor_zip(os.path.join(directory, "globals.pth"), PROTO2 + unknown_globals(100_000) + b"}.")


def case_unknown_globals_then_state_dict(directory, count=1000):
    """8b: 1,000 unknown globals, then a valid state dict."""
    return one_tensor_zip(os.path.join(directory, "globals_then_sd.pth"), PROTO2 + unknown_globals(count) + valid_state_dict() + b".")


def case_memoize_flood(directory):
    """9a: 20,000,000 MEMOIZE of None."""
    return one_tensor_zip(os.path.join(directory, "memoize.pth"), b"\x80\x04N" + b"\x94" * 20_000_000 + b".")


def case_mark_flood(directory):
    """9b: 100,000,000 MARKs, streamed into the zip in 10 MB chunks."""
    chunks = [b"(" * 10_000_000] * 10 + [b"."]
    return one_tensor_zip(os.path.join(directory, "marks.pth"), iter(chunks))


def case_stride0(directory, shape=(2**40,), name="stride0.pth"):
    """10: a stride-0 view of `shape` over a one-element storage."""
    pkl = PROTO2 + ordered_dict({"w": tensor(numel=1, shape=shape, stride=(0,) * len(shape))}) + b"."
    return one_tensor_zip(os.path.join(directory, name), pkl)


def case_stride0_2_26(directory):
    """10b: a ~600-byte file with a stride-0 view of 2**26 float32 over one element."""
    return case_stride0(directory, shape=(2**26,), name="stride0_small.pth")


def case_duplicate_storage(directory):
    """11: two archive/data/0 members with different bytes."""
    pkl = PROTO2 + valid_state_dict() + b"."
    return write_zip(os.path.join(directory, "dup.pth"), pkl,
                     [("0", np.array([VALUE], np.float32).tobytes()), ("0", np.array([-VALUE], np.float32).tobytes())])


def case_sharded_index(directory, injected="\u0000"):
    """12: a sharded folder whose index maps w to 'pytorch_model-00001-of-00001.bin<injected>.evil'."""
    shard = "pytorch_model-00001-of-00001.bin"
    torchsave.save({"w": np.array([VALUE], np.float32)}, os.path.join(directory, shard))
    index = os.path.join(directory, "pytorch_model.bin.index.json")
    with open(index, "w") as f:
        json.dump({"metadata": {"total_size": 4}, "weight_map": {"w": shard + injected + ".evil"}}, f)
    return index


def case_legacy_os_system(directory, marker, arrays=None):
    """13: a legacy file whose sys-info pickle calls os.system('touch MARKER') inside its dict."""
    assert "'" not in marker and "\n" not in marker
    pickles, rest = legacy_parts(directory, arrays)
    pickles[2] = (PROTO2 + b"}(" + _binstring("protocol_version") + b"M\xe9\x03" + _binstring("little_endian") + b"\x88"
                  + _binstring("x") + b"cos\nsystem\n(S'touch " + marker.encode() + b"'\ntR" + b"u.")
    return write_legacy(os.path.join(directory, "legacy_os_system.pth"), pickles, rest)


# ---------------------------------------------------------------------------------------------------
# The API test_hostile_torch_interop.py uses: each takes the file's path (or folder) and returns it.


def _dir(path):
    return os.path.dirname(str(path))


def _moved(made, path):
    os.replace(made, str(path))
    return str(path)


def deep_tuple_file(path, bad_opcode=False):
    """Cases 1 and 2."""
    return _moved(case_deep_tuple1(_dir(path), stop=b"\xff" if bad_opcode else b"."), path)


def million_deep_list_file(path):
    """Case 3."""
    return _moved(case_million_deep_list(_dir(path)), path)


def deep_legacy_keys_file(path):
    """Case 4."""
    return _moved(case_legacy_deep_keys(_dir(path)), path)


def rebuild_from_type_file(path, depth=50_000):
    """Case 5."""
    return _moved(case_deep_rebuild_from_type(_dir(path), depth), path)


def nest(kind, depth, inner):
    """`inner` wrapped `depth` deep: list-memoize (EMPTY_LIST MEMOIZE ... APPEND), list-marks (MARK ...
    LIST), dict (EMPTY_DICT key ... SETITEM) or tuple (TUPLE1)."""
    if kind == "list-memoize":
        return b"]\x94" * depth + inner + b"a" * depth
    if kind == "list-marks":
        return b"(" * depth + inner + b"l" * depth
    if kind == "dict":
        return (b"}" + _unicode("k")) * depth + inner + b"s" * depth
    if kind == "tuple":
        return inner + b"\x85" * depth
    raise ValueError(kind)


def deep_value_file(path, kind, depth, placement):
    """Case 6 and its variants: a `kind` nesting `depth` deep as a state dict's second entry (`entry`),
    beside the state dict of a training checkpoint (`checkpoint`), or around the state dict (`around`)."""
    deep = nest(kind, depth, b"N")
    if placement == "entry":
        pkl = ordered_dict({"w": tensor(), "x": deep})
    elif placement == "checkpoint":
        pkl = b"}(" + _unicode("state_dict") + valid_state_dict() + _unicode("x") + deep + b"u"
    elif placement == "around":
        pkl = nest(kind, depth, valid_state_dict())
    else:
        raise ValueError(placement)
    return one_tensor_zip(str(path), b"\x80\x04" + pkl + b".")


def dag_file(path):
    """Case 7a."""
    return _moved(case_dag(_dir(path)), path)


def _state_dict_fragment(arrays):
    return torchsave.state_dict_pickle(arrays)[2:-1]  # without PROTO and STOP


def _storages(arrays):
    return {str(i): np.ascontiguousarray(a).tobytes() for i, a in enumerate(arrays.values())}


def dag_checkpoint_file(path, arrays):
    """Case 7b: {"state_dict": `arrays`, "history": the DAG}."""
    pkl = PROTO2 + b"}(" + _unicode("state_dict") + _state_dict_fragment(arrays) + _unicode("history") + dag() + b"u."
    return write_zip(str(path), pkl, _storages(arrays))


def many_globals_file(path, arrays=None, count=100_000):
    """Case 8: `count` distinct unknown globals, then the state dict of `arrays` (or an empty dict)."""
    tail = _state_dict_fragment(arrays) if arrays else b"}"
    return write_zip(str(path), PROTO2 + unknown_globals(count) + tail + b".", _storages(arrays or {}))


def memoize_flood_file(path):
    """Case 9a."""
    return _moved(case_memoize_flood(_dir(path)), path)


def mark_flood_file(path):
    """Case 9b."""
    return _moved(case_mark_flood(_dir(path)), path)


def stride0_file(path, shape=(2**40,), stride=(0,), value=VALUE):
    """Case 10: a view of `shape`/`stride` over a one-element float32 storage holding `value`."""
    pkl = PROTO2 + ordered_dict({"w": tensor(numel=1, shape=shape, stride=stride)}) + b"."
    return write_zip(str(path), pkl, {"0": np.array([value], np.float32).tobytes()})


def shared_storage_file(path, views=64, elements=1 << 20, value=2.0):
    """`views` stride-0 views t0... of `elements` float32 each over one stored float; returns (path,
    decoded bytes)."""
    pkl = PROTO2 + ordered_dict({f"t{i}": tensor(numel=1, shape=(elements,), stride=(0,)) for i in range(views)}) + b"."
    write_zip(str(path), pkl, {"0": np.array([value], np.float32).tobytes()})
    return str(path), views * elements * 4


def duplicate_member_file(path, member="data/0"):
    """Case 11: `member` (data.pkl or data/0) twice in the zip, with different bytes."""
    if member == "data/0":
        return _moved(case_duplicate_storage(_dir(path)), path)
    pkl = PROTO2 + valid_state_dict() + b"."
    write_zip(str(path), pkl, {"0": np.array([VALUE], np.float32).tobytes()})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with zipfile.ZipFile(str(path), "a", zipfile.ZIP_STORED) as z:
            z.writestr("archive/data.pkl", PROTO2 + b"}.")
    return str(path)


def index_with_bad_shard_name(folder, bad):
    """Case 12: a folder with a valid shard and an index naming it with `bad` appended; returns the index."""
    os.makedirs(str(folder), exist_ok=True)
    return case_sharded_index(str(folder), injected=bad)


def legacy_with_inert_sys_info(path, marker):
    """Case 13, with w = arange(4)."""
    made = case_legacy_os_system(_dir(path), str(marker), arrays={"w": np.arange(4, dtype=np.float32)})
    return _moved(made, path)
