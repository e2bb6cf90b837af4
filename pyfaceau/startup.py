"""Process start-up for pyfaceau's own processes (the CLI and batch workers).

:func:`start_process` does what such a process needs before its first frame: the costs of
numba's that pyfaceau's cached kernels do not need removed (:func:`start_numba_quickly`),
and OpenCV's own thread pool turned off (:func:`single_threaded_opencv`). The library
never does either in someone else's process, where other code may need them. And Python's
cyclic garbage collector, paused while the process starts (:func:`pause_gc`,
:func:`resume_gc`).

- **The context refresh before every cached load.** numba's ``Cache.load_overload`` calls
  ``target_context.refresh()`` first, which imports and installs all of numba's lowering
  for Python and NumPy (``CPUContext.load_additional_registries``: 0.2-0.4 s the first
  time, about a sixth of pyfaceau's start-up). Loading a cached kernel needs only numba's
  runtime (NRT) set up; the lowering is needed to *compile* one, and numba's compiler
  refreshes the contexts itself before compiling (``CompilerBase.__init__``). So a cached
  load sets up the runtime only; a kernel missing from the cache (the first run, an
  edited file) still compiles exactly as before.
- **Each cached kernel's bitcode, parsed at load.** A kernel in numba's cache holds its
  machine code and, beside it, its LLVM bitcode, which numba parses at every load
  (``CPUCodeLibrary._unserialize``) only to list the symbols it defines and to keep a
  module for linking into kernels compiled later. Running the cached machine code needs
  neither. So a cached load keeps the bitcode as bytes, and parses it the first time a
  kernel being compiled links it (``_get_module_for_linking``); a symbol lookup not in
  numba's list asks the execution engine, which has the machine code. 0.2-0.3 s less on
  the 30-frame ``image_sequence`` (``docs/speed.md``).
- **SciPy and PyYAML at numba's import.** ``import numba`` imports SciPy only to check
  its version, and PyYAML only to read a ``.numba_config.yaml`` in the working directory:
  0.06-0.08 s here, neither needed by pyfaceau. When numba is not imported yet, it is
  imported with both hidden (PyYAML not when such a file is there); both stay importable
  afterwards.
- **numba's experimental package and importlib.metadata at its import.** ``import numba``
  imports ``numba.experimental`` only to re-export it (its jitclass overloads take about
  45 ms to register; compiling needs them, and numba's context refresh imports them
  before any compile) and ``importlib.metadata`` only for its scan of installed packages
  for numba extensions. Both are placeholders while numba is imported, gone afterwards:
  a later import, numba's own reference or ``numba.experimental`` reaches the real
  module (a numba that needs either while it is imported is imported without them).
- **The extension scan and numba's lowering modules at every cached load.** Before each
  kernel's dispatch numba scans the installed packages for extensions (about 16 ms the
  first time); a cached load then rebuilds each environment of the kernel's inlined code
  by importing that code's module, among them ``numba.np.arrayobj`` and the string
  modules it imports (about 40 ms). pyfaceau's kernels take arrays and numbers, which
  need no extension, and run in nopython mode, where an environment's module globals are
  never read. So pyfaceau's processes skip the scan at dispatch (the context refresh
  before a compile still runs it) and give a module not imported yet an environment of
  its name only.
- **The BLAS probe.** The first refresh imports ``numba.np.arraymath``, which imports
  ``scipy.linalg.cython_blas`` only to learn whether ``np.dot`` and ``np.linalg`` may be
  used in jitted code (about 0.13 s with SciPy installed). pyfaceau's kernels never do
  (``tests/test_startup.py`` checks), so when that refresh comes the probe is answered "no"
  without importing SciPy. SciPy itself stays importable.
- **The garbage collector during start-up.** Importing numba and loading the models makes
  hundreds of thousands of objects, and the collector runs about 200 times over them
  (0.07-0.1 s here, one full collection 0.03-0.04 s). Start-up makes almost no garbage
  cycles, so the CLI pauses the collector until the models are loaded, then freezes what
  start-up made (``gc.freeze``: later collections skip it) and collects normally again.
- **OpenCV's thread pool.** OpenCV splits calls on whole frames (the grey conversion,
  resizing) over a pool of its own, one thread per core, whose threads spin a while after
  each call. pyfaceau's own threads already keep every core busy with other stages, so
  the pool only adds spinning and waiting: on ``2015-10-15-15-14.avi`` with ``--fast``,
  0.6 s of CPU in the pool's threads, 0.7 s more on the calling threads, and 3% of the
  wall time (``docs/speed.md``). OpenCV's results do not depend on its thread count.
"""

