"""AU model files, geometry descriptor, post-processing and the AU back end on its own.

The back-end test feeds OpenFace's own HOG output for default.wmv (``default.hog``, HOG
of OpenFace's aligned faces) and the geometry from ``calc_params`` on the reference
landmarks through :class:`AUAnalyser`, and compares the finalized AUs with OpenFace's CSV.
"""

from __future__ import annotations

import shutil
import struct

import numpy as np
import pytest

from conftest import OPENFACE_DIR, REFERENCE, load_reference, reference_landmarks
from pyfaceau.au import AUAnalyser, load_au_models, predict_static_aus
from pyfaceau.au.postprocess import dynamic_offsets, offline_intensity, offline_presence
from pyfaceau.errors import InputError, ModelFileError
from pyfaceau.features.geometry import geometry_descriptor, geometry_descriptors
from pyfaceau.output.hog_file import read_hog_file
from pyfaceau.modelstore.store import resolve
from pyfaceau.parsers.au_models import (
    SVM_DYNAMIC,
    SVM_STATIC,
    SVR_DYNAMIC,
    SVR_STATIC,
    read_au_list,
    read_au_predictor,
    read_main_au_file,
)
from pyfaceau.pdm import calc_params, load_pdm

AU_DIR = OPENFACE_DIR / "AU_predictors"
INTENSITY = ("AU01 AU02 AU04 AU05 AU06 AU07 AU09 AU10 AU12 AU14 AU15 AU17 AU20 AU23 AU25 "
             "AU26 AU45").split()
PRESENCE = INTENSITY[:15] + ["AU26", "AU28", "AU45"]

#: Issue acceptance thresholds.
MIN_R = 0.99  # Pearson r of every AUxx_r whose reference std > MIN_STD_FOR_R
MIN_STD_FOR_R = 0.05
MAX_MAE = 0.05
MIN_PRESENCE_AGREEMENT = 0.98


@pytest.fixture(scope="module")
def dynamic_models():
    return load_au_models()


@pytest.fixture(scope="module")
def static_models():
    return load_au_models(dynamic=False)


# -- parsers ---------------------------------------------------------------------------
def test_main_files_and_lists():
    main = read_main_au_file(AU_DIR / "main_dynamic_svms.txt")
    assert main.au_lists == (AU_DIR / "AU_all_best.txt",)
    assert main.pdm == AU_DIR / "In-the-wild_aligned_PDM_68.txt"
    assert main.triangulation == AU_DIR / "tris_68_full.txt"
    assert read_main_au_file(AU_DIR / "main_static_svms.txt").au_lists == (
        AU_DIR / "AU_all_static.txt",
    )
    for name in ("AU_all_best.txt", "AU_all_static.txt"):
        entries = read_au_list(AU_DIR / name)
        assert len(entries) == 35
        assert [e.names for e in entries[:18]] == [(n,) for n in PRESENCE]
        assert [e.names for e in entries[18:]] == [(n,) for n in INTENSITY]
        assert all(e.location.is_file() for e in entries)


@pytest.mark.parametrize(
    "rel, marker, cutoff",
    [
        ("svr_combined/AU_1_dynamic_intensity_comb.dat", SVR_DYNAMIC, 0.55),
        ("svr_combined/AU_4_static_intensity_comb.dat", SVR_STATIC, None),
        ("svm_combined/AU_1_dynamic.dat", SVM_DYNAMIC, None),
        ("svm_combined/AU_4_static.dat", SVM_STATIC, None),
    ],
)
def test_predictor_files(rel, marker, cutoff):
    p = read_au_predictor(AU_DIR / rel, ("AUxx",))
    assert p.marker == marker
    assert p.means.shape == (4702,) and p.support_vectors.shape == (4702, 1)
    assert p.bias.shape == (1,)
    assert p.cutoff == (pytest.approx(cutoff) if cutoff is not None else None)
    if p.is_svm:
        assert {p.pos_class, p.neg_class} == {0.0, 1.0}
    else:
        assert p.pos_class is None and p.neg_class is None


