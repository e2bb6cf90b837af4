"""The tensors of a PyTorch checkpoint (``torch.save`` of a state dict), read without PyTorch.

Both of PyTorch's formats are read:

- the zip archive (``torch.save`` since PyTorch 1.6): ``<name>/data.pkl`` pickles the
  state dict, each tensor a ``torch._utils._rebuild_tensor_v2(storage, offset, size,
  stride, ...)`` call whose storage is a persistent id ``("storage", storage type, key,
  location, numel)`` naming the archive member ``<name>/data/<key>`` (raw little-endian
  values);
- the legacy stream (``_use_new_zipfile_serialization=False`` and PyTorch before 1.6):
  pickles one after the other: a magic number, the protocol version, system information,
  the state dict (storages as persistent ids ``("storage", type, key, location, numel,
  view)``), the list of storage keys, then each storage in that order as an int64 element
  count followed by its raw values.

The unpickler resolves only the names a state dict needs (``collections.OrderedDict``,
the tensor rebuild functions, the storage types); anything else in the file is refused
with :class:`~pyfaceau.errors.ModelFileError`, so reading a file never runs its code.
"""

from __future__ import annotations

import io
import os
import pickle
import struct
import zipfile
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ModelFileError

__all__ = ["read_torch_state_dict"]

#: PyTorch's legacy-format magic number and protocol version (``torch/serialization.py``).
_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
_LEGACY_PROTOCOL = 1001

#: Storage type names and their little-endian dtypes.
_STORAGE_DTYPES = {
    "FloatStorage": "<f4",
    "DoubleStorage": "<f8",
    "HalfStorage": "<f2",
    "LongStorage": "<i8",
    "IntStorage": "<i4",
    "ShortStorage": "<i2",
    "CharStorage": "i1",
    "ByteStorage": "u1",
    "BoolStorage": "?",
}


class _StorageType:
    def __init__(self, name: str) -> None:
        self.dtype = np.dtype(_STORAGE_DTYPES[name])


class _Storage:
    """A storage named in the pickle; its values are filled in once known."""

    def __init__(self, dtype: np.dtype, numel: int) -> None:
        self.dtype = dtype
        self.numel = int(numel)
        self.values: np.ndarray | None = None


class _Tensor:
    def __init__(self, storage: _Storage, offset: int, size: tuple, stride: tuple) -> None:
        self.storage, self.offset, self.size, self.stride = storage, int(offset), size, stride

    def array(self) -> np.ndarray:
        values = self.storage.values
        if values is None:
            raise ModelFileError("checkpoint: a tensor's storage has no data")
        size = tuple(int(s) for s in self.size)
        if not size:
            return values[self.offset : self.offset + 1].reshape(()).copy()
        item = values.dtype.itemsize
        strides = tuple(int(s) * item for s in self.stride)
        last = self.offset + sum((n - 1) * int(s) for n, s in zip(size, self.stride))
        if self.offset < 0 or last >= len(values) or min(size) < 0:
            raise ModelFileError("checkpoint: a tensor lies outside its storage")
        view = np.lib.stride_tricks.as_strided(values[self.offset :], size, strides)
        return np.ascontiguousarray(view)


def _rebuild_tensor(storage, storage_offset, size, stride, *_ignored) -> _Tensor:  # noqa: ANN001
    return _Tensor(storage, storage_offset, size, stride)


def _rebuild_parameter(data, *_ignored):  # noqa: ANN001, ANN202 - a Parameter is its tensor
    return data


_ALLOWED = {
    ("collections", "OrderedDict"): OrderedDict,
    ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
}


class _Unpickler(pickle.Unpickler):
    def __init__(self, file: Any, storage_of: Any) -> None:
        super().__init__(file)
        self._storage_of = storage_of

    def find_class(self, module: str, name: str) -> Any:
        if module == "torch" and name in _STORAGE_DTYPES:
            return _StorageType(name)
        found = _ALLOWED.get((module, name))
        if found is None:
            raise ModelFileError(f"checkpoint: unexpected object {module}.{name}; not a state dict")
        return found

    def persistent_load(self, pid: Any) -> Any:
        if not isinstance(pid, tuple) or not pid or pid[0] not in ("storage", b"storage"):
            raise ModelFileError(f"checkpoint: unexpected persistent id {pid!r}")
        return self._storage_of(pid[1:])


def _state_dict(obj: Any) -> dict[str, np.ndarray]:
    if isinstance(obj, dict) and "state_dict" in obj and isinstance(obj["state_dict"], dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict):
        raise ModelFileError(f"checkpoint: holds a {type(obj).__name__}, not a state dict")
    out: dict[str, np.ndarray] = {}
    for key, value in obj.items():
        if isinstance(value, _Tensor):
            out[str(key)] = value.array()
    if not out:
        raise ModelFileError("checkpoint: no tensors")
    return out


