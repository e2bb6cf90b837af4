"""The top layer: Options, Pipeline, one session per input, one track per face."""

from __future__ import annotations

import re
import warnings

import cv2
import numpy as np
import pandas as pd
import pytest

from conftest import OPENFACE_DIR, REFERENCE, REPO, SAMPLES, load_reference
import pyfaceau
from pyfaceau import Options, Pipeline
from pyfaceau.errors import ClosedError, InputError, ModelFileError
from pyfaceau.output.table import write_csv

SEQUENCE = SAMPLES / "image_sequence"


@pytest.fixture(scope="module")
def fast_pipeline():
    with Pipeline(Options.fast(), threads=1) as pipe:
        yield pipe


def test_options_validate_and_normalise():
    o = Options.fast("svr", models=f"a{__import__('os').pathsep}b")
    assert o.mode == "fast" and o.refinement.value == "svr" and o.models == ("a", "b")
    assert Options().mode == "faithful" and Options.openface_csv("x.csv").mode == "csv"
    assert o.replace(threads=3).threads == 3 and o.threads is None
    for bad in (
        dict(refinement="svr"),  # refinement needs PFLD landmarks
        dict(landmarks="pfld"),  # PFLD needs RetinaFace
        dict(detector="haar"),
        dict(threads=0),
        dict(max_faces=0),
        dict(landmarks="csv"),  # without the CSV
        dict(detector="retinaface"),  # CLNF starts from MTCNN's boxes: not silently ignored
        dict(threads=True), dict(max_faces=True), dict(threads="2"),  # not whole numbers
        dict(strict="no"),  # a string is not a flag (it would have been truthy)
        dict(models=123), dict(au_model_list=123),
    ):
        with pytest.raises(InputError):
            Options(**bad)
    threads = Options(threads=np.int64(2)).threads
    assert threads == 2 and type(threads) is int
    assert Options(strict=np.True_).strict is True
    assert not Options().dynamic_for("image") and Options().dynamic_for("video")
    assert Options(au_models="static").dynamic_for("video") is False


def test_threads_do_not_change_the_output(tmp_path):
    """The stages of consecutive frames overlap on threads; the CSV is byte-identical."""
    written = []
    for threads in (1, 3):
        with Pipeline(Options.fast(), threads=threads) as pipe:
            out = tmp_path / f"t{threads}.csv"
            pipe.process(SEQUENCE, out)
            written.append(out.read_bytes())
    assert written[0] == written[1]


def test_stream_gives_complete_results(fast_pipeline):
    """Per-frame results of the streaming API: every field filled, no NaN on success."""
    frames = [cv2.imread(str(p)) for p in sorted(SEQUENCE.glob("*.jpg"))[:4]]
    results = list(fast_pipeline.stream(frames + [np.zeros_like(frames[0])]))
    assert [r.frame for r in results] == [1, 2, 3, 4, 5]
    for r in results[:4]:
        assert r.success and r.face_id == 0 and 0 < r.confidence <= 1
        for value, shape in ((r.landmarks, (68, 2)), (r.landmarks_3d, (68, 3)), (r.pose, (6,)),
                             (r.params_global, (6,)), (r.params_local, (34,)),
                             (r.au_intensity, (17,)), (r.au_presence, (18,))):
            assert value.shape == shape and np.isfinite(value).all()
        assert r.pose[2] > 100  # a face some 10s of cm from the camera (mm)
        assert set(r.aus()) == {f"{n}_r" for n in r.intensity_names} | {f"{n}_c" for n in r.presence_names}
    last = results[4]
    assert not last.success and (last.au_intensity == 0).all()


def test_each_stream_starts_fresh_and_takes_its_frame_numbers(fast_pipeline):
    """A new stream starts with new tracks and person normalisation (the same image gives
    the same online AUs in two streams), whatever timestamp and frame index it is given."""
    img = cv2.imread(str(sorted(SEQUENCE.glob("*.jpg"))[0]))
    a = fast_pipeline.open_stream().add(img)[0]
    b = fast_pipeline.open_stream().add(img, timestamp=1.5, frame_index=7)[0]
    np.testing.assert_array_equal(a.au_intensity, b.au_intensity)
    assert b.frame == 8 and b.timestamp == 1.5
    with pytest.raises(InputError):
        fast_pipeline.open_stream().add(img, frame_index="x")


