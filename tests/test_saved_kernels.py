"""Saved kernels (pyfaceau/jit.py, pyfaceau/jit_saved.py): numba's machine code run in a
process that never imports numba, with the same outputs; numba whenever the saved code
does not cover a call or no longer matches."""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import SAMPLES

#: Runs the console command, then says whether numba was imported and whether the saved
#: kernels ran the kernels.
_RUN = (
    "import sys, atexit\n"
    "from pyfaceau import cli, jit\n"
    "atexit.register(lambda: print('numba' in sys.modules, jit.saved_in_use(), file=sys.stderr))\n"
    "sys.argv = ['pyfaceau'] + sys.argv[1:]\n"
    "cli.run()\n"
)


def _run(saved: Path, out: Path, *flags: str) -> tuple[bool, bool]:
    env = {**os.environ, "PYFACEAU_SAVED_KERNELS": str(saved)}
    proc = subprocess.run(
        [sys.executable, "-c", _RUN, str(SAMPLES / "image_sequence"), "-o", str(out),
         "--no-progress", *flags],
        capture_output=True, text=True, timeout=600, env=env)
    assert proc.returncode == 0, proc.stderr
    numba_imported, saved_used = proc.stderr.strip().splitlines()[-1].split()
    return numba_imported == "True", saved_used == "True"


@pytest.mark.parametrize("flags", [(), ("--fast",)], ids=["faithful", "fast"])
def test_saved_kernels_run_without_numba_and_give_the_same_csv(tmp_path, flags):
    saved = tmp_path / "kernels.pkl"
    assert _run(saved, tmp_path / "numba.csv", *flags) == (True, False)  # numba, then saved
    assert saved.exists()
    assert _run(saved, tmp_path / "saved.csv", *flags) == (False, True)
    assert (tmp_path / "saved.csv").read_bytes() == (tmp_path / "numba.csv").read_bytes()


def test_a_call_the_saved_kernels_do_not_cover_goes_to_numba(tmp_path):
    saved = tmp_path / "kernels.pkl"
    _run(saved, tmp_path / "numba.csv")
    data = pickle.loads(saved.read_bytes())
    kept = [e for e in data["entries"] if e["qualname"] != "_fit_scale_kernel"]
    assert len(kept) < len(data["entries"])
    saved.write_bytes(pickle.dumps({**data, "entries": kept}))
    # the saved code starts the run; the first CLNF fit brings numba in, which takes over
    assert _run(saved, tmp_path / "mixed.csv") == (True, False)
    assert (tmp_path / "mixed.csv").read_bytes() == (tmp_path / "numba.csv").read_bytes()
    again = pickle.loads(saved.read_bytes())  # saved again, the missing kernel included
    assert any(e["qualname"] == "_fit_scale_kernel" for e in again["entries"])
    assert _run(saved, tmp_path / "saved.csv") == (False, True)


@pytest.mark.parametrize("change", ["environment", "content"])
def test_saved_kernels_that_no_longer_match_are_not_used(tmp_path, change):
    saved = tmp_path / "kernels.pkl"
    _run(saved, tmp_path / "numba.csv")
    data = pickle.loads(saved.read_bytes())
    if change == "environment":  # another CPU, Python or NUMBA_* setting
        data["environment"] += " another CPU"
    else:  # a source file changed (its status and its hash)
        data["stamps"][0] = (*data["stamps"][0][:1], -1, *data["stamps"][0][2:])
        data["content"] = "0" * 64
    saved.write_bytes(pickle.dumps(data))
    assert _run(saved, tmp_path / "again.csv") == (True, False)
    assert (tmp_path / "again.csv").read_bytes() == (tmp_path / "numba.csv").read_bytes()
    assert _run(saved, tmp_path / "saved.csv") == (False, True)  # written anew


def _arrays() -> list[np.ndarray]:
    base = np.arange(24, dtype=np.float32).reshape(4, 6)
    readonly = base.copy()
    readonly.flags.writeable = False
    unaligned = np.frombuffer(b"\0" + np.arange(4, dtype=np.float64).tobytes(), np.float64,
                              count=4, offset=1)
    return [base, base.T, base[:, ::2], base[0], base[:, 0], readonly,
            np.zeros((2, 3, 4), np.uint8), np.zeros(3, np.int64), np.zeros(3, np.int32),
            np.zeros(3, np.bool_), np.zeros(3, np.float64)[::2], np.zeros((1, 5), np.int16),
            np.zeros(0, np.float32), unaligned, np.zeros(3, ">f4")]


