"""Output files: checked before the work, written atomically, never left half-written.

:func:`check_output_path` finds, before the first frame, every reason the output could not
be written at the end (a folder, an unwritable place, a name too long, an input given as
the output). :func:`atomic_output` writes to a uniquely named temporary file in the target
folder and renames it into place only when complete: an existing file is replaced only by
a complete one, two runs writing the same path leave the file of the last to finish, and
the temporary file is removed on every failure (an exception, Ctrl-C, SIGTERM with
:func:`stop_on_signals`, a full disk or a file-size limit: Python ignores SIGXFSZ, so
the write fails with ``EFBIG`` instead of killing the process).
"""

from __future__ import annotations

import errno
import glob
import os
import shutil
import signal
import stat
import tempfile
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any, Callable, Iterable, Iterator

from ..errors import InputError

__all__ = [
    "TEMP_SUFFIX",
    "StagedOutputs",
    "Terminated",
    "signals_deferred",
    "atomic_output",
    "check_output_folder",
    "check_output_path",
    "STALE_TEMP_SECONDS",
    "remove_stale_temps",
    "remove_temps",
    "stale_temps",
    "temp_dir",
    "temp_glob",
    "stop_on_signals",
]

#: Suffix of the temporary file; its name is ``.<up to 40 characters of the name>.<random>.part``
#: so that it stays short whatever the output's name.
TEMP_SUFFIX = ".part"
_TEMP_NAME_CHARS = 40


class Terminated(BaseException):
    """Raised in the main thread by SIGTERM (see :func:`stop_on_signals`), so that
    ``finally`` blocks remove temporary files; a BaseException like KeyboardInterrupt."""


def _temp_prefix(out: Path) -> str:
    return "." + out.name[:_TEMP_NAME_CHARS] + "."


def temp_glob(output: str | os.PathLike) -> str:
    """The glob pattern, in ``output``'s folder, of the temporary files that
    :func:`atomic_output` makes for ``output`` (to find those a killed process left)."""
    return glob.escape(_temp_prefix(Path(output))) + "*" + TEMP_SUFFIX


def temp_dir(output: str | os.PathLike) -> Path:
    """A new temporary folder beside ``output``, named as :func:`atomic_output` names
    ``output``'s temporary files (so :func:`temp_glob` finds it too)."""
    out = Path(output)
    return Path(tempfile.mkdtemp(prefix=_temp_prefix(out), suffix=TEMP_SUFFIX, dir=out.parent))


def stale_temps(output: str | os.PathLike, older_than: float) -> list[Path]:
    """The temporary files and folders of ``output`` (:func:`atomic_output`'s,
    :func:`temp_dir`'s: ``.NAME.RANDOM.part``, beside it or beside a symbolic link's
    target) that a killed writer left behind: not modified for ``older_than`` seconds (a
    younger one may belong to a run still writing)."""
    out = _written_path(Path(os.path.abspath(output)))
    if not out.parent.is_dir():
        return []
    now = time.time()
    found = []
    for p in out.parent.glob(temp_glob(out)):
        try:
            if now - _newest_mtime(p) > older_than:
                found.append(p)
        except OSError:
            continue
    return found


#: A temporary file or folder untouched for this long (seconds) is a killed run's.
STALE_TEMP_SECONDS = 600.0


def remove_stale_temps(output: str | os.PathLike, older_than: float = STALE_TEMP_SECONDS) -> None:
    """Remove :func:`stale_temps` (a killed run's partial outputs, which may be large)."""
    remove_temps(stale_temps(output, older_than))


def remove_temps(parts: Iterable[Path]) -> None:
    """Remove temporary files and folders (a folder with what is in it; a link itself)."""
    for part in parts:
        if part.is_dir() and not part.is_symlink():
            shutil.rmtree(part, ignore_errors=True)
        else:
            part.unlink(missing_ok=True)


def _newest_mtime(path: Path) -> float:
    """The latest modification time of ``path`` and, for a folder, of everything in it
    (a folder's own time stops changing once its entries exist)."""
    newest = path.stat().st_mtime
    if path.is_dir():
        for dirpath, dirnames, filenames in os.walk(path):
            for name in (*dirnames, *filenames):
                try:
                    newest = max(newest, os.stat(os.path.join(dirpath, name)).st_mtime)
                except OSError:
                    continue
    return newest


def _same_file(a: Path, b: Path) -> bool:
    try:
        return a.exists() and b.exists() and os.path.samefile(a, b)
    except OSError:
        return False


