"""The binary model cache: OpenFace's model files parsed once, loaded in milliseconds.

OpenFace's model files are text or small-record binary files whose parsing costs most of
pyfaceau's start-up. :func:`cached` stores what a loader built from them (dataclasses of
NumPy arrays) in one binary file per model in the user cache folder, and later runs load
that file instead.

An entry is used only when its key matches. The key is the SHA-256 of:

- the SHA-256 of every source model file (see :func:`file_sha256`),
- the SHA-256 of the source code of the modules that parse and build the object (a
  changed parser or class layout is a different key),
- the entry format version and the loader's extra arguments.

An entry whose key differs, or that is truncated or corrupt (its length or CRC-32 does not
match), is ignored and rebuilt. Entries never hold pickles: only a JSON description of the
object tree (dataclasses of this package, tuples, lists, dicts, numbers, strings, paths)
and the raw bytes of its arrays, so loading an entry cannot run code.

Where: ``$PYFACEAU_CACHE_DIR`` if set (an empty value turns the cache off), else
``platformdirs.user_cache_dir("pyfaceau")``. A cache folder that cannot be written is
not an error: the models are then parsed every time (logged at INFO level).

File hashes are remembered too (``hashes.json``): (path, size, mtime_ns, ctime_ns, inode,
device) -> SHA-256, so an unchanged model file is not re-hashed on every start. A file
whose status changed is hashed again; a file changed within the last
:data:`RACY_SECONDS` is hashed but not remembered (its timestamps may not yet show a
later write, as git's "racy" index entries).
"""

from __future__ import annotations

import dataclasses
import enum
import functools
import hashlib
import json
import logging
import os
import struct
import sys
import tempfile
import threading
import time
import zlib
from pathlib import Path, PurePath
from typing import Any, Callable, Iterable, Sequence, TypeVar

import numpy as np

__all__ = [
    "ENV_CACHE_DIR",
    "Entry",
    "FORMAT_VERSION",
    "cache_dir",
    "cached",
    "cached_parser",
    "file_sha256",
    "file_stamp",
]

log = logging.getLogger(__name__)

T = TypeVar("T")

#: Environment variable overriding the cache folder (empty: no cache).
ENV_CACHE_DIR = "PYFACEAU_CACHE_DIR"
#: Version of the entry layout; part of every key.
FORMAT_VERSION = 1
#: Files modified less than this many seconds ago are hashed but their hash is not kept.
RACY_SECONDS = 2.0

_MAGIC = b"PYFACEAU-CACHE\x00\x01"
_HEADER = struct.Struct("<16sQQI")  # magic, json length, payload length, payload crc32
_ALIGN = 64  # array offsets (and the payload start) are multiples of this
_HASHES_FILE = "hashes.json"

_lock = threading.Lock()
_hash_memo: dict[str, list] | None = None  # realpath -> [size, mtime, ctime, ino, dev, sha]
_hash_memo_dir: Path | None = None
_warned_unwritable = False


# ------------------------------------------------------------------------------------
# Where
# ------------------------------------------------------------------------------------
def cache_dir() -> Path | None:
    """The cache folder, or None when the cache is off (``PYFACEAU_CACHE_DIR=""``)."""
    value = os.environ.get(ENV_CACHE_DIR)
    if value is None:
        return _user_cache_dir(*(os.environ.get(v) for v in _USER_CACHE_DIR_VARIABLES))
    return Path(value) if value else None


#: The environment variables platformdirs' user cache folder follows (Linux: the first
#: two; Windows: the last two; macOS: HOME).
_USER_CACHE_DIR_VARIABLES = ("XDG_CACHE_HOME", "HOME", "LOCALAPPDATA",
                             "WIN_PD_OVERRIDE_LOCAL_APPDATA")


@functools.lru_cache(maxsize=4)
def _user_cache_dir(*variables: str | None) -> Path:
    # Asked once per value of those variables, not for every cache entry.
    import platformdirs

    return Path(platformdirs.user_cache_dir("pyfaceau", appauthor=False))


