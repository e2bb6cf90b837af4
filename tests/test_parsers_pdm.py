"""Strict readers of OpenFace's PDM and triangulation files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from pyfaceau.errors import ModelFileError
from pyfaceau.modelstore import resolve
from pyfaceau.parsers.pdm import read_pdm
from pyfaceau.parsers.triangulation import read_triangulation, read_triangulations

PDM_68 = "model/pdms/In-the-wild_aligned_PDM_68.txt"
PDM_68_AU = "AU_predictors/In-the-wild_aligned_PDM_68.txt"
TRIS_FULL = "AU_predictors/tris_68_full.txt"
TRIS_VIEWS = "model/tris_68.txt"


def test_face_pdm_shapes_and_values() -> None:
    pdm = read_pdm(resolve(PDM_68))
    assert pdm.mean_shape.shape == (204, 1) and pdm.mean_shape.dtype == np.float32
    assert pdm.princ_comp.shape == (204, 34) and pdm.princ_comp.dtype == np.float32
    assert pdm.eigen_values.shape == (34,) and pdm.eigen_values.dtype == np.float32
    # First and last values as printed in the file, rounded to float32 like OpenFace.
    assert pdm.mean_shape[0, 0] == np.float32(-73.393523)
    assert pdm.mean_shape[68, 0] == np.float32(-29.801432)  # y_0
    assert pdm.princ_comp[0, 0] == np.float32(-0.007395)
    assert pdm.eigen_values[0] == np.float32(826.213804)
    # Eigenvalues are sorted variances.
    assert np.all(np.diff(pdm.eigen_values) <= 0)
    # Principal components are orthonormal columns (to the file's 6 decimals).
    gram = pdm.princ_comp.astype(np.float64).T @ pdm.princ_comp.astype(np.float64)
    np.testing.assert_allclose(gram, np.eye(34), atol=1e-4)


def test_au_copy_of_pdm_is_identical() -> None:
    a = read_pdm(resolve(PDM_68))
    b = read_pdm(resolve(PDM_68_AU))
    np.testing.assert_array_equal(a.mean_shape, b.mean_shape)
    np.testing.assert_array_equal(a.princ_comp, b.princ_comp)
    np.testing.assert_array_equal(a.eigen_values, b.eigen_values)


@pytest.mark.parametrize(
    "relpath, n3, m",
    [
        ("model/model_inner/pdms/pdm_51_inner.txt", 153, 32),
        ("model/model_eye/pdms/pdm_28_eye_3D_closed.txt", 84, 10),
        ("model/pdms/pdm_68_aligned_menpo.txt", 204, 30),
    ],
)
def test_other_pdms(relpath: str, n3: int, m: int) -> None:
    pdm = read_pdm(resolve(relpath))
    assert pdm.mean_shape.shape == (n3, 1)
    assert pdm.princ_comp.shape == (n3, m)
    assert pdm.eigen_values.shape == (m,)


def test_triangulations() -> None:
    tris = read_triangulation(resolve(TRIS_FULL))
    assert tris.shape == (111, 3) and tris.dtype == np.int32
    np.testing.assert_array_equal(tris[0], [58, 67, 59])
    np.testing.assert_array_equal(tris[-1], [64, 65, 63])
    views = read_triangulations(resolve(TRIS_VIEWS))
    assert [v.shape[0] for v in views] == [97, 97, 82, 31, 97, 82, 31]
    assert all(v.shape[1] == 3 and v.min() >= 0 and v.max() < 68 for v in views)


def _truncated_copy(src: Path, dst: Path, fraction: float) -> Path:
    text = src.read_text()
    dst.write_text(text[: int(len(text) * fraction)])
    return dst


@pytest.mark.parametrize("fraction", [0.0, 0.3, 0.7, 0.999])
def test_truncated_pdm_raises_naming_file(tmp_path: Path, fraction: float) -> None:
    bad = _truncated_copy(resolve(PDM_68), tmp_path / "cut_pdm.txt", fraction)
    with pytest.raises(ModelFileError, match="cut_pdm.txt"):
        read_pdm(bad)


def test_truncated_triangulation_raises_naming_file(tmp_path: Path) -> None:
    bad = _truncated_copy(resolve(TRIS_FULL), tmp_path / "cut_tris.txt", 0.5)
    with pytest.raises(ModelFileError, match="cut_tris.txt"):
        read_triangulation(bad)
    bad_views = _truncated_copy(resolve(TRIS_VIEWS), tmp_path / "cut_views.txt", 0.5)
    with pytest.raises(ModelFileError, match="cut_views.txt"):
        read_triangulations(bad_views)


def test_wrong_files_raise() -> None:
    # A triangulation is not a PDM, and a PDM is not a triangulation.
    with pytest.raises(ModelFileError, match="tris_68_full.txt"):
        read_pdm(resolve(TRIS_FULL))
    with pytest.raises(ModelFileError, match="In-the-wild_aligned_PDM_68.txt"):
        read_triangulation(resolve(PDM_68))
    # The multi-view file read as a single triangulation has trailing data.
    with pytest.raises(ModelFileError, match="tris_68.txt"):
        read_triangulation(resolve(TRIS_VIEWS))


def test_corrupt_values_raise(tmp_path: Path) -> None:
    text = resolve(PDM_68).read_text()
    bad = tmp_path / "nan_pdm.txt"
    bad.write_text(text.replace("-73.393523", "abc", 1))
    with pytest.raises(ModelFileError, match="nan_pdm.txt"):
        read_pdm(bad)
    extra = tmp_path / "extra_pdm.txt"
    extra.write_text(text + "\n1 2 3\n")
    with pytest.raises(ModelFileError, match="extra_pdm.txt"):
        read_pdm(extra)
    neg = tmp_path / "neg_pdm.txt"
    neg.write_text(text.replace("826.213804", "-826.213804", 1))
    with pytest.raises(ModelFileError, match="neg_pdm.txt"):
        read_pdm(neg)


def test_missing_file_raises(tmp_path: Path) -> None:
    with pytest.raises(ModelFileError, match="nothere.txt"):
        read_pdm(tmp_path / "nothere.txt")
