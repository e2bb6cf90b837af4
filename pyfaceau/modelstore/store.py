"""Model manifest and resolver (see :mod:`pyfaceau.modelstore`)."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Iterable, Sequence

from ..errors import ModelFileError
from .cache import file_sha256

#: Model folders as every loader takes them: one folder, several (a sequence, or one
#: string joined with ``os.pathsep``), or None ($PYFACEAU_MODELS, then the user data folder).
ModelsArg = str | os.PathLike | Sequence[str | os.PathLike] | None

__all__ = [
    "ModelsArg",
    "ModelEntry",
    "MANIFEST",
    "StoreStatus",
    "check_store",
    "default_data_dir",
    "search_dirs",
    "resolve",
    "verify_file",
]

ENV_VAR = "PYFACEAU_MODELS"
FIX_HINT = (
    "run 'pyfaceau models download --accept-license' or 'pyfaceau models install DIR', "
    f"or point --models / {ENV_VAR} at a folder that has it"
)


@dataclass(frozen=True)
class ModelEntry:
    """One file of the manifest.

    Attributes
    ----------
    path : path relative to a models folder, with ``/`` (e.g. ``model/pdms/...``).
    sha256 : expected SHA-256, hex.
    size : expected size in bytes.
    group : ``"openface"`` (OpenFace 2.2.0 release files) or ``"onnx"`` (fast-path networks).
    """

    path: str
    sha256: str
    size: int
    group: str


def _load_manifest() -> dict[str, ModelEntry]:
    text = resources.files(__package__).joinpath("manifest.json").read_text()
    data = json.loads(text)
    return {e["path"]: ModelEntry(**e) for e in data["files"]}


#: Every known model file, by relative path.
MANIFEST: dict[str, ModelEntry] = _load_manifest()


def default_data_dir() -> Path:
    """The user data folder where ``pyfaceau models download/install`` put the files."""
    import platformdirs

    return Path(platformdirs.user_data_dir("pyfaceau", appauthor=False)) / "models"


def _split_dirs(value: ModelsArg) -> list[Path]:
    if value is None:
        return []
    if isinstance(value, (str, os.PathLike)):
        return [Path(p) for p in str(value).split(os.pathsep) if p]
    out: list[Path] = []
    for v in value:
        out.extend(_split_dirs(v))
    return out


def search_dirs(models: ModelsArg = None) -> list[Path]:
    """The folders searched, in order: ``models``, ``$PYFACEAU_MODELS``, the user data folder."""
    dirs = _split_dirs(models) + _split_dirs(os.environ.get(ENV_VAR)) + [default_data_dir()]
    seen: list[Path] = []
    for d in dirs:
        if d not in seen:
            seen.append(d)
    return seen


#: Suffix of the record written beside a model file made on the user's machine (the fast
#: path's RetinaFace, converted from its public PyTorch weights): JSON with the made file's
#: ``sha256`` and ``size``, its source's SHA-256 and the largest difference of its outputs
#: from the reference export's on the check image.
MADE_RECORD_SUFFIX = ".made.json"


def _made_copy(p: Path, entry: ModelEntry, size: int) -> bool:
    """Whether ``p`` is a file pyfaceau made and checked against the reference outputs, as
    its record says, unchanged since (:mod:`pyfaceau.modelstore.retinaface_convert`)."""
    if entry.path != "retinaface_mobilenet025.onnx":
        return False
    from . import retinaface_convert

    try:
        made = json.loads(p.with_name(p.name + MADE_RECORD_SUFFIX).read_text())
    except (OSError, ValueError):
        return False
    return (
        isinstance(made, dict)
        and isinstance(made.get("check_max_abs_difference"), (int, float))
        and made["check_max_abs_difference"] <= retinaface_convert.CHECK_TOLERANCE
        and made.get("size") == size
        and made.get("sha256") == file_sha256(p)
    )


def verify_file(path: str | os.PathLike, entry: ModelEntry) -> None:
    """Check ``path`` against its manifest entry; raise :class:`ModelFileError` if it differs.

    The SHA-256 is computed once per file and remembered while the file's status (size,
    mtime, ctime, inode) is unchanged (:func:`pyfaceau.modelstore.cache.file_sha256`). The
    fast path's RetinaFace may instead be the file pyfaceau made from its pinned PyTorch
    weights (``pyfaceau models download``), checked against the record written beside it.
    """
    p = Path(path)
    st = p.stat()
    if (st.st_size != entry.size or file_sha256(p) != entry.sha256) and _made_copy(
        p, entry, st.st_size
    ):
        return
    if st.st_size != entry.size:
        what = "truncated" if st.st_size < entry.size else "larger than expected"
        raise ModelFileError(
            f"{p}: model file is {what} ({st.st_size} bytes, expected {entry.size}); {FIX_HINT}"
        )
    if file_sha256(p) != entry.sha256:
        raise ModelFileError(
            f"{p}: model file is altered (SHA-256 differs from OpenFace 2.2.0's "
            f"{entry.sha256[:12]}...); {FIX_HINT}"
        )


def resolve(
    relpath: str,
    models: ModelsArg = None,
    *,
    verify: bool = True,
) -> Path:
    """Find a model file and verify it.

    Parameters
    ----------
    relpath : the file's manifest path, e.g. ``"AU_predictors/In-the-wild_aligned_PDM_68.txt"``
        or ``"pfld.onnx"``.
    models : folders to search first (a path, an ``os.pathsep``-separated string, or a list).
    verify : check size and SHA-256 against the manifest (hashes remembered per file
        status, see :func:`pyfaceau.modelstore.cache.file_sha256`).

    Returns
    -------
    Path of the first folder's copy of the file.

    Raises
    ------
    ModelFileError
        If no searched folder has the file (the message lists them) or the copy found is
        truncated or altered.
    """
    entry = MANIFEST.get(relpath)
    if entry is None:
        raise ModelFileError(f"'{relpath}' is not a pyfaceau model file")
    dirs = search_dirs(models)
    for d in dirs:
        candidate = d / relpath
        if candidate.is_file():
            if verify:
                verify_file(candidate, entry)
            return candidate
    searched = ", ".join(str(d) for d in dirs)
    raise ModelFileError(f"model file '{relpath}' not found (searched: {searched}); {FIX_HINT}")


@dataclass
class StoreStatus:
    """What :func:`check_store` found.

    Attributes
    ----------
    found : relative path -> the copy used (the first folder's), verified.
    missing : relative paths no searched folder has.
    damaged : relative path -> one-line reason (truncated, altered, unreadable).
    """

    found: dict[str, Path]
    missing: list[str]
    damaged: dict[str, str]

    @property
    def ok(self) -> bool:
        return not self.missing and not self.damaged


def check_store(
    models: ModelsArg = None,
) -> StoreStatus:
    """Find and verify (size and SHA-256) every file of the manifest, as :func:`resolve`
    would when a run needs it; a run uses the first folder's copy of each file."""
    status = StoreStatus({}, [], {})
    for rel, entry in MANIFEST.items():
        try:
            path = resolve(rel, models, verify=False)
        except ModelFileError:
            status.missing.append(rel)
            continue
        try:
            verify_file(path, entry)
        except ModelFileError as exc:
            status.damaged[rel] = str(exc).split("; ")[0]
        except OSError as exc:
            status.damaged[rel] = f"{path}: cannot be read ({exc.strerror or exc})"
        else:
            status.found[rel] = path
    return status


def resolve_many(
    relpaths: Iterable[str],
    models: ModelsArg = None,
) -> dict[str, Path]:
    """:func:`resolve` for several files, by relative path."""
    return {r: resolve(r, models) for r in relpaths}