def check_output_path(
    output: str | os.PathLike, inputs: Iterable[str | os.PathLike | None] = (), *,
    special_files: bool = False,
) -> Path:
    """Check that ``output`` can be written, before any work is done.

    Creates the output's folder if needed and creates and removes a temporary file there,
    as :func:`atomic_output` will.

    Parameters
    ----------
    output : the file to write.
    inputs : files or folders read by the run (None entries are ignored); ``output`` must
        be none of them.
    special_files : a FIFO or a device is written as it is (a stream of lines into a
        named pipe, ``/dev/stdout``) instead of refused.

    Returns
    -------
    The path the bytes will go to: ``output``, or a symbolic link's target.

    Raises
    ------
    InputError
        One line: ``output`` is a folder, not a regular file (a FIFO, a device), one of
        ``inputs`` or an image of an input folder, has a name longer than the file
        system allows, or its folder cannot be created or written.
    """
    inputs = list(inputs)  # read twice below
    raw = os.fsdecode(output)
    out = Path(raw)
    if raw.endswith(("/", os.sep)):  # Path drops the slash that says "a folder"
        raise InputError(f"{raw}: names a folder; give a file name for the output (-o FILE.csv)")
    folder = out.parent
    try:
        name_max = os.pathconf(folder if folder.is_dir() else ".", "PC_NAME_MAX")
    except (OSError, ValueError):
        name_max = 255
    if len(os.fsencode(out.name)) > name_max:
        raise InputError(
            f"{out.name[:40]}...: output name is {len(os.fsencode(out.name))} bytes long, "
            f"the file system allows {name_max}"
        )
    try:
        is_dir = out.is_dir()
    except OSError as exc:
        raise InputError(f"{out}: cannot be written ({_reason(exc)})") from None
    if is_dir:
        raise InputError(f"{out}: is a folder; give a file name for the output (-o FILE.csv)")
    special = out.exists() and not out.is_file()
    if special and not special_files:  # a FIFO, a device: never replaced by a file
        raise InputError(f"{out}: not a regular file; give a file name for the output")
    _refuse_inputs(out, inputs, "output file")
    for src in inputs:
        source = Path(src) if src is not None else None
        if source is not None and source.is_dir() and out.is_file() \
                and _same_file(out.parent, source) and _is_image(out):
            raise InputError(f"{out}: an image of the input folder {source}; choose another "
                             "output file")
    if special:
        return out
    out = _written_path(out)
    folder = out.parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=_temp_prefix(out), suffix=TEMP_SUFFIX)
    except OSError as exc:
        raise InputError(f"{out}: cannot be written ({_reason(exc)})") from None
    os.close(fd)
    os.unlink(tmp)
    return out


def check_output_folder(
    folder: str | os.PathLike, inputs: Iterable[str | os.PathLike | None] = ()
) -> Path:
    """:func:`check_output_path` for a folder of outputs (the aligned faces): not a file,
    not one of ``inputs`` (an image folder would take the faces as frames), creatable and
    writable. Returns ``folder`` as a Path."""
    out = Path(folder)
    if out.exists() and not out.is_dir():
        raise InputError(f"{out}: not a folder; give a folder for the aligned faces")
    _refuse_inputs(out, inputs, "folder")
    # writable there (the folder itself is made when the outputs are moved into it)
    check_output_path(out / "frame_det_00_000001.bmp" if out.is_dir() else out)
    return out


def _refuse_inputs(out: Path, inputs: Iterable[str | os.PathLike | None], what: str) -> None:
    for src in inputs:
        if src is not None and (_same_file(out, Path(src))
                                or out.absolute() == Path(src).absolute()):
            raise InputError(f"{out}: is an input of this run; choose another {what}")


def _is_image(path: Path) -> bool:
    """Whether OpenCV reads ``path`` as an image (a frame of an image folder)."""
    import cv2

    from ..opencv_io import opencv_path

    with opencv_path(path) as name:  # any file name (the binding crashes on some)
        return bool(cv2.haveImageReader(name))


def _written_path(out: Path) -> Path:
    """Where writing ``out`` puts the bytes: a symbolic link's target (the link stays a
    link), else ``out``."""
    return Path(os.path.realpath(out)) if out.is_symlink() else out


def _mode_for(out: Path) -> int:
    try:
        return stat.S_IMODE(os.stat(out).st_mode)
    except OSError:
        umask = os.umask(0)
        os.umask(umask)
        return 0o666 & ~umask


def _reason(exc: OSError) -> str:
    if exc.errno == errno.EFBIG:
        return "file size limit reached"
    if exc.errno in (errno.EEXIST, errno.ENOTDIR) and exc.filename:
        # mkdir over a file on the way: say which
        for parent in (Path(exc.filename), *Path(exc.filename).parents):
            if parent.exists() and not parent.is_dir():
                return f"{parent} is a file, not a folder"
    return exc.strerror or str(exc)


