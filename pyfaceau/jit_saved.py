"""Saved kernels: numba's machine code for pyfaceau's kernels, run without numba.

:func:`save` (a process that ran its kernels with numba) writes, for every compiled
version of every kernel, the object code numba made (the kernel, what it inlined, and
its CPython wrapper), the name of the wrapper, the environments the code refers to (their
constants pickled) and the argument types (:func:`pyfaceau.jit.argument_key`). One file
per installed copy of pyfaceau and Python environment, in the model cache folder
(``kernels-*.pkl``), under a key of everything the machine code depends on: pyfaceau's
source files, numba's and llvmlite's version files and extensions, NumPy's and Python's
versions, the CPU (LLVM's name and features for it), the ``NUMBA_*`` settings and a
``.numba_config.yaml`` in the working folder. Nothing is saved when these changed while
the process ran (:func:`note_start`).

:func:`load` checks the key and that the file is the user's own and nobody else may
write it, then sets up what numba's code needs at run time without the ``numba``
package: llvmlite's JIT linker, numba's C extensions ``_helperlib``, ``_dynfunc`` and
``_nrt_python`` loaded from their files (their helpers registered with LLVM under
numba's names, numba's runtime on CPython's allocator), NumPy's BLAS functions
(:mod:`pyfaceau.blas_library`), then links every object and makes each wrapper a Python
function as numba does (``_dynfunc.make_function``). A symbol that nothing defines, a
missing or foreign file or a changed key: None, and the process uses numba as before.
What numba's code calls back in Python (unpickling a constant when it returns an array)
is answered once at load with the function numba's own module would give.

Mirrors numba 0.68's ``CPUContext.get_executable``, ``Environment`` rebuilding and
``NRT`` set-up (``numba/core/cpu.py``, ``environment.py``, ``runtime/nrt.py``,
``base.py``'s and ``externals.py``'s symbol registration), the version tested; another
version changes the key, and a layout this does not find makes :func:`load` give None.
"""

from __future__ import annotations

import ctypes
import glob
import hashlib
import importlib.util
import logging
import os
import pickle
import struct
import sys
import types
from pathlib import Path
from typing import Any, Callable

from .jit import DTYPE_CHARS
from .modelstore import cache as model_cache

__all__ = ["ENV_SAVED_KERNELS", "SavedKernels", "load", "save", "saved_path", "signature_key"]

log = logging.getLogger(__name__)

FORMAT = 1
_PACKAGE = Path(__file__).resolve().parent


# ------------------------------------------------------------------------------------
# The key
# ------------------------------------------------------------------------------------
def _package_dir(name: str) -> Path | None:
    spec = importlib.util.find_spec(name)  # a top-level package: found, not imported
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0])


_FILES: list[Path] | None = None


def _files() -> list[Path] | None:
    """The files the machine code depends on: pyfaceau's sources, numba's and
    llvmlite's versions and compiled extensions (listed once per process)."""
    global _FILES
    if _FILES is None:
        _FILES = _list_files()
    return _FILES


def _list_files() -> list[Path] | None:
    numba_dir, llvmlite_dir = _package_dir("numba"), _package_dir("llvmlite")
    if numba_dir is None or llvmlite_dir is None:
        return None
    names = sorted(glob.glob(os.path.join(_PACKAGE, "**", "*.py"), recursive=True))
    for folder in (numba_dir, llvmlite_dir):
        names.append(os.path.join(folder, "_version.py"))
        for depth in ("", "*", os.path.join("*", "*")):
            names += sorted(n for n in glob.glob(os.path.join(folder, depth, "*.*"))
                            if n.endswith((".so", ".pyd", ".dll", ".dylib")))
    return [Path(n) for n in names]


def _stamps(files: list[Path]) -> list[tuple]:
    return [(str(p), *model_cache.file_stamp(os.stat(p))) for p in files]