from __future__ import annotations

import contextlib
import gc
import importlib
import os
import sys
import types
from typing import Iterator, Sequence

__all__ = [
    "pause_gc",
    "resume_gc",
    "single_threaded_opencv",
    "skip_numba_blas_probe",
    "save_kernels",
    "stand_in_modules",
    "start_numba_quickly",
    "start_process",
    "use_saved_kernels",
]

_PROBED_MODULE = "scipy.linalg.cython_blas"
_started = False
_gc_paused = False  # set by pause_gc: the collector is off because of it


class _Placeholder(types.ModuleType):
    """A module's stand-in in :func:`stand_in_modules`: empty within the block, and afterwards
    the real module's attributes (imported on first use)."""

    def __getattr__(self, attr: str):  # noqa: ANN204 - any attribute of the real module
        if sys.modules.get(self.__name__) is self:  # within the block
            raise AttributeError(attr)
        return getattr(importlib.import_module(self.__name__), attr)


@contextlib.contextmanager
def stand_in_modules(
    hidden: Sequence[str] = (), placeholders: Sequence[str] = ()
) -> Iterator[None]:
    """Within the block, importing a module of ``hidden`` raises ImportError and one of
    ``placeholders`` gives a :class:`_Placeholder` (modules already imported are left as
    they are). Afterwards the stand-ins are gone from ``sys.modules``: a later import
    loads the real module (and replaces a placeholder left as an attribute of its parent
    package), and a placeholder kept meanwhile, e.g. ``numba.experimental``, reaches the
    real module's attributes."""
    placed = {name: None for name in hidden}
    placed.update((name, _Placeholder(name)) for name in placeholders)
    placed = {name: stand_in for name, stand_in in placed.items() if name not in sys.modules}
    sys.modules.update(placed)  # None in sys.modules: importing it raises ImportError
    try:
        yield
    finally:
        for name, stand_in in placed.items():
            if name in sys.modules and sys.modules[name] is stand_in:
                del sys.modules[name]


def skip_numba_blas_probe() -> None:
    """Make numba's BLAS probe fail fast (no SciPy import) in this process.

    Imports ``numba.np.arraymath`` now. Call before any numba kernel is compiled; later
    calls, or calls after numba already probed, change nothing.
    """
    if "numba.np.arraymath" in sys.modules or _PROBED_MODULE in sys.modules:
        return
    with stand_in_modules(hidden=[_PROBED_MODULE]):
        import numba.np.arraymath  # noqa: F401  (runs the probe now, while it fails)


def _import_numba_lean() -> None:
    """``import numba`` without its SciPy and PyYAML imports (see the module docstring)."""
    if "numba" in sys.modules:
        return
    hidden = ["scipy", "yaml"]
    if os.path.exists(".numba_config.yaml"):
        hidden.remove("yaml")  # numba reads that file with PyYAML
    # numba's package imports its experimental jitclass only to re-export it (about 45 ms
    # registering overloads that compiling needs; numba's context refresh imports them
    # itself before a compile), and importlib.metadata only for its extension scan.
    try:
        with stand_in_modules(hidden, ["numba.experimental", "importlib.metadata"]):
            import numba  # noqa: F401
    except (ImportError, AttributeError):
        # A numba that needs one of them while it is imported: import it as it is.
        for name in [m for m in sys.modules if m == "numba" or m.startswith("numba.")]:
            del sys.modules[name]
        with stand_in_modules(hidden):
            import numba  # noqa: F401, F811


