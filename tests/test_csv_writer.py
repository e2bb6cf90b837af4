"""The vectorised CSV writer gives, byte for byte, OpenFace's own CSV files for OpenFace's
values, and what printf-style formatting of each value gives (the writer pyfaceau had
before: one ``fmt % value`` per value)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from conftest import REFERENCE, load_reference, samples_with_reference
from pyfaceau.output.table import (
    EYE_COLUMNS,
    OPENFACE_COLUMNS,
    FrameTable,
    _format_of,
    format_csv,
    iter_csv_chunks,
    write_csv,
    write_split_csvs,
)


def reference_csv(df: pd.DataFrame) -> bytes:
    """The row-by-row writer pyfaceau had before the vectorised one (the oracle)."""
    formats = [_format_of(c) for c in df.columns]
    lines = [",".join(df.columns)]
    for row in df.to_numpy(dtype=float):
        lines.append(
            ",".join("nan" if np.isnan(v) else (fmt % v) for fmt, v in zip(formats, row))
        )
    return ("\n".join(lines) + "\n").encode()


def _first_difference(a: bytes, b: bytes) -> str:
    for i, (x, y) in enumerate(zip(a.split(b"\n"), b.split(b"\n"))):
        if x != y:
            for j, (u, v) in enumerate(zip(x.split(b","), y.split(b","))):
                if u != v:
                    return f"line {i}, field {j}: {u!r} != {v!r}"
    return f"lengths {len(a)} != {len(b)}"


def assert_identical(df: pd.DataFrame) -> None:
    expected, got = reference_csv(df), format_csv(df)
    assert got == expected, _first_difference(expected, got)


def test_edge_values_every_format():
    """Rounding ties (decimal and exact binary), values just beside them, negative zero,
    tiny negatives that print as -0.0, NaN, infinities, huge values and integers."""
    rng = np.random.default_rng(8)
    n, m = 700, len(OPENFACE_COLUMNS)
    x = rng.normal(0.0, 300.0, (n, m))
    blocks = [
        np.round(x, 1) + 0.05,  # decimal ties at 1, 2, 3 and 6 decimals (inexact in binary)
        np.round(x, 2) + 0.005,
        np.round(x, 3) + 0.0005,
        np.round(x, 6) + 0.0000005,
        (rng.integers(-4000, 4000, (n, m)) + 0.5) / 16,  # exact binary ties
        rng.normal(0.0, 1e-3, (n, m)),  # tiny values, both signs
        np.full((n, m), -0.0),
        np.nextafter(np.round(x, 1) + 0.05, np.inf),
        np.nextafter(np.round(x, 1) + 0.05, -np.inf),
        rng.normal(0.0, 1e7, (n, m)),
    ]
    rows = np.concatenate(blocks)[rng.permutation(n * len(blocks))[:2000]]
    rows[::13, ::7] = np.nan
    rows[1, 10:14] = [np.inf, -np.inf, 1e300, -2.0**53 + 1]
    rows[:, 0] = np.arange(len(rows)) + 1
    rows[:, 4] = rng.integers(0, 2, len(rows))
    rows[2, 0] = -3.7  # "%d" truncates toward zero
    rows[3, 0] = -0.5  # ... and never prints "-0"
    assert_identical(pd.DataFrame(rows, columns=OPENFACE_COLUMNS))


@pytest.mark.parametrize("stem", ["image_sequence", "changeLighting", "default", "1878_01_002_vladimir_putin"])
def test_real_outputs(stem):
    """OpenFace's own numbers for a sample give OpenFace's file, byte for byte (its
    precision per column, its separators); the same moved by less than half of each
    column's printed precision (so every digit is a rounding decision) as printf does."""
    assert stem in samples_with_reference()
    ref = load_reference(stem)
    df = ref[[c for c in OPENFACE_COLUMNS if c in ref.columns]].astype(float)
    assert list(df.columns) == OPENFACE_COLUMNS
    got = format_csv(df)
    expected = (REFERENCE / f"{stem}.csv").read_bytes()
    assert got == expected, _first_difference(expected, got)
    assert_identical(df)
    rng = np.random.default_rng(len(stem))
    unit = np.array([10.0 ** -int(_format_of(c)[2:-1]) if "f" in _format_of(c) else 1.0
                     for c in df.columns])
    moved = df + rng.uniform(-0.49, 0.49, df.shape) * unit
    assert_identical(moved)