@pytest.mark.parametrize("value", [
    *_arrays(), 1.5, 7, -3, 2 ** 40, True, np.float32(1), np.float64(2), np.int64(3),
    np.int32(4), np.uint8(5), np.bool_(True), "text", None, 1j, (1, 2),
], ids=lambda v: type(v).__name__ + (str(getattr(v, "shape", "")) if hasattr(v, "shape") else ""))
def test_argument_key_names_the_types_numba_sees(value):
    """:func:`pyfaceau.jit.argument_key` gives, for every kind of argument, what the
    saved entry of numba's type for it holds, or None where the saved kernels cannot
    be used (the call then goes to numba): where numba has no type, and for unaligned
    arrays, which numba's dispatcher types apart."""
    from numba import typeof

    from pyfaceau.jit import argument_key
    from pyfaceau.jit_saved import signature_key

    try:
        expected = signature_key((typeof(value),))
    except Exception:  # noqa: BLE001 - numba has no type for it either
        expected = None
    key = argument_key((value,))
    unaligned = isinstance(value, np.ndarray) and not value.flags.aligned
    assert key == (None if unaligned else expected)


def test_a_run_whose_files_changed_meanwhile_saves_nothing(tmp_path, monkeypatch):
    """The machine code in a process is what its files were when it started: if they
    change during the run (an edit, an update), nothing is saved under the new key."""
    from pyfaceau import jit_saved

    monkeypatch.setenv("PYFACEAU_SAVED_KERNELS", str(tmp_path / "kernels.pkl"))
    jit_saved.note_start()
    stamps = jit_saved._stamps

    def changed(files):
        out = stamps(files)
        out[0] = (out[0][0], out[0][1] + 1, *out[0][2:])  # one file one byte longer
        return out

    monkeypatch.setattr(jit_saved, "_stamps", changed)
    assert jit_saved.save([]) is False
    assert not (tmp_path / "kernels.pkl").exists()
    monkeypatch.setattr(jit_saved, "_stamps", stamps)
    assert jit_saved.save([]) is True  # unchanged: written (no kernel ran here)


@pytest.mark.skipif(not hasattr(os, "getuid"), reason="POSIX permissions")
def test_saved_kernels_others_may_write_are_not_used(tmp_path):
    saved = tmp_path / "kernels.pkl"
    _run(saved, tmp_path / "numba.csv")
    saved.chmod(0o666)
    assert _run(saved, tmp_path / "again.csv") == (True, False)
    assert (tmp_path / "again.csv").read_bytes() == (tmp_path / "numba.csv").read_bytes()


def test_batch_workers_save_and_use_the_saved_kernels(tmp_path):
    """A batch worker that needed numba saves what it ran (its imports before start-up
    define no kernel, so its start can use them); the next batch gives the same CSV."""
    saved = tmp_path / "kernels.pkl"
    env = {**os.environ, "PYFACEAU_SAVED_KERNELS": str(saved)}
    exe = Path(sys.executable).parent / "pyfaceau"
    # what a spawned worker imports before its start-up defines no kernel
    check = subprocess.run([sys.executable, "-c", "import sys, pyfaceau.batch.local; "
                            "print('numba' in sys.modules)"], capture_output=True, text=True)
    assert check.stdout.strip() == "False", check.stderr
    for out in ("one", "two"):
        proc = subprocess.run([str(exe), "batch", str(SAMPLES / "image_sequence"), "-o",
                               str(tmp_path / out), "-j", "1", "--no-progress"],
                              capture_output=True, text=True, timeout=600, env=env)
        assert proc.returncode == 0, proc.stderr
        assert saved.exists()  # written by the first batch's worker
    csv = [p for p in (tmp_path / "one").rglob("*.csv") if p.name != "pyfaceau-batch.csv"]
    assert csv and all(p.read_bytes() == (tmp_path / "two" / p.relative_to(tmp_path / "one"))
                       .read_bytes() for p in csv)