def start_numba_quickly(lean_import: bool = True) -> None:
    """Cached kernels load without numba's context refresh; the BLAS probe, when a compile
    needs the refresh, is skipped (see the module docstring). Idempotent; call before the
    first kernel runs. ``lean_import=False`` imports numba as it is: while other threads
    run (numba brought in during a run, :func:`pyfaceau.jit.use_numba`), no module may be
    hidden from them."""
    global _started
    if _started:
        return
    _started = True
    if lean_import:
        _import_numba_lean()
    else:
        import numba  # noqa: F401
    from numba.core import caching, cpu
    from numba.core.runtime import rtsys

    needed = [
        (caching.Cache, "_load_overload"),
        (caching.Cache, "_guard_against_spurious_io_errors"),
        (cpu.CPUContext, "load_additional_registries"),
        (rtsys, "initialize"),
    ]
    if not all(hasattr(owner, name) for owner, name in needed):
        skip_numba_blas_probe()  # another numba layout: its own loading, the probe skipped
        return

    def load_overload(self, sig, target_context):  # noqa: ANN001, ANN202 - numba's method
        rtsys.initialize(target_context)  # what a cached kernel needs of the refresh
        with self._guard_against_spurious_io_errors():
            return self._load_overload(sig, target_context)
        # None when the guard swallowed an I/O error, as numba's own method

    load_registries = cpu.CPUContext.load_additional_registries

    def load_additional_registries(self):  # noqa: ANN001, ANN202 - numba's method
        skip_numba_blas_probe()
        load_registries(self)

    caching.Cache.load_overload = load_overload
    cpu.CPUContext.load_additional_registries = load_additional_registries
    _defer_cached_bitcode()
    _lean_cached_loads()


def _lean_cached_loads() -> None:
    """Cached kernels load without scanning installed packages for numba extensions and
    without importing numba's own lowering modules for their environments (see the module
    docstring). Leaves numba as it is where it differs from what this expects."""
    from numba.core import dispatcher, environment

    base = dispatcher._DispatcherBase
    if not (hasattr(base, "_compilation_chain_init_hook")
            and hasattr(environment, "_rebuild_env")
            and hasattr(environment, "lookup_environment")):
        return

    def _compilation_chain_init_hook(self):  # noqa: ANN001, ANN202 - numba's method
        # numba's hook loads extensions before typing the arguments; pyfaceau's kernels
        # take arrays and numbers only. A compile still loads them: the context refresh
        # that precedes it does (CPUContext.load_additional_registries).
        return None

    rebuild_env = environment._rebuild_env

    def _rebuild_env(modname, consts, env_name):  # noqa: ANN001, ANN202 - numba's function
        # An environment's globals serve object mode only; a nopython kernel's inlined
        # numba functions need not have their modules imported to run.
        if modname in sys.modules or environment.lookup_environment(env_name) is not None:
            return rebuild_env(modname, consts, env_name)
        env = environment.Environment({"__name__": modname})
        env.consts[:] = consts
        env.env_name = env_name
        environment.Environment._memo[env_name] = env
        return env

    # numba pickles every environment as a call to this function: under numba's name it
    # is stored by reference (a kernel compiled here loads anywhere with numba's own),
    # not with this code inside the cache file.
    _rebuild_env.__module__ = rebuild_env.__module__
    _rebuild_env.__qualname__ = rebuild_env.__qualname__
    base._compilation_chain_init_hook = _compilation_chain_init_hook
    environment._rebuild_env = _rebuild_env