def test_another_au_model_list_gives_its_columns(tmp_path):
    """OpenFace's DISFA models (12 AUs): the table's AU columns follow the loaded set, and
    the values are OpenFace's own with that set (tests/data/README.md), given OpenFace's
    landmarks."""
    disfa = OPENFACE_DIR / "AU_predictors" / "DISFA_dynamic_svms.txt"
    options = Options.openface_csv(REFERENCE / "image_sequence.csv", au_model_list=disfa)
    with Pipeline(options) as pipe:
        df = pipe.process(SEQUENCE, tmp_path / "disfa.csv")
    expected = pd.read_csv(REPO / "tests" / "data" / "image_sequence_disfa.csv")
    aus = [c for c in expected.columns if c.startswith("AU")]
    assert [c for c in df.columns if c.startswith("AU")] == aus
    header = (tmp_path / "disfa.csv").read_text().splitlines()[0].split(",")
    assert header[-len(aus):] == aus
    assert (df["success"].to_numpy() == expected["success"].to_numpy()).all()
    diff = np.abs(df[aus].to_numpy() - expected[aus].to_numpy())
    # the same tolerances as the default model set's back-end parity (0.01 printing,
    # landmarks recovered from 0.1 px): mean error per AU and the largest single one
    assert diff.mean(axis=0).max() <= 0.015, dict(zip(aus, diff.mean(axis=0).round(4)))
    assert diff.max() <= 0.05, dict(zip(aus, diff.max(axis=0).round(3)))
    # named as in OpenFace's release, the file is found in the model folders
    named = options.replace(au_model_list="AU_predictors/DISFA_dynamic_svms.txt")
    with Pipeline(named) as pipe:
        pd.testing.assert_frame_equal(pipe.process(SEQUENCE), df)


def test_unsupported_au_model_set_is_rejected_at_load(tmp_path):
    main = tmp_path / "main.txt"
    lst = tmp_path / "list.txt"
    src = OPENFACE_DIR / "AU_predictors"
    lst.write_text(f"{src / 'svr_combined' / 'AU_1_dynamic_intensity_comb.dat'} SMILE\n")
    main.write_text(f"AUPredictor {lst}\n")
    with pytest.raises(ModelFileError, match="AU names"):
        Pipeline(Options(au_model_list=main)).models.backend(True)


def test_deprecated_entry_points_warn_and_still_work(tmp_path):
    with pytest.warns(DeprecationWarning):
        front_end = pyfaceau.make_front_end("fast")
    with pytest.warns(DeprecationWarning):
        old = pyfaceau.process(SEQUENCE, front_end)
    with Pipeline(Options.fast()) as pipe:
        new = pipe.process(SEQUENCE)
    write_csv(old, tmp_path / "old.csv")
    write_csv(new, tmp_path / "new.csv")
    assert (tmp_path / "old.csv").read_bytes() == (tmp_path / "new.csv").read_bytes()


def test_a_closed_pipeline_refuses_work():
    pipe = Pipeline(Options.fast(), threads=1)
    img = cv2.imread(str(sorted(SEQUENCE.glob("*.jpg"))[0]))
    stream = pipe.open_stream()
    stream.add(img)
    pipe.close()
    for call in (lambda: pipe.process(SEQUENCE), pipe.open_stream, pipe.load,
                 lambda: stream.add(img)):  # a stream opened before close() too
        with pytest.raises(ClosedError, match="closed"):
            call()
    assert issubclass(ClosedError, RuntimeError)  # what code written before it caught