@contextmanager
def atomic_output(output: str | os.PathLike, mode: str = "w", **open_kwargs) -> Iterator[IO]:
    """Open a temporary file beside ``output``; on a normal exit, rename it to ``output``.

    Parameters
    ----------
    output : the file to write.
    mode : ``"w"`` (text) or ``"wb"``; ``open_kwargs`` as :func:`open` (e.g. ``newline``).

    Yields
    ------
    The open temporary file (``tempfile.mkstemp`` in the output's folder: unique per
    writer, so concurrent writers never mix their bytes).

    Raises
    ------
    InputError
        When the file cannot be created or written (the message names ``output`` and the
        reason, e.g. a full disk or the file-size limit); the temporary file is removed.
        Any other exception (or KeyboardInterrupt, :class:`Terminated`) also removes it
        and propagates unchanged.
    """
    out = _written_path(Path(output))
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=out.parent, prefix=_temp_prefix(out), suffix=TEMP_SUFFIX)
    except OSError as exc:
        raise InputError(f"{out}: cannot be written ({_reason(exc)})") from None
    try:
        try:
            with os.fdopen(fd, mode, **open_kwargs) as f:
                yield f
                f.flush()
                os.fsync(f.fileno())
            # mkstemp makes the file private (0600); the output gets the permissions of
            # the file it replaces, else the usual ones.
            os.chmod(tmp, _mode_for(out))
            os.replace(tmp, out)
        except OSError as exc:
            raise InputError(f"{out}: cannot be written ({_reason(exc)})") from None
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


class StagedOutputs:
    """Outputs beside the CSV (a file or a folder each) written under temporary folders
    and moved into place by :meth:`commit` only when the run is complete: a run that fails
    or is stopped leaves the earlier outputs as they were and no partial ones
    (:meth:`discard`).

    Parameters
    ----------
    finals : the final paths (None entries are ignored).
    anchor : one temporary folder beside this path for the outputs on its file system
        (a batch's, named after the CSV so that a killed run's is found); default, and
        for an output elsewhere (a symbolic link to another disk): one beside each.
    replace_folders : a folder output replaces the older folder (a batch's own); default:
        its files join the folder there, replacing those of the same names.
    """

    def __init__(self, finals: Iterable[str | os.PathLike | None], *,
                 anchor: str | os.PathLike | None = None, replace_folders: bool = False) -> None:
        self.replace_folders = replace_folders
        self._staged: dict[Path, tuple[Path, Path]] = {}  # final -> (temp folder, staged)
        #: The shared temporary folder (with ``anchor``), else None.
        self.folder = temp_dir(anchor) if anchor is not None else None
        final = None
        try:
            for final in finals:
                if final is None:
                    continue
                target = _written_path(Path(os.path.abspath(final)))
                target.parent.mkdir(parents=True, exist_ok=True)
                shared = self.folder is not None and (
                    os.stat(self.folder).st_dev == os.stat(target.parent).st_dev)
                folder = self.folder if shared else temp_dir(target)
                # a fixed name ("..", "." are names too), with the suffix writers go by
                self._staged[Path(final)] = (folder, folder / f"staged{target.suffix}")
        except OSError as exc:
            self.discard()
            raise InputError(f"{final}: cannot be written ({_reason(exc)})") from None

    def path(self, final: str | os.PathLike | None) -> Path | None:
        """Where ``final`` is written meanwhile (None for None)."""
        return None if final is None else self._staged[Path(final)][1]

    def add(self, final: str | os.PathLike, staged: str | os.PathLike) -> None:
        """One more file to move into place: ``staged``, written in the temporary folder
        of an output given at construction (on ``final``'s file system), goes to
        ``final`` (e.g. ``--split``'s per-person CSVs, named by the table)."""
        folders = {f for f, _ in self._staged.values()} | ({self.folder} - {None})
        if Path(staged).parent not in folders:
            raise ValueError(f"{staged}: not in a temporary folder of these outputs")
        self._staged[Path(final)] = (Path(staged).parent, Path(staged))

    def unstaged(self, text: str) -> str:
        """``text`` (an error message) with the temporary paths replaced by the final
        ones they stand for: a user never gave ``.name.abc123.part/staged.avi``."""
        for final, (_, staged) in self._staged.items():
            text = text.replace(str(staged), str(final))
        return text

    def commit(self) -> list[Path]:
        """Move every output written into place (a file through a symbolic link); returns
        the final paths of those moved. What is in the way of one (a folder where a file
        goes) is found before anything moves.

        Raises
        ------
        InputError
            An output cannot be moved into place; the message names those moved before.
        """
        ready = [(final, staged) for final, (_, staged) in self._staged.items()
                 if os.path.lexists(staged)]  # none: e.g. an input without frames, no HOG
        for final, staged in ready:
            self._check_move(final, staged)
        moved: list[Path] = []
        for final, staged in ready:
            try:
                self._move(final, staged)
            except OSError as exc:
                done = f"; already in place: {', '.join(map(str, moved))}" if moved else ""
                raise InputError(f"{final}: cannot be moved into place ({_reason(exc)}){done}") from None
            moved.append(final)
        self.discard()
        return moved

    def _check_move(self, final: Path, staged: Path) -> None:
        target = _written_path(final)
        if staged.is_dir() and target.is_dir() and not self.replace_folders:
            clashes = [e.name for e in staged.iterdir() if (target / e.name).is_dir()]
            if clashes:
                raise InputError(f"{target / clashes[0]}: a folder where this run writes a "
                                 "file; nothing was written")
        elif staged.is_dir() != target.is_dir() and os.path.lexists(target):
            what = "a folder" if target.is_dir() else "a file"
            raise InputError(f"{final}: {what} is in the way; nothing was written")

    def _move(self, final: Path, staged: Path) -> None:
        target = _written_path(final)
        if staged.is_dir() and target.is_dir() and not self.replace_folders:
            for entry in staged.iterdir():
                os.replace(entry, target / entry.name)
        elif staged.is_dir() and target.is_dir():  # the old folder goes once the new is in
            old = temp_dir(target)
            os.replace(target, old / "old")
            os.replace(staged, target)
            shutil.rmtree(old, ignore_errors=True)
        else:
            if staged.is_file():
                os.chmod(staged, _mode_for(target))
            os.replace(staged, target)

    def discard(self) -> None:
        """Remove the temporary folders and whatever is in them."""
        for folder in {f for f, _ in self._staged.values()} | ({self.folder} - {None}):
            shutil.rmtree(folder, ignore_errors=True)
        self._staged.clear()


