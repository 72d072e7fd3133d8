"""Read PyTorch checkpoints and TorchScript archives into numpy, without importing torch.

Three on-disk formats are understood (facts from ``torch/serialization.py`` and TorchScript's
archive layout):

* the zip format of ``torch.save`` (torch >= 1.6): ``<prefix>/data.pkl`` is a pickle whose
  persistent ids ``('storage', storage_type, key, location, numel)`` name raw little-endian
  storages stored as ``<prefix>/data/<key>`` (an optional ``<prefix>/byteorder`` says ``big``);
* TorchScript archives (``torch.jit.save``): the same zip layout, where the pickle holds
  ``__torch__.*`` module objects (their attributes as a dict) and the ``code/`` folder holds the
  TorchScript source; those objects come back as :class:`ScriptObject`;
* the legacy format (torch < 1.6): pickles in sequence (magic number, protocol, system info,
  the object, the storage keys), then each storage as an int64 element count and its bytes.

The unpickler is restricted: it resolves only the names it knows (tensor and parameter
rebuilders, storage types, dtypes, ``OrderedDict``, ``argparse.Namespace`` as a plain attribute
holder, numpy arrays and scalars, TorchScript list builders) and refuses every other global,
so a checkpoint cannot run code. Tensors come back as contiguous, writeable numpy arrays
honouring sizes, strides and storage offsets; tensors that shared a storage come back as separate
copies.
"""

from __future__ import annotations

import codecs
import collections
import dataclasses
import functools
import io
import os
import pickle
import struct
import zipfile
from collections.abc import Callable
from typing import IO, Any

import numpy as np

PathOrFile = str | os.PathLike | IO[bytes]

LEGACY_MAGIC_NUMBER = 0x1950A86A20F9469CFC6C
LEGACY_PROTOCOL_VERSION = 1001


def _bfloat16() -> np.dtype:
    import ml_dtypes  # a dependency of jax; only needed for bfloat16 tensors

    return np.dtype(ml_dtypes.bfloat16)


# torch dtype name -> numpy dtype (callables for the ones numpy lacks).
_DTYPES: dict[str, Any] = {
    "float64": np.float64,
    "double": np.float64,
    "float32": np.float32,
    "float": np.float32,
    "float16": np.float16,
    "half": np.float16,
    "bfloat16": _bfloat16,
    "int64": np.int64,
    "long": np.int64,
    "int32": np.int32,
    "int": np.int32,
    "int16": np.int16,
    "short": np.int16,
    "int8": np.int8,
    "uint8": np.uint8,
    "uint16": np.uint16,
    "uint32": np.uint32,
    "uint64": np.uint64,
    "bool": np.bool_,
    "complex64": np.complex64,
    "cfloat": np.complex64,
    "complex128": np.complex128,
    "cdouble": np.complex128,
}

# Legacy typed storage class name -> torch dtype name.
_STORAGE_TYPES = {
    "DoubleStorage": "float64",
    "FloatStorage": "float32",
    "HalfStorage": "float16",
    "BFloat16Storage": "bfloat16",
    "LongStorage": "int64",
    "IntStorage": "int32",
    "ShortStorage": "int16",
    "CharStorage": "int8",
    "ByteStorage": "uint8",
    "BoolStorage": "bool",
    "ComplexFloatStorage": "complex64",
    "ComplexDoubleStorage": "complex128",
    "UntypedStorage": "uint8",
}


def numpy_dtype(torch_name: str) -> np.dtype:
    """numpy dtype of a torch dtype name (``'float32'``, ``'bfloat16'``, ``'long'`` ...)."""
    try:
        d = _DTYPES[torch_name]
    except KeyError:
        raise pickle.UnpicklingError(f"unsupported torch dtype torch.{torch_name}") from None
    return d() if callable(d) and not isinstance(d, type) else np.dtype(d)


# ----------------------------------------------------------------------------------------------
# Stand-ins for the torch objects that a pickle names.


@dataclasses.dataclass(frozen=True)
class TorchDType:
    """``torch.<name>`` as a pickle names it (e.g. an argument of ``_rebuild_tensor_v3``)."""

    name: str

    @property
    def numpy(self) -> np.dtype:
        return numpy_dtype(self.name)


@dataclasses.dataclass(frozen=True)
class StorageType:
    """A storage class (``torch.FloatStorage``, ``torch.UntypedStorage`` ...)."""

    name: str

    @property
    def dtype(self) -> np.dtype:
        return numpy_dtype(_STORAGE_TYPES[self.name])