def test_wrong_arguments_give_one_line_errors(fast_pipeline, tmp_path):
    """pyfaceau's own error naming the argument, not a TypeError from deep inside."""
    img = cv2.imread(str(sorted(SEQUENCE.glob("*.jpg"))[0]))
    for call in (
        lambda: fast_pipeline.process(None),
        lambda: fast_pipeline.process(3),
        lambda: fast_pipeline.process(""),  # not the current folder
        lambda: fast_pipeline.process(SEQUENCE, on_result=5),
        lambda: list(fast_pipeline.stream(img)),  # one image is not a stream of them
        lambda: list(fast_pipeline.stream(5)),
        lambda: fast_pipeline.open_stream("a", "b"),
        lambda: fast_pipeline.open_stream(640, None),  # not silently ignored
        lambda: fast_pipeline.session("video", "a", 10),
        lambda: fast_pipeline.load(kind="movie"),
        lambda: fast_pipeline.live(-1),  # OpenCV's "any camera" crashes some back ends
        lambda: fast_pipeline.live(True),
        lambda: fast_pipeline.process(SEQUENCE, on_frame=1),  # before the first frame
        lambda: fast_pipeline.process(SEQUENCE, 3),  # an output path: not after the work
        lambda: fast_pipeline.process(SEQUENCE, ""),
        lambda: Options.openface_csv(None),
        lambda: Options.openface_csv(1),
        lambda: Options.openface_csv(REFERENCE / "default.csv", max_faces=2),
        lambda: Options(au_model_list=""),
        lambda: Options(refinement=None),  # not the refinement "none"
    ):
        with pytest.raises(InputError):
            call()
    assert not list(tmp_path.iterdir())
    # the options as a keyword, as the docstring's parameter name suggests
    assert Pipeline(options=Options.fast()).options.mode == "fast"
    # a submodule reached from the package before anything imported it
    import subprocess
    import sys

    code = "import pyfaceau; print(pyfaceau.errors.InputError.__name__, pyfaceau.output.__name__)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.split() == ["InputError", "pyfaceau.output"], out.stderr


def test_process_writes_bytes_paths_and_keeps_its_bits_whatever_the_blas_threads(
        fast_pipeline, tmp_path):
    """``output_csv`` as bytes, as input paths; the offline re-prediction runs with BLAS
    on one thread too, so a caller's BLAS setting changes no bit (it changed 7 AU columns
    by 1 ulp)."""
    from threadpoolctl import threadpool_limits

    out = tmp_path / "b.csv"
    a = fast_pipeline.process(SEQUENCE, bytes(out))
    assert out.read_text().startswith("frame,")
    with threadpool_limits(2, user_api="blas"):
        b = fast_pipeline.process(SEQUENCE)
    assert (a.to_numpy() == b.to_numpy()).all()


def test_streams_follow_their_frames(tmp_path):
    """A landmark CSV replayed in a stream takes the row of each frame's index (frames
    skipped or numbered by the caller); an undecodable image of a folder is a failed
    frame in ``stream()`` as in ``process()``; a frame the stream refuses changes
    nothing."""
    images = [cv2.imread(str(p)) for p in sorted(SEQUENCE.glob("*.jpg"))]
    ref = pd.read_csv(REFERENCE / "image_sequence.csv", skipinitialspace=True)
    with Pipeline(Options.openface_csv(REFERENCE / "image_sequence.csv"), threads=1) as pipe:
        stream = pipe.open_stream()
        stream.add(images[0], frame_index=0)
        (r,) = stream.add(images[20], frame_index=20)
        assert r.frame == 21
        np.testing.assert_allclose(r.landmarks[:, 0], ref.loc[20, [f"x_{i}" for i in range(68)]],
                                   atol=0.051)  # the CSV's 0.1 px rounding, dequantised
        with pytest.warns(UserWarning, match="no row for frame 501"):
            (late,) = stream.add(images[0], frame_index=500)
        assert not late.success
    folder = tmp_path / "seq"
    folder.mkdir()
    for i, p in enumerate(sorted(SEQUENCE.glob("*.jpg"))[:5]):
        (folder / p.name).write_bytes(b"junk" if i == 2 else p.read_bytes())
    with Pipeline(Options.fast(), threads=1) as pipe:
        with pytest.warns(UserWarning):
            whole = pipe.process(folder)
        with pytest.warns(UserWarning):
            streamed = list(pipe.stream(folder))
        assert [r.success for r in streamed] == whole["success"].astype(bool).tolist()
        np.testing.assert_allclose(np.stack([r.landmarks[:, 0] for r in streamed]),
                                   whole[[f"x_{i}" for i in range(68)]].to_numpy(), atol=0.051)
        stream = pipe.open_stream()
        stream.add(images[0])
        for bad in (lambda: stream.add(images[0], timestamp=float("nan"), frame_index=100),
                    lambda: stream.add("x", frame_index=200)):
            with pytest.raises(InputError):
                bad()
        assert stream.add(images[1])[0].frame == 2


