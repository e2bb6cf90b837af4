"""numba's decorators for pyfaceau's kernels, and saved kernels that run without numba.

Every kernel module decorates its kernels with :func:`njit` (and defines its numba
intrinsics and external functions with :func:`intrinsic` and :func:`external_function`).
In an ordinary process these are numba's own: :func:`njit` returns numba's dispatcher.

A process pyfaceau owns (the CLI, batch workers; :func:`pyfaceau.startup.start_process`)
can instead run the machine code numba compiled in an earlier run without importing
numba, whose import and runtime set-up take about 0.3 s of every start
(``docs/speed.md``). :mod:`pyfaceau.jit_saved` keeps, in the model cache folder, each
kernel's object code with its CPython wrapper as numba compiled them, keyed by
pyfaceau's source, numba's and llvmlite's versions, the CPU and numba's settings; when
the key matches, :func:`pyfaceau.startup.use_saved_kernels` loads them (llvmlite and
three of numba's C extensions, without the ``numba`` package) and hands them to
:func:`use_saved` before the kernel modules are imported, and :func:`njit` then returns
a :class:`SavedKernel`: the saved machine code for the argument types numba would see,
the same bits. A call with argument types the saved kernels do not
cover imports numba, makes numba's dispatchers for every kernel and puts them in place of
the saved ones in pyfaceau's modules (:func:`use_numba`), so nothing depends on the saved
kernels being complete; the process then saves what it compiled or loaded for the next
start (:func:`save`).
"""

from __future__ import annotations

import sys
import threading
from typing import Any, Callable

import numpy as np

__all__ = ["DTYPE_CHARS", "SavedKernel", "argument_key", "compiled_versions",
           "external_function", "in_kernel_callback", "intrinsic", "njit", "save",
           "saved_in_use", "use_numba", "use_saved"]

_lock = threading.RLock()
#: The loaded saved kernels (:class:`pyfaceau.jit_saved.SavedKernels`) while in use.
_saved: Any = None
#: Every stand-in made while the saved kernels were in use (to replace on :func:`use_numba`).
_stand_ins: list["_StandIn"] = []
#: Every numba dispatcher made (directly or by :func:`use_numba`), for :func:`save`.
_dispatchers: list[Any] = []


def njit(**options: Any) -> Callable[[Callable], Any]:
    """``numba.njit(**options)`` for a pyfaceau kernel (see the module docstring)."""

    def decorate(py_func: Callable) -> Any:
        with _lock:
            if _saved is None:
                import numba

                dispatcher = numba.njit(**options)(py_func)
                _dispatchers.append(dispatcher)
                return dispatcher
            kernel = SavedKernel(py_func, options, _saved.functions(py_func))
            _stand_ins.append(kernel)
            return kernel

    return decorate


def intrinsic(definition: Callable) -> Any:
    """``numba.extending.intrinsic(definition)`` (numba's object made only when a kernel
    that uses it must be compiled)."""
    with _lock:
        if _saved is None:
            return _real_intrinsic(definition)
        return _Deferred(definition.__name__, lambda: _real_intrinsic(definition))


def external_function(symbol: str, signature: Callable[[Any], Any]) -> Any:
    """``numba.types.ExternalFunction(symbol, signature(numba.types))``: a C function
    known to LLVM by ``symbol`` (registered with ``llvmlite.binding.add_symbol``)."""
    with _lock:
        if _saved is None:
            return _real_external(symbol, signature)
        return _Deferred(symbol, lambda: _real_external(symbol, signature))


def _real_intrinsic(definition: Callable) -> Any:
    from numba.extending import intrinsic as numba_intrinsic

    return numba_intrinsic(definition)


def _real_external(symbol: str, signature: Callable[[Any], Any]) -> Any:
    from numba import types

    return types.ExternalFunction(symbol, signature(types))


class _StandIn:
    """Something that stands for a numba object while the saved kernels are in use."""

    _real: Any = None

    def _make_real(self) -> Any:
        raise NotImplementedError

    def real(self) -> Any:
        """numba's object (made once, numba imported by :func:`use_numba`)."""
        if self._real is None:
            with _lock:
                if self._real is None:
                    self._real = self._make_real()
        return self._real


class _Deferred(_StandIn):
    def __init__(self, name: str, make: Callable[[], Any]) -> None:
        self.name = name
        self._make = make

    def _make_real(self) -> Any:
        return self._make()

    def __repr__(self) -> str:
        return f"<deferred numba object {self.name}>"