def _raise_for_signal(signum: int, frame: Any) -> None:
    global _pending_signal
    if _in_kernel_callback is not None and _in_kernel_callback(frame):
        # raised inside numba's C code the exception would be lost: deliver the signal
        # again once the kernel has returned (a few microseconds)
        _pending_signal = signum
        threading.Timer(0.005, _deliver_again, (signum,)).start()
        return
    _pending_signal = None
    raise _exception_for(signum)


def _exception_for(signum: int) -> BaseException:
    return KeyboardInterrupt() if signum == signal.SIGINT else Terminated(f"signal {signum}")


def _deliver_again(signum: int) -> None:
    with _handlers_lock:  # not once the block has ended (its end raises it instead)
        if _pending_signal == signum and signal.getsignal(signum) is _raise_for_signal:
            signal.raise_signal(signum)


#: A signal put off while a kernel called back into Python, not yet raised.
_pending_signal: int | None = None
_handlers_lock = threading.Lock()
_in_kernel_callback: Callable[[Any], bool] | None = None


@contextmanager
def signals_deferred() -> Iterator[list[int]]:
    """Within the block, Ctrl-C and SIGTERM are recorded in the list it gives instead of
    stopping the block (for a few renames that must all happen once begun: a complete
    run's outputs moved into place). Only in the main thread; elsewhere it does nothing."""
    got: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield got
        return

    def record(signum: int, frame: Any) -> None:
        got.append(signum)

    previous: dict[int, Any] = {}
    try:
        for signum in (signal.SIGINT, signal.SIGTERM):
            if signal.getsignal(signum) not in (signal.SIG_IGN, None):
                previous[signum] = signal.signal(signum, record)
        yield got
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


@contextmanager
def stop_on_signals() -> Iterator[None]:
    """Within the block, Ctrl-C (SIGINT) raises KeyboardInterrupt and SIGTERM raises
    :class:`Terminated` in the main thread (for command-line use: SIGTERM's default
    action would end the process without removing temporary files), never inside a
    compiled kernel's call back into Python (:func:`pyfaceau.jit.in_kernel_callback`);
    the previous handlers are restored after. A signal the process ignores stays
    ignored; outside the main thread (where handlers cannot be set) it does nothing."""
    global _in_kernel_callback
    defaults = {signal.SIGINT: signal.default_int_handler, signal.SIGTERM: signal.SIG_DFL}
    previous: dict[int, Any] = {}
    try:
        for signum, default in defaults.items():
            if signal.getsignal(signum) is default:
                previous[signum] = signal.signal(signum, _raise_for_signal)
    except ValueError:  # not the main thread
        pass
    try:
        # after the handlers: this import takes ~80 ms, a stop then is handled too (no
        # kernel runs before it, so none can be in a callback)
        from ..jit import in_kernel_callback

        _in_kernel_callback = in_kernel_callback
        yield
    finally:
        global _pending_signal
        with _handlers_lock:
            for signum, handler in previous.items():
                signal.signal(signum, handler)
            pending, _pending_signal = _pending_signal, None
        if pending is not None and previous:  # came as the block ended: not lost
            raise _exception_for(pending)