@dataclasses.dataclass(frozen=True)
class TensorType:
    """``torch.Tensor`` / ``torch.nn.Parameter`` as named by ``_rebuild_from_type_v2``."""

    name: str


@dataclasses.dataclass
class Storage:
    """A flat storage: its raw bytes and the dtype it was saved with."""

    data: np.ndarray | None  # uint8, shape (nbytes,); None while a legacy file is scanned
    dtype: np.dtype

    def typed(self, dtype: np.dtype | None = None) -> np.ndarray:
        d = np.dtype(dtype if dtype is not None else self.dtype)
        usable = (self.data.size // d.itemsize) * d.itemsize
        return self.data[:usable].view(d)


class ScriptObject:
    """An object of a TorchScript class (``__torch__.<module> <Class>``): its attributes.

    ``qualname`` names the TorchScript class (e.g. ``__torch__.inceptionv3.Conv2dLayer``);
    attributes are set from the pickled state (submodules, parameters as numpy arrays, ints).
    """

    qualname = "__torch__.?"

    def __setstate__(self, state: Any) -> None:
        if isinstance(state, dict):
            self.__dict__.update(state)
        else:  # a class with a custom __getstate__: keep what it saved
            self.__dict__["_state"] = state

    def __repr__(self) -> str:
        return f"<ScriptObject {self.qualname}: {', '.join(self.__dict__)}>"


class Namespace:
    """``argparse.Namespace`` as a training script stores its arguments in a checkpoint (LSGM's
    ``args``, DDGAN's ``content.pth``): a plain attribute holder. Only its attribute dict is
    restored (string keys; the values are whatever else the restricted reader accepts), so no
    code runs."""

    def __setstate__(self, state: Any) -> None:
        if not isinstance(state, dict) or not all(isinstance(k, str) for k in state):
            raise pickle.UnpicklingError("argparse.Namespace state is not a dict of names")
        self.__dict__.update(state)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Namespace) and vars(self) == vars(other)

    def __repr__(self) -> str:
        return "Namespace(" + ", ".join(f"{k}={v!r}" for k, v in vars(self).items()) + ")"


@functools.cache
def script_class(qualname: str) -> type:
    """One subclass of :class:`ScriptObject` per TorchScript class name (cached)."""
    return type(qualname.rsplit(".", 1)[-1], (ScriptObject,), {"qualname": qualname})


# ----------------------------------------------------------------------------------------------
# Tensor rebuilders (the functions ``torch._utils`` names in a pickle).


def _as_tensor(
    storage: Storage,
    offset: int,
    size: tuple[int, ...],
    stride: tuple[int, ...],
    dtype: np.dtype | None = None,
) -> np.ndarray:
    """A contiguous copy of the strided view ``(offset, size, stride)`` of a storage."""
    if storage.data is None:
        return None
    flat = storage.typed(dtype)
    size, stride = tuple(int(s) for s in size), tuple(int(s) for s in stride)
    if len(size) != len(stride):
        raise pickle.UnpicklingError(f"tensor size {size} and stride {stride} differ in rank")
    if any(s == 0 for s in size):
        return np.zeros(size, flat.dtype)
    if offset < 0 or any(st < 0 for st in stride):
        raise pickle.UnpicklingError("negative tensor offset or stride")
    last = offset + sum((n - 1) * st for n, st in zip(size, stride, strict=True))
    if last >= flat.size:
        raise pickle.UnpicklingError(
            f"tensor (offset {offset}, size {size}, stride {stride}) runs past its storage "
            f"of {flat.size} elements"
        )
    item = flat.dtype.itemsize
    view = np.lib.stride_tricks.as_strided(
        flat[offset:], shape=size, strides=[st * item for st in stride], writeable=False
    )
    return np.array(view, order="C")


def _rebuild_tensor(storage, storage_offset, size, stride):
    return _as_tensor(storage, storage_offset, size, stride)


def _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad, hooks, meta=None):
    return _as_tensor(storage, storage_offset, size, stride)


def _rebuild_tensor_v3(
    storage, storage_offset, size, stride, requires_grad, hooks, dtype, meta=None
):
    return _as_tensor(storage, storage_offset, size, stride, dtype.numpy)


def _rebuild_parameter(data, requires_grad, hooks):
    return data


def _rebuild_parameter_with_state(data, requires_grad, hooks, state):
    return data