def _environment_key(llvm: Any) -> str:
    """What the machine code depends on besides files, as text."""
    import numpy as np

    llvm.initialize_native_target()  # the host CPU's features are read through it
    parts = [
        FORMAT, sys.version, sys.platform, sys.prefix, np.__version__,
        llvm.get_host_cpu_name(), llvm.get_host_cpu_features().flatten(),
        sorted((k, v) for k, v in os.environ.items() if k.startswith("NUMBA_")),
        _numba_config_file(),
    ]
    return repr(parts)


def _numba_config_file() -> str | None:
    """numba reads settings from ``.numba_config.yaml`` in the working folder too."""
    try:
        with open(".numba_config.yaml", encoding="utf-8", errors="replace") as f:
            return f.read()
    except OSError:
        return None


def _content_key(files: list[Path]) -> str:
    h = hashlib.sha256()
    for p in files:
        h.update(str(p).encode() + b"\0" + model_cache.file_sha256(p).encode())
    return h.hexdigest()


#: ``0``: no saved kernels; unset, empty or ``1``: the file in the model cache folder;
#: anything else: the file to use.
ENV_SAVED_KERNELS = "PYFACEAU_SAVED_KERNELS"


def saved_path() -> Path | None:
    """The saved-kernels file: ``PYFACEAU_SAVED_KERNELS`` when it names one, else this
    installed copy's file in the model cache folder; None when turned off (that
    variable ``0``, or the model cache off)."""
    value = os.environ.get(ENV_SAVED_KERNELS, "")
    if value == "0":
        return None
    if value not in ("", "1"):
        return Path(value)
    folder = model_cache.cache_dir()
    if folder is None:
        return None
    # one file per installed copy and Python environment (one cache folder for several)
    where = f"{_PACKAGE}\0{sys.prefix}"
    slot = hashlib.sha256(where.encode()).hexdigest()[:20]
    return folder / f"kernels-{slot}.pkl"


def _private(path: Path) -> bool:
    """The file holds machine code that runs: used only when it is this user's own and
    nobody else may write it (POSIX; elsewhere the folder's own permissions decide)."""
    try:
        st = os.stat(path)
    except OSError:
        return False
    if hasattr(os, "getuid"):
        return st.st_uid == os.getuid() and not st.st_mode & 0o022
    return True


#: The files' status and the environment when this process started (:func:`note_start`).
_start: tuple | None = None


def note_start() -> None:
    """Note what this process's kernels are compiled from (call at its start): a run
    whose files changed meanwhile saves nothing (:func:`save`)."""
    global _start
    files = _files()
    if files is None:
        return
    from llvmlite import binding as llvm

    _start = (_stamps(files), _environment_key(llvm))