def _atomic_write(path: Path, data: bytes | Iterable[bytes]) -> bool:
    """Write ``data`` to ``path`` through a unique temporary file and a rename; False
    (and one INFO log line per process) when the folder cannot be written."""
    global _warned_unwritable
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
        try:
            with os.fdopen(fd, "wb") as f:
                for chunk in [data] if isinstance(data, bytes) else data:
                    f.write(chunk)
            os.replace(tmp, path)
        except BaseException:
            try:
                os.unlink(tmp)
            except OSError:
                pass
            raise
    except OSError as exc:
        if not _warned_unwritable:
            log.info("model cache %s cannot be written (%s); models are parsed each run",
                     path.parent, exc.strerror or exc)
            _warned_unwritable = True
        return False
    return True


# ------------------------------------------------------------------------------------
# File hashes, remembered by file status
# ------------------------------------------------------------------------------------
def _sha256_of(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _read_memo_file(folder: Path) -> dict[str, list]:
    try:
        data = json.loads((folder / _HASHES_FILE).read_text())
        if isinstance(data, dict) and data.get("version") == FORMAT_VERSION:
            return {k: v for k, v in data.get("files", {}).items()
                    if isinstance(v, list) and len(v) == 6}
    except (OSError, ValueError):
        pass  # absent or damaged: start again
    return {}


def _load_hash_memo(folder: Path | None) -> dict[str, list]:
    global _hash_memo, _hash_memo_dir
    if _hash_memo is None or _hash_memo_dir != folder:
        _hash_memo = _read_memo_file(folder) if folder is not None else {}
        _hash_memo_dir = folder
    return _hash_memo


def file_stamp(st: os.stat_result) -> list[int]:
    """What identifies a file's content without reading it: size, mtime, ctime, inode,
    device."""
    return [st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino, st.st_dev]


def _changed_just_now(st: os.stat_result) -> bool:
    """True when the file changed within :data:`RACY_SECONDS`: a change in the same
    timestamp tick could leave its stamp as it is, so its hash is not remembered."""
    return time.time() - max(st.st_mtime_ns, st.st_ctime_ns) / 1e9 < RACY_SECONDS


def file_sha256(path: str | os.PathLike) -> str:
    """SHA-256 (hex) of a file, re-hashed only when the file's status changed.

    Parameters
    ----------
    path : the file.

    Returns
    -------
    str, 64 hex digits.

    Notes
    -----
    The hash is remembered per process and, when the cache is on, in the cache folder,
    keyed by the real path and ``(size, mtime_ns, ctime_ns, inode, device)``. Writing to a
    file changes its ctime (which programs cannot set back), so a changed file is hashed
    again; what this trusts is the file system's status, not a new read of the bytes.
    """
    real = os.path.realpath(path)
    st = os.stat(real)
    stamp = file_stamp(st)
    folder = cache_dir()
    with _lock:
        memo = _load_hash_memo(folder)
        known = memo.get(real)
        if known is not None and known[:5] == stamp:
            return known[5]
    digest = _sha256_of(real)
    if _changed_just_now(st):
        return digest
    with _lock:
        memo = _load_hash_memo(folder)
        memo[real] = stamp + [digest]
        if folder is not None:
            # Keep what other processes remembered since we read the file; forget files
            # that are gone.
            merged = {k: v for k, v in _read_memo_file(folder).items() if os.path.exists(k)}
            merged.update(memo)
            memo.clear()
            memo.update(merged)
            payload = json.dumps({"version": FORMAT_VERSION, "files": merged}).encode()
            _atomic_write(folder / _HASHES_FILE, payload)
    return digest


def _reset_for_tests() -> None:
    """Forget the in-process hash memo (tests change the cache folder)."""
    global _hash_memo, _hash_memo_dir, _warned_unwritable
    with _lock:
        _hash_memo, _hash_memo_dir, _warned_unwritable = None, None, False
        _module_hashes.clear()
        _user_cache_dir.cache_clear()


# ------------------------------------------------------------------------------------
# Serialisation: a JSON tree plus raw array bytes (no pickle)
# ------------------------------------------------------------------------------------
class _NotCacheable(Exception):
    """The object holds something the entry format does not store."""


_PACKAGE = __name__.split(".")[0]


class _Encoder:
    def __init__(self, subst: dict[PurePath, str]) -> None:
        self.arrays: list[np.ndarray] = []
        self.specs: list[list] = []
        self.offset = 0
        self.subst = subst

    def array(self, a: np.ndarray) -> dict:
        if a.dtype.hasobject or a.dtype.fields is not None:
            raise _NotCacheable(f"array of dtype {a.dtype}")
        if a.flags.c_contiguous:
            order, data = "C", a
        elif a.flags.f_contiguous:
            order, data = "F", a.T  # the transpose of an F array is C-contiguous
        else:
            raise _NotCacheable("non-contiguous array")
        self.offset = -(-self.offset // _ALIGN) * _ALIGN
        self.specs.append(
            [a.dtype.str, list(a.shape), order, self.offset, a.nbytes, bool(a.flags.writeable)]
        )
        self.arrays.append(np.ascontiguousarray(data))
        self.offset += a.nbytes
        return {"$a": len(self.specs) - 1}

    def encode(self, obj: Any) -> Any:
        if obj is None or isinstance(obj, (bool, str)):
            return obj
        if isinstance(obj, enum.Enum):
            return {"$e": self._class_name(type(obj)), "v": self.encode(obj.value)}
        if isinstance(obj, int):
            return obj
        if isinstance(obj, float):
            return {"$f": obj.hex()}  # exact, and NaN/inf safe
        if isinstance(obj, np.ndarray):
            return self.array(obj)
        if isinstance(obj, np.generic):
            return {"$s": self.array(np.asarray(obj))["$a"]}
        if isinstance(obj, PurePath):
            if obj in self.subst:
                return {"$p": self.subst[obj]}
            raise _NotCacheable(f"path {obj} is not a source file")
        if isinstance(obj, tuple):
            return {"$t": [self.encode(v) for v in obj]}
        if isinstance(obj, list):
            return [self.encode(v) for v in obj]
        if isinstance(obj, dict):
            return {"$d": [[self.encode(k), self.encode(v)] for k, v in obj.items()]}
        if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
            return {
                "$c": self._class_name(type(obj)),
                "f": {f.name: self.encode(getattr(obj, f.name)) for f in dataclasses.fields(obj)},
            }
        raise _NotCacheable(f"value of type {type(obj).__name__}")

    @staticmethod
    def _class_name(cls: type) -> str:
        if not cls.__module__.startswith(_PACKAGE + "."):
            raise _NotCacheable(f"class {cls.__module__}.{cls.__qualname__}")
        return f"{cls.__module__}:{cls.__qualname__}"


class _Decoder:
    def __init__(self, buf: np.ndarray, specs: list, paths: dict[str, Path]) -> None:
        self.buf = buf
        self.specs = specs
        self.paths = paths
        self.classes: dict[str, type] = {}

    def array(self, i: int) -> np.ndarray:
        dtype, shape, order, offset, nbytes, writeable = self.specs[i]
        flat = self.buf[offset : offset + nbytes].view(np.dtype(dtype))
        a = flat.reshape(shape[::-1]).T if order == "F" else flat.reshape(shape)
        if not writeable:  # a parser's read-only arrays stay read-only
            a.setflags(write=False)
        return a

    def cls(self, name: str) -> type:
        c = self.classes.get(name)
        if c is None:
            module, _, qualname = name.partition(":")
            if not module.startswith(_PACKAGE + "."):
                raise ValueError(f"class outside {_PACKAGE}: {name}")
            import importlib

            c = importlib.import_module(module)
            for part in qualname.split("."):
                c = getattr(c, part)
            if not isinstance(c, type):
                raise ValueError(f"not a class: {name}")
            self.classes[name] = c
        return c

    def decode(self, node: Any) -> Any:
        if isinstance(node, list):
            return [self.decode(v) for v in node]
        if not isinstance(node, dict):
            return node
        if "$a" in node:
            return self.array(node["$a"])
        if "$f" in node:
            return float.fromhex(node["$f"])
        if "$t" in node:
            return tuple(self.decode(v) for v in node["$t"])
        if "$c" in node:
            c = self.cls(node["$c"])
            if not dataclasses.is_dataclass(c):
                raise ValueError(f"not a dataclass: {node['$c']}")
            obj = object.__new__(c)
            for name, value in node["f"].items():
                object.__setattr__(obj, name, self.decode(value))
            return obj
        if "$d" in node:
            return {self.decode(k): self.decode(v) for k, v in node["$d"]}
        if "$s" in node:
            return self.array(node["$s"])[()]
        if "$p" in node:
            return self.paths[node["$p"]]
        if "$e" in node:
            return self.cls(node["$e"])(self.decode(node["v"]))
        raise ValueError(f"unknown node {sorted(node)}")


def _encode_entry(key: str, obj: Any, subst: dict[PurePath, str]) -> list[bytes]:
    enc = _Encoder(subst)
    tree = enc.encode(obj)
    header = json.dumps({"key": key, "tree": tree, "arrays": enc.specs},
                        separators=(",", ":")).encode()
    chunks: list[bytes] = []
    pos = 0
    crc = 0
    for spec, a in zip(enc.specs, enc.arrays):
        pad = spec[3] - pos
        if pad:
            chunks.append(bytes(pad))
            crc = zlib.crc32(chunks[-1], crc)
        data = a.tobytes()
        chunks.append(data)
        crc = zlib.crc32(data, crc)
        pos = spec[3] + spec[4]
    head = _HEADER.pack(_MAGIC, len(header), pos, crc) + header
    head += bytes(-len(head) % _ALIGN)  # the payload starts aligned in the file
    return [head, *chunks]


def _read_entry(path: Path, key: str, paths: dict[str, Path]) -> Any:
    """The object in entry ``path``; raises ValueError/OSError when it cannot be used."""
    with open(path, "rb") as f:
        fixed = f.read(_HEADER.size)
        if len(fixed) != _HEADER.size:
            raise ValueError("truncated header")
        magic, n_json, n_payload, crc = _HEADER.unpack(fixed)
        if magic != _MAGIC:
            raise ValueError("not a pyfaceau cache entry")
        header = f.read(n_json)
        if len(header) != n_json:
            raise ValueError("truncated header")
        meta = json.loads(header)
        if meta.get("key") != key:
            raise ValueError("key differs")
        f.seek(-(_HEADER.size + n_json) % _ALIGN, os.SEEK_CUR)
        # An aligned, writable buffer: the arrays are views of it, as fresh arrays would be.
        raw = np.empty(n_payload + _ALIGN, dtype=np.uint8)
        start = -raw.ctypes.data % _ALIGN
        buf = raw[start : start + n_payload]
        if f.readinto(memoryview(buf)) != n_payload or f.read(1):
            raise ValueError("payload length differs")
    if zlib.crc32(memoryview(buf)) != crc:
        raise ValueError("payload checksum differs")
    return _Decoder(buf, meta["arrays"], paths).decode(meta["tree"])


# ------------------------------------------------------------------------------------
# The cache
# ------------------------------------------------------------------------------------
#: Source file -> (its status, its SHA-256), for :func:`_module_file_sha`: every cache
#: entry names the same few modules, whose status alone is checked again.
_module_hashes: dict[str, tuple[list[int], str]] = {}


def _module_file_sha(modules: Iterable[str]) -> list[str]:
    out = []
    for name in sorted(set(modules)):
        mod = sys.modules.get(name)
        if mod is None:
            import importlib

            mod = importlib.import_module(name)
        path = mod.__file__
        st = os.stat(path)
        stamp = file_stamp(st)
        known = _module_hashes.get(path)
        if known is not None and known[0] == stamp:
            digest = known[1]
        else:
            digest = file_sha256(path)
            if not _changed_just_now(st):
                _module_hashes[path] = (stamp, digest)
        out.append(f"{name}:{digest}")
    return out


class Entry:
    """One cache entry: the object built from ``sources`` by the code of ``code`` with
    ``extra`` arguments (see :func:`cached`). ``load()`` gives it or None; ``store(obj)``
    writes it (quietly skipped when the object or the folder does not allow it)."""

    def __init__(
        self,
        kind: str,
        sources: Sequence[str | os.PathLike],
        *,
        code: Sequence[str] = (),
        extra: Any = None,
    ) -> None:
        self.kind = kind
        self.sources = [Path(s) for s in sources]
        self.folder = cache_dir()
        self.key: str | None = None
        self.slot: Path | None = None
        if self.folder is None:
            return
        try:
            key_parts = {
                "format": FORMAT_VERSION,
                "kind": kind,
                "sources": [file_sha256(p) for p in self.sources],
                "code": _module_file_sha([__name__, *code]),
                "extra": extra,
            }
        except OSError:
            return  # a source is unreadable: the loader will report it
        self.key = hashlib.sha256(json.dumps(key_parts, sort_keys=True).encode()).hexdigest()
        # One slot per kind, source location, extra arguments and installed copy of
        # pyfaceau: changed files or code overwrite their slot instead of piling up.
        where = json.dumps([kind, [os.path.realpath(p) for p in self.sources], extra,
                            os.path.dirname(os.path.realpath(__file__))])
        self.slot = self.folder / f"{kind}-{hashlib.sha256(where.encode()).hexdigest()[:20]}.bin"

    def load(self) -> Any | None:
        """The stored object, or None (absent, another key, damaged, cache off)."""
        if self.slot is None or self.key is None:
            return None
        try:
            return _read_entry(self.slot, self.key, {str(i): p for i, p in enumerate(self.sources)})
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError, IndexError, AttributeError) as exc:
            log.debug("model cache entry %s not used (%s); rebuilding", self.slot, exc)
            return None

    def store(self, obj: Any) -> None:
        """Write ``obj`` to the entry (atomically)."""
        if self.slot is None or self.key is None:
            return
        try:
            chunks = _encode_entry(self.key, obj, {p: str(i) for i, p in enumerate(self.sources)})
        except _NotCacheable as exc:
            log.debug("%s: not cached (%s)", self.kind, exc)
            return
        _atomic_write(self.slot, chunks)


def cached(
    kind: str,
    sources: Sequence[str | os.PathLike],
    build: Callable[[], T],
    *,
    code: Sequence[str] = (),
    extra: Any = None,
) -> T:
    """``build()``, or the object a previous run built from the same files and code.

    Parameters
    ----------
    kind : a name for the entry (e.g. ``"ccnf_scale"``).
    sources : the model files ``build`` reads. Path values inside the object equal to one
        of these are stored by position and restored as the paths given now.
    build : makes the object from the files (called on a miss).
    code : names of the modules whose source defines the object and how it is built (the
        module of :func:`cached` is always included).
    extra : JSON-serialisable arguments that change the result (part of the key).

    Returns
    -------
    What ``build`` returns (from the cache: arrays aligned, with the same dtype, shape,
    memory order and write flag).
    """
    entry = Entry(kind, sources, code=code, extra=extra)
    obj = entry.load()
    if obj is None:
        obj = build()
        entry.store(obj)
    return obj


def cached_parser(kind: str, *, code: Sequence[str] = ()) -> Callable[[Callable[..., T]], Callable[..., T]]:
    """Decorator: cache a parser ``f(path, *args)`` whose extra arguments are
    JSON-serialisable (see :func:`cached`). Calls with keyword arguments bypass the cache.
    """

    def wrap(func: Callable[..., T]) -> Callable[..., T]:
        modules = [func.__module__, *code]

        @functools.wraps(func)  # also sets parse.__wrapped__ = func (the uncached parser)
        def parse(path: str | os.PathLike, *args: Any, **kwargs: Any) -> T:
            if kwargs:
                return func(path, *args, **kwargs)
            p = Path(path)
            try:
                extra = json.loads(json.dumps(list(args)))
            except (TypeError, ValueError):
                return func(path, *args)
            return cached(kind, [p], lambda: func(p, *args), code=modules, extra=extra)

        return parse

    return wrap