def test_live_results_never_iterated_stop_at_exit_and_with_the_pipeline():
    """A ``live()`` never iterated nor closed: the process still exits cleanly (its reader
    thread inside OpenCV aborted the interpreter at exit: "exception not rethrown",
    exit 134); ``close()`` of the pipeline stops it; a closed pipeline opens no source."""
    import subprocess
    import sys
    import textwrap
    import threading

    code = textwrap.dedent(f"""
        import pyfaceau
        p = pyfaceau.Pipeline(threads=1)
        lr = p.live({str(SAMPLES / "default.wmv")!r})
    """)
    env = {**__import__("os").environ, "PYFACEAU_MODELS": str(OPENFACE_DIR)}
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=120, env=env)
    assert r.returncode == 0, r.stderr.decode()[-300:]
    pipe = Pipeline(threads=1)
    dropped = pipe.live(SAMPLES / "default.wmv")  # never iterated, then let go of
    reader = dropped.source._thread
    del dropped
    import gc

    gc.collect()
    reader.join(timeout=10)
    assert not reader.is_alive()  # it read the file to its end before (19 s)
    live = pipe.live(SAMPLES / "default.wmv")
    pipe.close()
    assert not live.source._thread.is_alive()
    before = {t.name for t in threading.enumerate()}
    with pytest.raises(ClosedError):
        pipe.live(SAMPLES / "default.wmv")
    assert {t.name for t in threading.enumerate()} <= before


def test_stream_takes_paths_as_bytes_and_keeps_frame_numbers(fast_pipeline):
    from pyfaceau.pipeline.sources import Frame

    first = sorted(SEQUENCE.glob("*.jpg"))[0]
    img = cv2.imread(str(first))
    results = list(fast_pipeline.stream([Frame(9, 0.3, img), Frame(12, 0.4, img)]))
    assert [(r.frame, r.timestamp) for r in results] == [(10, 0.3), (13, 0.4)]
    by_bytes = list(fast_pipeline.stream(bytes(first)))
    assert [r.frame for r in by_bytes] == [1] and by_bytes[0].success


def test_load_loads_the_au_models_too(tmp_path):
    """A missing AU model list fails at load(), not at the first input."""
    with pytest.raises(ModelFileError):
        Pipeline(Options.fast(), au_model_list=tmp_path / "none.txt").load()
    with pytest.raises(InputError):
        Pipeline(Options.openface_csv(tmp_path / "none.csv")).load()


def test_overlapping_sessions_keep_blas_on_one_thread_and_restore_it():
    """Sessions of one pipeline on several threads: BLAS stays on one thread while any
    runs (the same bits as alone), and the caller's setting comes back after the last."""
    import threading

    from threadpoolctl import threadpool_info

    from pyfaceau.blas_library import single_threaded_blas

    def blas_threads() -> list[int]:
        return [i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"]

    with single_threaded_blas():  # this thread first: threadpoolctl >= 3.6 makes it the
        pass  # only one whose limits count, which sessions on other threads had to undo
    before = blas_threads()
    seen: list[list[int]] = []
    barrier = threading.Barrier(3)

    def run() -> None:
        for _ in range(20):
            with single_threaded_blas():
                barrier.wait(timeout=10)
                seen.append(blas_threads())
                barrier.wait(timeout=10)

    threads = [threading.Thread(target=run) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(seen) == 60 and all(set(s) == {1} for s in seen)
    assert blas_threads() == before


def test_readme_examples_run(tmp_path, monkeypatch):
    """Every Python block of the README runs as shown, on a sample instead of video.mp4."""
    text = (REPO / "README.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    assert len(blocks) >= 2
    monkeypatch.chdir(tmp_path)
    sample = str(SEQUENCE)
    frame_bgr = cv2.imread(str(sorted(SEQUENCE.glob("*.jpg"))[0]))
    ref = load_reference("image_sequence")
    landmarks = np.stack([ref.loc[0, [f"x_{i}" for i in range(68)]].to_numpy(float),
                          ref.loc[0, [f"y_{i}" for i in range(68)]].to_numpy(float)], axis=1)
    namespace = {
        "frame_bgr": frame_bgr,
        "gray": cv2.cvtColor(frame_bgr, cv2.COLOR_BGR2GRAY),
        "landmarks": landmarks,
    }
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        for block in blocks:
            code = block.replace('"video.mp4"', repr(sample)).replace('"other.mp4"', repr(sample))
            exec(compile(code, "README.md", "exec"), namespace)
    assert (tmp_path / "video.csv").is_file()
    assert namespace["refined"].shape == (68, 2)
    assert len(namespace["results"]) == 1 and namespace["results"][0].success