def _storage_lookup(path: Path, storages: dict[str, _Storage]):  # noqa: ANN202
    """The persistent-id resolver of one file: ``(type, key, location, numel[, view])`` ->
    the storage of that key, made on first sight (both formats; views are refused)."""

    def storage_of(fields: tuple) -> _Storage:
        storage_type, key, _location, numel = fields[:4]
        if len(fields) > 4 and fields[4] is not None:
            raise ModelFileError(f"{path}: storage views are not supported")
        key = key.decode() if isinstance(key, bytes) else str(key)
        if key not in storages:
            if not isinstance(storage_type, _StorageType):
                raise ModelFileError(f"{path}: unsupported storage type {storage_type!r}")
            storages[key] = _Storage(storage_type.dtype, numel)
        return storages[key]

    return storage_of


def _read_zip(path: Path) -> dict[str, np.ndarray]:
    with zipfile.ZipFile(path) as archive:
        names = archive.namelist()
        pkl = [n for n in names if n.endswith("/data.pkl") or n == "data.pkl"]
        if len(pkl) != 1:
            raise ModelFileError(f"{path}: not a PyTorch checkpoint (no single data.pkl)")
        prefix = pkl[0][: -len("data.pkl")]
        storages: dict[str, _Storage] = {}
        storage_of = _storage_lookup(path, storages)
        with archive.open(pkl[0]) as f:
            obj = _Unpickler(io.BytesIO(f.read()), storage_of).load()
        for key, storage in storages.items():
            member = f"{prefix}data/{key}"
            if member not in names:
                raise ModelFileError(f"{path}: storage {key} is missing")
            raw = archive.read(member)
            values = np.frombuffer(raw, dtype=storage.dtype)
            if len(values) < storage.numel:
                raise ModelFileError(f"{path}: storage {key} is truncated")
            storage.values = values[: storage.numel]
    return _state_dict(obj)


def _read_legacy(path: Path) -> dict[str, np.ndarray]:
    storages: dict[str, _Storage] = {}
    storage_of = _storage_lookup(path, storages)
    with open(path, "rb") as f:
        plain = _Unpickler(f, storage_of)
        try:
            magic = plain.load()
        except Exception as exc:  # noqa: BLE001 - any unreadable start: not this format
            raise ModelFileError(f"{path}: not a PyTorch checkpoint") from exc
        if magic != _LEGACY_MAGIC:
            raise ModelFileError(f"{path}: not a PyTorch checkpoint")
        if _Unpickler(f, storage_of).load() != _LEGACY_PROTOCOL:
            raise ModelFileError(f"{path}: unsupported PyTorch checkpoint protocol")
        _Unpickler(f, storage_of).load()  # system information
        obj = _Unpickler(f, storage_of).load()
        keys = _Unpickler(f, storage_of).load()
        for key in keys:
            key = key.decode() if isinstance(key, bytes) else str(key)
            storage = storages.get(key)
            if storage is None:
                raise ModelFileError(f"{path}: storage {key} is not used by any tensor")
            head = f.read(8)
            if len(head) != 8:
                raise ModelFileError(f"{path}: truncated")
            (count,) = struct.unpack("<q", head)
            raw = f.read(count * storage.dtype.itemsize)
            if count < storage.numel or len(raw) != count * storage.dtype.itemsize:
                raise ModelFileError(f"{path}: storage {key} is truncated")
            storage.values = np.frombuffer(raw, dtype=storage.dtype)
    return _state_dict(obj)


def read_torch_state_dict(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """The tensors of a PyTorch checkpoint holding a state dict, by key.

    Parameters
    ----------
    path : a ``.pth`` / ``.pt`` file written by ``torch.save`` (zip or legacy format; a
        dict with a ``"state_dict"`` entry is also accepted).

    Returns
    -------
    dict of C-contiguous NumPy arrays, in the file's order, with their stored dtypes.

    Raises
    ------
    ModelFileError
        The file is not such a checkpoint, is damaged, or holds other objects.
    """
    p = Path(path)
    if not p.is_file():
        raise ModelFileError(f"{p}: no such file")
    try:
        if zipfile.is_zipfile(p):
            return _read_zip(p)
        return _read_legacy(p)
    except ModelFileError:
        raise
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, KeyError,
            zipfile.BadZipFile, struct.error) as exc:
        raise ModelFileError(f"{p}: unreadable PyTorch checkpoint ({exc})") from exc