def _rebuild_from_type_v2(func, new_type, args, state):
    if not isinstance(new_type, TensorType):
        raise pickle.UnpicklingError(f"cannot rebuild a tensor of type {new_type!r}")
    return func(*args)


def _restore_type_tag(value, type_str):
    return value


_TORCH_NAMES: dict[tuple[str, str], Any] = {
    ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor_v2,
    ("torch._utils", "_rebuild_tensor_v3"): _rebuild_tensor_v3,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter_with_state,
    ("torch._utils", "_rebuild_from_type_v2"): _rebuild_from_type_v2,
    ("torch", "Tensor"): TensorType("Tensor"),
    ("torch.nn.parameter", "Parameter"): TensorType("Parameter"),
    ("torch", "Size"): tuple,
    ("torch", "device"): str,
    ("torch.jit._pickle", "build_intlist"): list,
    ("torch.jit._pickle", "build_doublelist"): list,
    ("torch.jit._pickle", "build_boollist"): list,
    ("torch.jit._pickle", "build_tensorlist"): list,
    ("torch.jit._pickle", "restore_type_tag"): _restore_type_tag,
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("argparse", "Namespace"): Namespace,
    ("builtins", "set"): set,
    ("builtins", "frozenset"): frozenset,
    ("builtins", "slice"): slice,
    ("builtins", "complex"): complex,
    ("builtins", "bytearray"): bytearray,
    ("_codecs", "encode"): codecs.encode,  # how protocol-2 pickles store bytes
}


def _numpy_name(module: str, name: str) -> Any:
    """The numpy names a pickled ndarray / scalar / dtype uses, and nothing else."""
    allowed = {
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "scalar"),
    }
    if (module, name) not in allowed:
        return None
    if name == "ndarray":
        return np.ndarray
    if name == "dtype":
        return np.dtype
    from numpy._core import multiarray

    return getattr(multiarray, name)


class TorchUnpickler(pickle.Unpickler):
    """A pickle reader that maps torch's names to numpy and refuses every other global.

    Args:
      file: the pickle stream.
      load_storage: ``(key, dtype, numel) -> Storage`` for each persistent storage id.
    """

    def __init__(self, file: IO[bytes], load_storage: Callable[[str, np.dtype, int], Storage]):
        super().__init__(file, encoding="utf-8")
        self._load_storage = load_storage

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _TORCH_NAMES:
            return _TORCH_NAMES[(module, name)]
        if module in ("torch", "torch.storage") and name in _STORAGE_TYPES:
            return StorageType(name)
        if module == "torch" and name in _DTYPES:
            return TorchDType(name)
        if module.startswith("__torch__"):
            return script_class(f"{module}.{name}")
        found = _numpy_name(module, name)
        if found is not None:
            return found
        raise pickle.UnpicklingError(
            f"refusing to load global {module}.{name}: not a tensor, storage or plain container "
            "(jaxdiff.io.torch_zip reads state dicts and TorchScript archives, not pickled code)"
        )

    def persistent_load(self, pid: Any) -> Any:
        if not (isinstance(pid, tuple) and pid and pid[0] in ("storage", b"storage")):
            raise pickle.UnpicklingError(f"unknown persistent id {pid!r}")
        storage_type, key, _location, numel = pid[1:5]
        view = pid[5] if len(pid) > 5 else None
        if not isinstance(storage_type, StorageType):
            raise pickle.UnpicklingError(f"unknown storage type {storage_type!r}")
        dtype = storage_type.dtype
        storage = self._load_storage(str(key), dtype, int(numel))
        if view is not None and storage.data is not None:
            # legacy storage views: (view_key, offset, size) in elements
            _view_key, offset, size = view
            item = dtype.itemsize
            storage = Storage(storage.data[offset * item : (offset + size) * item], dtype)
        return storage


# ----------------------------------------------------------------------------------------------
# Archives