def _defer_cached_bitcode() -> None:
    """Cached kernels load without parsing their bitcode (see the module docstring).
    Leaves numba as it is where its code library or engine differ from what this expects."""
    from llvmlite import binding as llvm
    from numba.core import codegen

    library, engine = codegen.CPUCodeLibrary, codegen.JitEngine
    needed = [
        (library, "_unserialize"), (library, "_get_module_for_linking"),
        (library, "enable_object_caching"), (library, "_set_compiled_object"),
        (library, "_finalize_final_module"), (engine, "is_symbol_defined"),
        (engine, "_load_defined_symbols"),
    ]
    if not all(hasattr(owner, name) for owner, name in needed):
        return
    unserialize = library._unserialize.__func__
    module_for_linking = library._get_module_for_linking

    def _unserialize(cls, code_generator, state):  # noqa: ANN001, ANN202 - numba's method
        name, kind, data = state
        if kind != "object" or not (isinstance(data, tuple) and len(data) == 2):
            return unserialize(cls, code_generator, state)
        object_code, shared_bitcode = data
        self = code_generator.create_library(name)
        self.enable_object_caching()
        self._set_compiled_object(object_code)  # consumed by the engine below
        self._pyfaceau_object = object_code  # kept for the saved kernels (pyfaceau/jit.py)
        self._pyfaceau_bitcode = shared_bitcode  # parsed when linked (below)
        self._finalize_final_module()
        return self

    def _get_module_for_linking(self):  # noqa: ANN001, ANN202 - numba's method
        bitcode = self.__dict__.pop("_pyfaceau_bitcode", None)
        if bitcode is not None:  # what numba's own load would have done
            self._shared_module = llvm.parse_bitcode(bitcode)
            self._codegen._engine._load_defined_symbols(self._shared_module)
        return module_for_linking(self)

    def is_symbol_defined(self, name):  # noqa: ANN001, ANN202 - numba's method
        # Symbols of deferred libraries are not in numba's list; the engine, which has
        # their machine code, knows them.
        return name in self._defined_symbols or self._ee.get_function_address(name) != 0

    library._unserialize = classmethod(_unserialize)
    library._get_module_for_linking = _get_module_for_linking
    engine.is_symbol_defined = is_symbol_defined


def single_threaded_opencv() -> None:
    """Run OpenCV's functions on the calling thread only (``cv2.setNumThreads(1)``), in
    this process; see the module docstring."""
    import cv2

    cv2.setNumThreads(1)


def start_process() -> None:
    """What a process pyfaceau owns does before its first kernel runs: the saved kernels
    when they are there and current (:mod:`pyfaceau.jit`; numba is then imported only if
    a call needs it), otherwise :func:`start_numba_quickly`; and
    :func:`single_threaded_opencv`. ``PYFACEAU_SAVED_KERNELS=0`` turns the saved kernels
    off (:func:`pyfaceau.jit_saved.saved_path`)."""
    if not use_saved_kernels():
        start_numba_quickly()
    single_threaded_opencv()


def use_saved_kernels() -> bool:
    """Run the kernels from the saved machine code if it is there and current (see
    :mod:`pyfaceau.jit`); True when it is used. Call before any kernel module is
    imported."""
    if os.environ.get("PYFACEAU_SAVED_KERNELS", "1") == "0":
        return False
    from . import jit, jit_saved

    jit_saved.note_start()  # what the kernels of this process are compiled from
    if "numba" in sys.modules:  # kernels defined already: numba's, and saved at the end
        return False
    saved = jit_saved.load()
    if saved is not None:
        jit.use_saved(saved)
    return jit.saved_in_use()


def save_kernels() -> None:
    """When a process pyfaceau owns ran kernels with numba (the end of a command, a batch
    worker's task): save their machine code for the next start (:func:`pyfaceau.jit.save`;
    again only when numba compiled or loaded more since)."""
    global _saved_versions
    if os.environ.get("PYFACEAU_SAVED_KERNELS", "1") == "0" or "numba" not in sys.modules:
        return
    from . import jit

    versions = jit.compiled_versions()
    if versions > _saved_versions:
        jit.save()
        _saved_versions = versions


_saved_versions = 0  # how many compiled kernel versions the last save_kernels saw


def pause_gc() -> None:
    """Pause Python's cyclic garbage collector for the start-up of a process pyfaceau owns;
    :func:`resume_gc` once the models are loaded. Does nothing if it is already off."""
    global _gc_paused
    if gc.isenabled():
        gc.disable()
        _gc_paused = True


def resume_gc() -> None:
    """After start-up: the objects made so far are frozen (later collections skip them) and
    the collector runs again. Does nothing unless :func:`pause_gc` paused it (a collector
    someone else turned off stays off)."""
    global _gc_paused
    if _gc_paused:
        _gc_paused = False
        gc.freeze()
        gc.enable()