class SavedKernel(_StandIn):
    """A kernel run from saved machine code (see the module docstring).

    Calls with the argument types numba would give (:func:`argument_key`) that were saved
    run the saved code (the GIL released as numba's wrapper does for ``nogil`` kernels);
    any other call goes to numba (:func:`use_numba`).
    """

    def __init__(self, py_func: Callable, options: dict, functions: dict) -> None:
        self.py_func = py_func
        self.options = dict(options)
        self._functions = functions  # argument key -> compiled function
        self.__name__ = py_func.__name__
        self.__qualname__ = py_func.__qualname__
        self.__module__ = py_func.__module__
        self.__doc__ = py_func.__doc__

    def _make_real(self) -> Any:
        import numba

        dispatcher = numba.njit(**self.options)(self.py_func)
        _dispatchers.append(dispatcher)
        return dispatcher

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if not kwargs and self._real is None:
            function = self._functions.get(argument_key(args))
            if function is not None:
                return function(*args)
        use_numba()
        return self.real()(*args, **kwargs)

    def __repr__(self) -> str:
        return f"<saved kernel {self.__module__}.{self.__qualname__}>"


#: NumPy scalar types -> their dtype character (numba types them as that dtype).
_SCALARS = {np.dtype(t).type: np.dtype(t).char for t in (
    np.bool_, np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint16, np.uint32,
    np.uint64, np.float32, np.float64)}
#: Array dtypes numba types as their own kind (native byte order): character -> name.
DTYPE_CHARS = {np.dtype(t).char: np.dtype(t).name for t in _SCALARS}
_INT64, _FLOAT64, _BOOL = (np.dtype(t).char for t in (np.int64, np.float64, np.bool_))


def argument_key(args: tuple) -> tuple | None:
    """The argument types numba's dispatcher would see, as a hashable key; None for an
    argument whose type this does not name (the call then goes to numba).

    Arrays: ``(dtype character, ndim, layout, read-only)`` with numba's layout (``C``
    when C-contiguous, else ``F`` when Fortran-contiguous, else ``A``), for aligned
    arrays of native byte order. Scalars: their dtype character; Python ``bool``,
    ``float`` and ``int`` (``int64`` below 2**63, as numba types them).
    """
    key = []
    for a in args:
        t = type(a)
        if t is np.ndarray:
            dtype = a.dtype
            flags = a.flags
            if not flags.aligned or dtype.char not in DTYPE_CHARS or not dtype.isnative:
                return None
            layout = "C" if flags.c_contiguous else ("F" if flags.f_contiguous else "A")
            key.append((dtype.char, a.ndim, layout, not flags.writeable))
        elif t is float:
            key.append(_FLOAT64)
        elif t is int:
            if not -(1 << 63) <= a < (1 << 63):
                return None
            key.append(_INT64)
        elif t is bool:
            key.append(_BOOL)
        else:
            char = _SCALARS.get(t)
            if char is None:
                return None
            key.append(char)
    return tuple(key)


def use_saved(saved: Any) -> None:
    """Use ``saved`` (:class:`pyfaceau.jit_saved.SavedKernels`) for the kernels defined
    from now on. Call before the kernel modules are imported."""
    global _saved
    with _lock:
        if not _dispatchers and "numba" not in sys.modules:  # no kernel defined yet
            _saved = saved


def saved_in_use() -> bool:
    """True while the saved kernels run pyfaceau's kernels (numba not needed so far)."""
    return _saved is not None


def use_numba() -> None:
    """From now on, numba's dispatchers: numba imported (as :mod:`pyfaceau.startup`
    imports it), one made for every kernel defined from saved code, and put in place of
    the stand-ins in pyfaceau's modules (a kernel compiled later finds numba's objects
    among its globals). Does nothing when the saved kernels are not in use."""
    global _saved
    with _lock:
        if _saved is None:
            return
        from .startup import start_numba_quickly

        start_numba_quickly(lean_import=False)
        _saved = None
        replacements = {id(s): s.real() for s in _stand_ins}
        for name, module in list(sys.modules.items()):
            if not (name == "pyfaceau" or name.startswith("pyfaceau.")) or module is None:
                continue
            for attr, value in list(vars(module).items()):
                if isinstance(value, _StandIn):
                    setattr(module, attr, replacements.get(id(value), value.real()))


def compiled_versions() -> int:
    """How many kernel versions numba has compiled or loaded in this process."""
    return sum(len(getattr(d, "overloads", ())) for d in list(_dispatchers))


def save() -> None:
    """Save the machine code of every kernel this process compiled or loaded, for the
    next start (see :mod:`pyfaceau.jit_saved`); quietly nothing when it cannot."""
    if _saved is not None:
        return  # everything this process ran was saved already
    from . import jit_saved

    jit_saved.save(list(_dispatchers))


def in_kernel_callback(frame: Any) -> bool:
    """Whether ``frame`` (a signal handler's) runs inside a kernel's call back into
    Python: ``_numba_unpickle`` (numba's, or :mod:`pyfaceau.jit_saved`'s stand-in), which
    a compiled kernel calls for a constant as it returns an array. An exception raised
    there unwinds through numba's C code, which drops it or turns it into a
    ``SystemError``, so a signal handler must not raise in it (``Ctrl-C`` was ignored or
    reported as an internal error)."""
    while frame is not None:
        if frame.f_code.co_name == "_numba_unpickle":
            return True
        frame = frame.f_back
    return False