# ------------------------------------------------------------------------------------
# Saving (a process that has numba)
# ------------------------------------------------------------------------------------
def _undefined_symbols(obj: bytes) -> list[str]:
    """Names an ELF64 little-endian relocatable object uses without defining them."""
    if obj[:4] != b"\x7fELF" or obj[4] != 2 or obj[5] != 1:
        raise ValueError("not a 64-bit little-endian ELF object")
    shoff, = struct.unpack_from("<Q", obj, 0x28)
    shentsize, shnum = struct.unpack_from("<HH", obj, 0x3A)
    sections = [struct.unpack_from("<IIQQQQIIQQ", obj, shoff + i * shentsize)
                for i in range(shnum)]
    names = []
    for _, sh_type, _, _, off, size, link, _, _, entsize in sections:
        if sh_type != 2:  # SHT_SYMTAB
            continue
        str_off = sections[link][4]
        for j in range(1, size // entsize):
            st_name, st_info, _, st_shndx, _, _ = struct.unpack_from(
                "<IBBHQQ", obj, off + j * entsize)
            if st_shndx == 0 and st_name and (st_info >> 4) in (1, 2):  # GLOBAL, WEAK
                end = obj.index(b"\0", str_off + st_name)
                names.append(obj[str_off + st_name:end].decode())
    return names


def _environment(name: str) -> tuple[str, str, bytes] | None:
    from numba.core import environment

    env = environment.lookup_environment(name)
    if env is None:
        return None
    return name, env.globals.get("__name__", ""), pickle.dumps(list(env.consts))


def signature_key(sig: tuple) -> tuple | None:
    """What :func:`pyfaceau.jit.argument_key` gives for arguments of numba's types
    ``sig``; None for a type it does not name."""
    from numba.core import types as nb_types

    key = []
    for t in sig:
        if isinstance(t, nb_types.Array):
            if not t.aligned or str(t.dtype) not in _TYPE_CHARS:
                return None
            key.append((_TYPE_CHARS[str(t.dtype)], t.ndim, t.layout, not t.mutable))
        elif str(t) in _TYPE_CHARS:
            key.append(_TYPE_CHARS[str(t)])
        else:
            return None
    return tuple(key)


def _entry(dispatcher: Any, sig: tuple, cres: Any) -> dict | None:
    """One compiled version of a kernel as saved, or None when it cannot be."""
    key = signature_key(sig)
    if key is None:
        return None
    library = cres.library
    if getattr(library, "_reload_init", None):
        return None  # code numba re-initialises at load (none of pyfaceau's kernels)
    # loaded from numba's cache in a pyfaceau process: kept at load (pyfaceau/startup.py);
    # compiled here: numba's own copy
    obj = getattr(library, "_pyfaceau_object", None) or library._get_compiled_object()
    own = cres.target_context.get_env_name(cres.fndesc)
    # Environments this process does not have (numba's array expressions, named by an
    # address) stay unset, as numba leaves them when it loads a kernel from its cache.
    envs = [_environment(name) for name in _environment_names(obj, own)]
    if envs[0] is None:
        return None
    envs = [e for e in envs if e is not None]
    return {
        "module": dispatcher.py_func.__module__, "qualname": dispatcher.py_func.__qualname__,
        "key": key, "object": obj, "wrapper": cres.fndesc.llvm_cpython_wrapper_name,
        "envs": envs, "undefined": _undefined_symbols(obj),
    }


#: numba's type names -> :func:`pyfaceau.jit.argument_key`'s (NumPy's dtype characters;
#: numba names these dtypes as NumPy does).
_TYPE_CHARS = {name: char for char, name in DTYPE_CHARS.items()}


def _environment_names(obj: bytes, own: str) -> list[str]:
    """``own``, then every other environment symbol (``_ZN08NumbaEnv...``) in the
    object's symbol names."""
    found = [own]
    start = 0
    while (i := obj.find(b"_ZN08NumbaEnv", start)) >= 0:
        end = obj.index(b"\0", i)
        name = obj[i:end].decode(errors="replace")
        if name not in found:
            found.append(name)
        start = end
    return found


def save(dispatchers: list[Any]) -> bool:
    """Write the saved-kernels file from ``dispatchers`` (numba's), keeping entries of
    the file that are still valid; False (nothing written) when anything is off."""
    path = saved_path()
    files = _files()
    if path is None or files is None or _start is None:
        return False
    try:
        from llvmlite import binding as llvm

        stamps, environment = _stamps(files), _environment_key(llvm)
        if (stamps, environment) != _start:
            log.debug("saved kernels not written: files changed during the run")
            return False
        entries = {}
        old = _read(path, files)
        for e in (old["entries"] if old else []):
            entries[(e["module"], e["qualname"], e["key"])] = e
        for d in dispatchers:
            for sig, cres in list(getattr(d, "overloads", {}).items()):
                try:
                    e = _entry(d, sig, cres)
                    pickle.dumps(e)
                except Exception as exc:  # noqa: BLE001 - this version is left out
                    log.debug("%s not saved: %s", getattr(d, "__qualname__", d), exc)
                    continue
                if e is not None:
                    entries[(e["module"], e["qualname"], e["key"])] = e
        data = {
            "format": FORMAT, "environment": environment,
            "content": _content_key(files), "stamps": stamps,
            "entries": list(entries.values()),
        }
        return model_cache._atomic_write(path, pickle.dumps(data, protocol=5))
    except Exception as exc:  # noqa: BLE001 - saving is an optimisation only
        log.debug("saved kernels not written: %s", exc, exc_info=True)
        return False


def _read(path: Path, files: list[Path]) -> dict | None:
    """The file's data if it is private and its key is this process's (:func:`note_start`)."""
    if _start is None or not _private(path):
        return None
    try:
        data = pickle.loads(path.read_bytes())
    except Exception:  # noqa: BLE001 - absent, damaged or from elsewhere: not used
        return None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        return None
    stamps, environment = _start
    if data.get("environment") != environment:
        return None
    if data.get("stamps") != stamps and data.get("content") != _content_key(files):
        return None
    return data


# ------------------------------------------------------------------------------------
# Loading (a process without numba)
# ------------------------------------------------------------------------------------
def _extension(numba_dir: Path, name: str, relative: str) -> types.ModuleType:
    (path,) = glob.glob(str(numba_dir / relative) + ".*.so") or glob.glob(
        str(numba_dir / relative) + ".*.pyd")
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    sys.modules[name] = module  # what numba's own import of it will find
    return module


class SavedKernels:
    """The loaded saved kernels: :meth:`functions` gives a kernel's compiled versions."""

    def __init__(self, functions: dict, keep: list) -> None:
        self._functions = functions  # (module, qualname) -> {argument key: function}
        self._keep = keep  # the engine, the environments: alive as long as the functions

    def functions(self, py_func: Callable) -> dict:
        """``py_func``'s saved versions: argument key -> compiled function."""
        return self._functions.get((py_func.__module__, py_func.__qualname__), {})


def load() -> SavedKernels | None:
    """The saved kernels for this process, or None (see the module docstring)."""
    path = saved_path()
    if path is None or not path.exists():
        return None
    files = _files()
    if files is None:
        return None
    try:
        from llvmlite import binding as llvm

        data = _read(path, files)
        if data is None or not data["entries"]:
            return None
        return _link(data["entries"], llvm, _package_dir("numba"))
    except Exception as exc:  # noqa: BLE001 - any failure: numba as before
        log.debug("saved kernels not used: %s", exc, exc_info=True)
        return None


def _link(entries: list[dict], llvm: Any, numba_dir: Path) -> SavedKernels | None:
    helperlib = _extension(numba_dir, "numba._helperlib", "_helperlib")
    dynfunc = _extension(numba_dir, "numba._dynfunc", "_dynfunc")
    nrt = _extension(numba_dir, "numba.core.runtime._nrt_python", "core/runtime/_nrt_python")
    llvm.initialize_native_target()
    llvm.initialize_native_asmprinter()
    # numba/core/base.py and runtime/nrt.py: the helpers under numba's names
    llvm.add_symbol("_Py_NoneStruct", id(None))
    for helpers in (helperlib.c_helpers, dynfunc.c_helpers):
        for name, address in helpers.items():
            llvm.add_symbol("numba_" + name, address)
    import builtins

    for obj in vars(builtins).values():
        if isinstance(obj, type) and issubclass(obj, BaseException):
            llvm.add_symbol("PyExc_%s" % obj.__name__, id(obj))
    for name, address in nrt.c_helpers.items():
        llvm.add_symbol(name if name.startswith("_") else "NRT_" + name, address)
    # numba/core/externals.py: the C math functions bound to CPython's C library
    for name in _numba_math_names(numba_dir):
        if name in helperlib.c_helpers:
            llvm.add_symbol(name, helperlib.c_helpers[name])
    from . import blas_library  # registers NumPy's BLAS for the kernels that call it

    del blas_library
    nrt.memsys_use_cpython_allocator()  # numba/core/runtime/nrt.py
    defined: set[str] = set()
    for e in entries:
        defined.update(_defined(e))
    process = ctypes.CDLL(None)  # what the JIT linker finds in the process (libm, ...)
    for e in entries:
        for name in e["undefined"]:
            if name not in defined and not llvm.address_of_symbol(name) \
                    and not hasattr(process, name):
                log.debug("saved kernels not used: %s is not defined", name)
                return None
    machine = llvm.Target.from_default_triple().create_target_machine(
        opt=3, jit=True, codemodel="jitdefault")
    engine = llvm.create_mcjit_compiler(llvm.parse_assembly(""), machine)
    for e in entries:
        engine.add_object_file(llvm.ObjectFileRef.from_data(e["object"]))
    engine.finalize_object()
    _answer_unpickle_once(helperlib)
    keep: list = [engine]
    environments: dict[str, Any] = {}
    functions: dict = {}
    for e in entries:
        for name, modname, consts in e["envs"]:
            if name not in environments:
                env = dynfunc.Environment({"__name__": modname})
                env.consts[:] = pickle.loads(consts)
                environments[name] = env
                address = engine.get_global_value_address(name)
                if address:
                    ctypes.c_void_p.from_address(address).value = id(env)
        pointer = engine.get_function_address(e["wrapper"])
        if not pointer:
            return None
        # numba/core/cpu.py, CPUContext.get_executable (the module only names it)
        name = e["qualname"].split(".")[-1]
        function = dynfunc.make_function(
            types.ModuleType(e["module"]), name, f"saved kernel {e['qualname']}", pointer,
            environments[e["envs"][0][0]], (keep,))
        functions.setdefault((e["module"], e["qualname"]), {})[e["key"]] = function
    keep.append(environments)
    return SavedKernels(functions, keep)


def _numba_math_names(numba_dir: Path) -> set[str]:
    """numba's ``intrinsics.INTR_MATH`` (the C math functions it binds), read from its
    source without importing it."""
    import ast

    tree = ast.parse((numba_dir / "core" / "intrinsics.py").read_text())
    names: set[str] = set()
    for node in tree.body:
        if not (isinstance(node, ast.Assign) and len(node.targets) == 1
                and isinstance(node.targets[0], ast.Name)):
            continue
        if node.targets[0].id == "INTR_TO_CMATH" and isinstance(node.value, ast.Dict):
            names.update(ast.literal_eval(node.value).values())
        elif node.targets[0].id == "OTHER_CMATHS":
            names.update(ast.literal_eval(node.value.func.value).split())
    if not names:
        raise ValueError("numba's C math functions not found")
    return names


def _defined(entry: dict) -> set[str]:
    return {entry["wrapper"]} | {name for name, _, _ in entry["envs"]}


def _answer_unpickle_once(helperlib: types.ModuleType) -> None:
    """numba's helper unpickles constants through ``numba.core.serialize._numba_unpickle``,
    importing that module (and the ``numba`` package) on its first use and keeping the
    function. Answer that first use now with the same function (``pickle.loads`` with
    numba's memo), so running a saved kernel never imports numba."""
    memo: dict = {}

    def _numba_unpickle(address: int, bytedata: bytes, hashed: bytes) -> Any:
        key = (address, hashed)
        try:
            return memo[key]
        except KeyError:
            memo[key] = obj = pickle.loads(bytedata)
            return obj

    from .startup import stand_in_modules

    # helperlib imports numba.core.serialize (and with it the package) for the function
    unpickle = ctypes.PYFUNCTYPE(ctypes.py_object, ctypes.c_char_p, ctypes.c_int,
                                 ctypes.c_char_p)(helperlib.c_helpers["unpickle"])
    data = pickle.dumps(None)
    with stand_in_modules(placeholders=["numba", "numba.core", "numba.core.serialize"]):
        sys.modules["numba.core.serialize"]._numba_unpickle = _numba_unpickle
        unpickle(data, len(data), b"\0" * 20)