def test_frame_table_and_dataframe_write_the_same(tmp_path):
    ref = load_reference("image_sequence")
    table = FrameTable(OPENFACE_COLUMNS)
    for _, r in ref.iterrows():
        table.add({c: r[c] for c in ("frame", "face_id", "timestamp", "confidence", "success")}
                  | {"landmarks": np.stack([r[[f"x_{i}" for i in range(68)]].to_numpy(float),
                                            r[[f"y_{i}" for i in range(68)]].to_numpy(float)], 1),
                     "AU01_r": r["AU01_r"]})
    table.fill_missing(EYE_COLUMNS, 0.0)
    table.drop([c for c in OPENFACE_COLUMNS if c.startswith("p_")])
    df = table.to_dataframe()
    assert "p_scale" not in df and (df["gaze_0_x"] == 0).all() and df["pose_Tx"].isna().all()
    np.testing.assert_array_equal(df["x_5"], ref["x_5"])
    a, b = tmp_path / "a.csv", tmp_path / "b.csv"
    write_csv(table, a)
    write_csv(df, b)
    assert a.read_bytes() == b.read_bytes() == reference_csv(df)


def test_chunks_join_to_the_whole():
    ref = load_reference("changeLighting").astype(float)
    df = ref[[c for c in OPENFACE_COLUMNS if c in ref.columns]]
    chunks = list(iter_csv_chunks(df, chunk_rows=10))
    assert len(chunks) == 1 + -(-len(df) // 10)
    assert b"".join(chunks) == format_csv(df)


def test_empty_table():
    assert format_csv(FrameTable(["frame", "AU01_r"])) == b"frame,AU01_r\n"


def test_split_csvs_one_per_person(tmp_path):
    """``--split``: OpenFace's multi-face output (FaceLandmarkVidMulti) as one CSV per
    ``face_id``, each what write_csv writes for that person's rows; one face's FrameTable
    gives ``_face0``; an empty table nothing."""
    import pandas as pd

    from conftest import REFERENCE

    ref = pd.read_csv(REFERENCE / "multi" / "multi_face.csv", skipinitialspace=True)
    df = ref[[c for c in OPENFACE_COLUMNS if c in ref.columns]].astype(float)
    ids = sorted(int(i) for i in df["face_id"].unique())
    assert len(ids) >= 3
    paths = write_split_csvs(df, tmp_path / "out.csv")
    assert [p.name for p in paths] == [f"out_face{i}.csv" for i in ids]
    for i, path in zip(ids, paths):
        rows = df[df["face_id"] == i].reset_index(drop=True)
        assert path.read_bytes() == format_csv(rows)
    table = FrameTable(["frame", "face_id", "AU01_r"])
    assert write_split_csvs(table, tmp_path / "none.csv") == []
    table.add({"frame": 1, "face_id": 0, "AU01_r": 0.5})
    (one,) = write_split_csvs(table, tmp_path / "one")
    assert one.name == "one_face0.csv" and one.read_bytes() == format_csv(table)


def test_stale_split_csvs_of_an_earlier_run_are_removed(tmp_path):
    """``--split`` after an earlier run that found more people: the per-person CSVs this
    run did not write go (they would pass for its output); nothing else does."""
    from pyfaceau.output.table import is_split_csv_of, remove_stale_split_csvs

    names = ["out_face0.csv", "out_face1.csv", "out_face12.csv", "out_face1.csv.bak",
             "out_faceX.csv", "other_face1.csv", "out.csv", "out_face_1.csv",
             "out_face01.csv"]  # never a name pyfaceau writes: the user's own
    for name in names:
        (tmp_path / name).write_text("x")
    (tmp_path / "out_face7.csv").symlink_to(tmp_path / "out.csv")  # not ours to remove
    (tmp_path / "out_face8.csv").mkdir()
    removed = remove_stale_split_csvs(tmp_path / "out.csv", [tmp_path / "out_face0.csv"])
    assert [p.name for p in removed] == ["out_face1.csv", "out_face12.csv"]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        set(names) - {"out_face1.csv", "out_face12.csv"} | {"out_face7.csv", "out_face8.csv"})
    assert is_split_csv_of(tmp_path / "b", tmp_path / "b_face3.csv")
    assert not is_split_csv_of(tmp_path / "b.csv", tmp_path / "sub" / "b_face3.csv")
    assert not is_split_csv_of(tmp_path / "b.csv", tmp_path / "b_face3.tsv")