def _read_zip(zf: zipfile.ZipFile, pickle_name: str) -> Any:
    names = zf.namelist()
    matches = [n for n in names if n == pickle_name or n.endswith("/" + pickle_name)]
    if not matches:
        raise ValueError(f"no {pickle_name} in the archive (entries: {names[:5]}...)")
    pkl = min(matches, key=len)
    prefix = pkl[: -len(pickle_name)]  # e.g. 'archive/' or 'out_jit_module/'
    storage_dir = prefix + pickle_name.rsplit(".", 1)[0] + "/"
    big_endian = False
    if prefix + "byteorder" in names:
        big_endian = zf.read(prefix + "byteorder").decode().strip() == "big"
    cache: dict[str, Storage] = {}

    def load_storage(key: str, dtype: np.dtype, numel: int) -> Storage:
        if key not in cache:
            raw = np.frombuffer(zf.read(storage_dir + key), np.uint8)
            if big_endian and dtype.itemsize > 1:
                swapped = raw.view(dtype.newbyteorder(">")).astype(dtype)
                raw = swapped.view(np.uint8)
            if raw.size < numel * dtype.itemsize:
                raise pickle.UnpicklingError(f"storage {key} is shorter than its {numel} elements")
            cache[key] = Storage(raw, dtype)
        return cache[key]

    return TorchUnpickler(io.BytesIO(zf.read(pkl)), load_storage).load()


def _plain_load(f: IO[bytes]) -> Any:
    return TorchUnpickler(f, _no_storage).load()


def _no_storage(key: str, dtype: np.dtype, numel: int) -> Storage:
    raise pickle.UnpicklingError("storage outside the object pickle")


def _read_legacy(f: IO[bytes]) -> Any:
    """torch < 1.6 format: read the object pickle once for its storages, then for real."""
    if _plain_load(f) != LEGACY_MAGIC_NUMBER:
        raise ValueError("not a PyTorch checkpoint (neither a zip archive nor the legacy format)")
    if _plain_load(f) != LEGACY_PROTOCOL_VERSION:
        raise ValueError("unsupported legacy PyTorch protocol version")
    _plain_load(f)  # system info
    start = f.tell()
    found: dict[str, np.dtype] = {}

    def record(key: str, dtype: np.dtype, numel: int) -> Storage:
        found.setdefault(key, dtype)
        return Storage(None, dtype)

    TorchUnpickler(f, record).load()
    storages: dict[str, Storage] = {}
    for key in _plain_load(f):
        dtype = found[str(key)]
        (numel,) = struct.unpack("<q", f.read(8))
        raw = np.frombuffer(f.read(numel * dtype.itemsize), np.uint8)
        if raw.size != numel * dtype.itemsize:
            raise ValueError(f"legacy checkpoint truncated in storage {key}")
        storages[str(key)] = Storage(raw, dtype)
    f.seek(start)
    return TorchUnpickler(f, lambda key, dtype, numel: storages[key]).load()


def load(path: PathOrFile, pickle_name: str = "data.pkl") -> Any:
    """Reads a ``torch.save`` checkpoint or a TorchScript archive; tensors become numpy arrays.

    Args:
      path: a file name or a binary file object (seekable).
      pickle_name: which pickle of a zip archive to read (``data.pkl``; ``constants.pkl`` holds
        a TorchScript archive's tensor constants).

    Returns:
      The pickled object: dicts / OrderedDicts / lists as saved, tensors as numpy arrays,
      TorchScript modules as :class:`ScriptObject`.
    """
    if isinstance(path, str | os.PathLike):
        with open(path, "rb") as f:
            return load(f, pickle_name)
    if zipfile.is_zipfile(path):
        path.seek(0)
        with zipfile.ZipFile(path) as zf:
            return _read_zip(zf, pickle_name)
    path.seek(0)
    return _read_legacy(path)


def flatten_arrays(obj: Any, prefix: str = "") -> dict[str, np.ndarray]:
    """All arrays in a loaded object, keyed by dotted paths (as ``state_dict()`` names them).

    Walks dicts (str keys), lists/tuples (indices) and :class:`ScriptObject` attributes, so a
    TorchScript module yields ``layers.conv.weight``-style names.
    """
    out: dict[str, np.ndarray] = {}
    if isinstance(obj, np.ndarray):
        out[prefix.rstrip(".")] = obj
    elif isinstance(obj, dict):
        for k, v in obj.items():
            out.update(flatten_arrays(v, f"{prefix}{k}."))
    elif isinstance(obj, list | tuple):
        for i, v in enumerate(obj):
            out.update(flatten_arrays(v, f"{prefix}{i}."))
    elif isinstance(obj, ScriptObject):
        for k, v in vars(obj).items():
            out.update(flatten_arrays(v, f"{prefix}{k}."))
    return out


def load_arrays(path: PathOrFile) -> dict[str, np.ndarray]:
    """``flatten_arrays(load(path))``: a state dict / TorchScript module as ``{name: array}``."""
    return flatten_arrays(load(path))
