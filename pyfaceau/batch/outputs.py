"""The outputs a batch writes beside each CSV: the single command's ``--aligned``,
``--hog``, ``--tracked`` and ``--split``, with names derived from the CSV's.

For ``OUT/clip.csv`` (OpenFace's ``FeatureExtraction -out_dir`` names where it has them):

- ``--aligned``: ``OUT/clip_aligned/`` (the 112x112 faces, ``frame_det_00_000001.bmp``, ...);
- ``--hog``: ``OUT/clip.hog``;
- ``--tracked``: ``OUT/clip_tracked.avi`` (not OpenFace's ``clip.avi``, which would be the
  input itself when the output folder is the input's);
- ``--split``: ``OUT/clip_face0.csv``, ``OUT/clip_face1.csv``, ... one per person, beside
  ``clip.csv`` (kept: the batch's record of the input is written beside it).

A worker writes them into a temporary folder beside the CSV and moves them into place only
when the input is finished (:class:`Staged`), so an input that fails or
is stopped leaves none of them half-written; the record lists the files, and a later run
makes the input again if one is missing.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ..output.atomic import StagedOutputs

if TYPE_CHECKING:
    from ..output.writers import FrameWriters

__all__ = ["SideOutputs", "Staged"]


@dataclass(frozen=True)
class SideOutputs:
    """Which outputs beside the CSV a batch writes for every input."""

    aligned: bool = False
    hog: bool = False
    tracked: bool = False
    split: bool = False

    def __bool__(self) -> bool:
        return self.aligned or self.hog or self.tracked or self.split

    def fingerprint(self) -> list[str]:
        """The outputs asked for, by name (part of each input's record)."""
        return [name for name in ("aligned", "hog", "tracked", "split") if getattr(self, name)]

    def paths(self, output: str | os.PathLike) -> dict[str, Path]:
        """Where the aligned faces, the HOG file and the tracked video of ``output`` (the
        CSV) go, for those asked for."""
        out = Path(output)
        names = {
            "aligned": f"{out.stem}_aligned",
            "hog": f"{out.stem}.hog",
            "tracked": f"{out.stem}_tracked.avi",
        }
        return {k: out.with_name(v) for k, v in names.items() if getattr(self, k)}


class Staged:
    """The side outputs of one input while it is processed: written under a temporary
    folder beside the CSV (named as the CSV's temporary files: a killed run's is found by
    :func:`pyfaceau.batch.worker.stale_temp_files`), moved into place by :meth:`commit`,
    removed by :meth:`discard` (:class:`~pyfaceau.output.atomic.StagedOutputs`).

    Attributes
    ----------
    final : name -> final path (``aligned``, ``hog``, ``tracked``).
    """

    def __init__(self, outputs: SideOutputs, output: str | os.PathLike) -> None:
        out = Path(output)
        self.outputs = outputs
        self.output = out
        self.final = outputs.paths(out)
        self._files = (StagedOutputs(self.final.values(), anchor=out, replace_folders=True)
                       if outputs else None)

    @property
    def folder(self) -> Path | None:
        """The temporary folder (None when no side output is asked for)."""
        return self._files.folder if self._files is not None else None

    def staged(self, name: str) -> Path | None:
        """Where output ``name`` is written while the input is processed (None: not asked)."""
        if self._files is None or name not in self.final:
            return None
        return self._files.path(self.final[name])

    def writers(self, input_path: str | os.PathLike) -> "FrameWriters | None":
        """The frame writers of the aligned faces, HOG and tracked video, into the
        temporary folder (None when none is asked for)."""
        from ..pipeline.pipeline import side_writers

        return side_writers(input_path, self.staged("aligned"), self.staged("hog"),
                            self.staged("tracked"))

    def commit(self, table: object) -> list[Path]:
        """Write the per-person CSVs (``--split``) of ``table``, move everything into place
        beside the CSV (replacing older ones) and remove the temporary folder; returns
        the final paths."""
        if self._files is None:
            return []
        split: list[Path] = []
        if self.outputs.split:  # staged beside the others, moved with them
            from ..output.table import write_split_csvs

            assert self.folder is not None
            for staged in write_split_csvs(table, self.folder / self.output.name):
                split.append(self.output.with_name(staged.name))
                self._files.add(split[-1], staged)
        moved = self._files.commit()
        if self.outputs.split:
            from ..output.table import remove_stale_split_csvs

            remove_stale_split_csvs(self.output, split)  # an earlier run's other people
        return moved

    def discard(self) -> None:
        """Remove the temporary folder and whatever is still in it."""
        if self._files is not None:
            self._files.discard()