def test_truncated_and_wrong_files_raise_naming_the_file(tmp_path):
    src = AU_DIR / "svr_combined/AU_1_dynamic_intensity_comb.dat"
    data = src.read_bytes()
    for cut in (2, 20, len(data) // 2, len(data) - 4):
        bad = tmp_path / f"cut{cut}.dat"
        bad.write_bytes(data[:cut])
        with pytest.raises(ModelFileError, match=f"cut{cut}.dat"):
            read_au_predictor(bad, ("AU01",))
    extra = tmp_path / "extra.dat"
    extra.write_bytes(data + b"\0\0\0\0")
    with pytest.raises(ModelFileError, match="extra.dat.*unexpected data"):
        read_au_predictor(extra, ("AU01",))
    unknown = tmp_path / "marker3.dat"
    unknown.write_bytes(struct.pack("<i", 3) + data[4:])
    with pytest.raises(ModelFileError, match="marker3.dat.*unknown predictor marker 3"):
        read_au_predictor(unknown, ("AU01",))
    with pytest.raises(ModelFileError, match="In-the-wild_aligned_PDM_68.txt"):
        read_au_predictor(AU_DIR / "In-the-wild_aligned_PDM_68.txt", ("AU01",))
    with pytest.raises(ModelFileError, match="AU_1_static.dat.*AU list names 2"):
        read_au_predictor(AU_DIR / "svm_combined/AU_1_static.dat", ("AU01", "AU02"))
    with pytest.raises(ModelFileError, match="main_dynamic_svms.txt.*unknown module"):
        bad_main = tmp_path / "main_dynamic_svms.txt"
        bad_main.write_text("AUPredictor AU_all_best.txt\nFoo bar.txt\n")
        read_main_au_file(bad_main)
    with pytest.raises(ModelFileError, match="AU_all_best.txt.*unknown module"):
        read_main_au_file(AU_DIR / "AU_all_best.txt")
    bad_list = tmp_path / "list.txt"
    bad_list.write_text("svm_combined/AU_1_static.dat\n")
    with pytest.raises(ModelFileError, match="list.txt.*line 1"):
        read_au_list(bad_list)


def test_altered_or_missing_model_copy_is_refused(tmp_path):
    copy = tmp_path / "models"
    shutil.copytree(AU_DIR, copy / "AU_predictors")
    victim = copy / "AU_predictors/svr_combined/AU_12_static_intensity_comb.dat"
    victim.chmod(0o644)
    victim.write_bytes(victim.read_bytes()[:-8])
    with pytest.raises(ModelFileError, match="AU_12_static_intensity_comb.dat.*truncated"):
        load_au_models(copy)
    victim.unlink()
    with pytest.raises(ModelFileError, match="AU_12_static_intensity_comb.dat.*not found"):
        load_au_models(copy)


# -- models ----------------------------------------------------------------------------
def test_load_dynamic_models(dynamic_models):
    m = dynamic_models
    assert m.dynamic and m.n_features == 4702
    assert list(m.intensity_names) == INTENSITY
    assert list(m.presence_names) == PRESENCE
    assert (m.svr_static.size, m.svr_dynamic.size) == (6, 11)
    assert (m.svm_static.size, m.svm_dynamic.size) == (8, 10)
    cut = dict(zip(m.intensity_names, m.intensity_cutoffs))
    assert cut["AU01"] == pytest.approx(0.55) and cut["AU17"] == pytest.approx(0.2)
    assert np.isnan(cut["AU04"]) and np.isnan(cut["AU12"])
    assert m.pdm_path.name == "In-the-wild_aligned_PDM_68.txt"


def test_load_static_models_and_predict_one_image(static_models):
    m = static_models
    assert not m.dynamic and not m.has_dynamic
    assert list(m.intensity_names) == INTENSITY and list(m.presence_names) == PRESENCE
    assert np.isnan(m.intensity_cutoffs).all()
    hog, geom = np.full(4464, 0.05), np.linspace(-2.0, 2.0, 238)
    out = predict_static_aus(m, hog, geom)
    assert out.intensity.shape == (17,) and out.presence.shape == (18,)
    # the models on [HOG as float32, geometry], intensities clipped to [0, 5] (OpenFace
    # for images); some raw predictions here are negative, so the clip is exercised
    raw, presence = m.predict(np.concatenate([hog.astype(np.float32), geom])[None, :])
    assert (raw[0] < 0).any()
    np.testing.assert_array_equal(out.intensity, np.clip(raw[0], 0.0, 5.0))
    np.testing.assert_array_equal(out.presence, presence[0])
    with pytest.raises(InputError, match="dynamic"):
        predict_static_aus(load_au_models(), np.zeros(4464), np.zeros(238))


def test_geometry_descriptor():
    pdm = load_pdm(resolve("AU_predictors/In-the-wild_aligned_PDM_68.txt"))
    p = np.linspace(-3, 3, 34) + 1e-9  # the 1e-9 is lost to float32, as in OpenFace
    g = geometry_descriptor(pdm, p)
    p32 = p.astype(np.float32).astype(np.float64)
    assert g.shape == (238,) and g.dtype == np.float64
    np.testing.assert_array_equal(g[204:], p32)
    np.testing.assert_allclose(g[:204], pdm.princ_comp.astype(np.float64) @ p32, rtol=1e-12)
    np.testing.assert_allclose(geometry_descriptors(pdm, np.stack([p, p]))[1], g, rtol=1e-13)
    with pytest.raises(InputError, match="34 values"):
        geometry_descriptor(pdm, np.zeros(30))


# -- post-processing -------------------------------------------------------------------
def test_offline_intensity_shift_clip_smooth():
    raw = np.array([[0.5], [1.0], [2.0], [9.0], [0.0], [3.0]])
    ok = np.array([True, True, True, True, False, True])
    # sorted good values: 0.5 1 2 3 9 ; cutoff 0.5 -> index int(5 * 0.5) = 2 -> offset 2
    assert dynamic_offsets(raw, ok, np.array([0.5]))[0] == 2.0
    out = offline_intensity(raw, ok, np.array([0.5]), dynamic=True)
    shifted = np.array([0.0, 0.0, 0.0, 5.0, 0.0, 1.0])  # clipped to [0, 5], failed -> 0
    expected = shifted.copy()
    expected[1:-1] = (shifted[:-2] + shifted[1:-1] + shifted[2:]) / 3
    np.testing.assert_array_equal(out[:, 0], expected)
    assert out[4, 0] > 0  # a failed frame next to tracked ones is smoothed, as in OpenFace
    # static (NaN) and -1 cut-offs, and dynamic=False: no shift
    for cut, dyn in ((np.nan, True), (-1.0, True), (0.5, False)):
        out = offline_intensity(raw, ok, np.array([cut]), dynamic=dyn)
        assert out[0, 0] == 0.5
    assert offline_intensity(np.zeros((2, 1)) + 1, np.ones(2, bool), None).tolist() == [[1], [1]]


def test_offline_presence_window_of_seven():
    raw = np.zeros((10, 1))
    raw[[2, 4, 5, 6]] = 1
    out = offline_presence(raw)
    # frames 0-2 and 7-9 keep their values; frame i in 3..6 is mean(raw[i-3:i+4]) >= 0.5
    expected = raw[:, 0].copy()
    for i in range(3, 7):
        expected[i] = float(raw[i - 3 : i + 4, 0].mean() >= 0.5)
    np.testing.assert_array_equal(out[:, 0], expected)
    short = np.array([[1.0], [0.0], [1.0], [0.0], [1.0], [0.0]])
    np.testing.assert_array_equal(offline_presence(short), short)


# -- the session -----------------------------------------------------------------------
def test_failed_frames_and_median_schedule(dynamic_models):
    a = AUAnalyser(dynamic_models)
    rng = np.random.default_rng(0)
    hog = rng.uniform(0, 0.3, 4464)
    geom = rng.normal(0, 3, 238)
    out = a.add_frame(None, None, False, 0.0)  # failed first frame
    assert not out.intensity.any() and not out.presence.any()
    med = a.median()
    # empty histograms: the first bin's centre, negative HOG medians set to 0
    assert (med[:4464] == 0).all()
    np.testing.assert_allclose(med[4464:], -60 + 0.006)
    a.add_frame(hog, geom, True, 0.1)  # frame 2: even, medians not updated
    np.testing.assert_array_equal(a.median(), med)
    a.add_frame(hog, geom, True, 0.2)  # frame 3: odd, first descriptor added
    np.testing.assert_array_equal(a.median()[4464:], geom)
    res = a.finalize()
    assert res.intensity.shape == (3, 17) and res.presence.shape == (3, 18)
    assert res.success.tolist() == [False, True, True]
    assert list(res.columns())[:2] == ["AU01_r", "AU02_r"]
    with pytest.raises(InputError, match="hog has 10 values"):
        a.add_frame(np.zeros(10), geom, True, 0.3)


def _default_inputs():
    ref = load_reference("default")
    hog = read_hog_file(REFERENCE / "default.hog")
    assert hog.features.shape == (len(ref), 12, 12, 31)
    pdm = load_pdm(resolve("AU_predictors/In-the-wild_aligned_PDM_68.txt"))
    lms = reference_landmarks(ref)
    ok = ref["success"].to_numpy() > 0
    params = np.zeros((len(ref), 34))
    for i in np.flatnonzero(ok):
        params[i] = calc_params(pdm, lms[i])[1]
    return ref, hog.features.reshape(len(ref), -1), geometry_descriptors(pdm, params), ok


def test_backend_reproduces_openface_on_default_video(dynamic_models):
    ref, hogs, geoms, ok = _default_inputs()
    a = AUAnalyser(dynamic_models)
    for i in range(len(ref)):
        a.add_frame(hogs[i], geoms[i], bool(ok[i]), float(ref["timestamp"].iloc[i]))
    res = a.finalize()
    lines = [f"{'AU':<8}{'ref std':>9}{'r':>9}{'MAE':>8}{'max':>8}"]
    failures = []
    for k, name in enumerate(res.intensity_names):
        r_ref = ref[f"{name}_r"].to_numpy()
        ours = res.intensity[:, k]
        err = np.abs(ours - r_ref)
        corr = np.corrcoef(ours, r_ref)[0, 1] if r_ref.std() > 0 else np.nan
        lines.append(f"{name}_r  {r_ref.std():9.4f}{corr:9.5f}{err.mean():8.4f}{err.max():8.4f}")
        if r_ref.std() > MIN_STD_FOR_R and not corr >= MIN_R:
            failures.append(f"{name}_r r={corr:.4f}")
        if err.mean() > MAX_MAE:
            failures.append(f"{name}_r MAE={err.mean():.4f}")
    for k, name in enumerate(res.presence_names):
        agree = float((res.presence[:, k] == ref[f"{name}_c"].to_numpy()).mean())
        lines.append(f"{name}_c  agreement {agree:.4f}")
        if agree < MIN_PRESENCE_AGREEMENT:
            failures.append(f"{name}_c agreement={agree:.4f}")
    print("\n" + "\n".join(lines))
    assert not failures, "; ".join(failures)


def test_only_the_first_tracked_frames_are_repredicted(dynamic_models):
    m = dynamic_models
    rng = np.random.default_rng(5)
    n = 9
    hogs = rng.uniform(0, 0.3, (n, 4464)).astype(np.float32)
    geoms = rng.normal(0, 3, (n, 238))
    ok = np.array([True, False, True, True, True, False, True, True, True])
    a = AUAnalyser(m, max_init_frames=3)
    online = [a.add_frame(hogs[i], geoms[i], ok[i], i / 30) for i in range(n)]
    reg = np.stack([o.intensity for o in online])
    cls = np.stack([o.presence for o in online])
    assert not reg[~ok].any() and not cls[~ok].any()
    # PostprocessPredictions: the first 3 tracked frames (0, 2, 3) with the final medians
    x = np.concatenate([hogs.astype(np.float64), geoms], axis=1)
    first = [0, 2, 3]
    reg[first], cls[first] = m.predict(x[first], a.median())
    res = a.finalize()
    np.testing.assert_allclose(
        res.intensity, offline_intensity(reg, ok, m.intensity_cutoffs), rtol=0, atol=1e-12
    )
    np.testing.assert_array_equal(res.presence, offline_presence(cls))


def test_static_models_on_a_video_skip_repredicting_and_shifting(static_models):
    rng = np.random.default_rng(6)
    a = AUAnalyser(static_models)
    hogs = rng.uniform(0, 0.3, (5, 4464))
    geoms = rng.normal(0, 3, (5, 238))
    online = np.stack([a.add_frame(hogs[i], geoms[i], True).intensity for i in range(5)])
    res = a.finalize()
    np.testing.assert_allclose(res.intensity, offline_intensity(online, np.ones(5, bool), None))
