"""The binary model cache: same objects as a fresh parse, keyed by the files' SHA-256 and
the parsing code, and never used when its key differs or the entry is damaged."""

from __future__ import annotations

import dataclasses
import os
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import OPENFACE_DIR
from pyfaceau.errors import ModelFileError
from pyfaceau.landmarks.clnf.patch_experts import CCNFScale, load_ccnf_scale
from pyfaceau.modelstore import cache, resolve
from pyfaceau.parsers.ccnf_patches import read_ccnf_patches
from pyfaceau.parsers.mtcnn import read_cnn
from pyfaceau.parsers.svr_patches import read_svr_patches
from pyfaceau.parsers.validator import read_validator

PDM = "AU_predictors/In-the-wild_aligned_PDM_68.txt"
CCNF = "model/patch_experts/ccnf_patches_0.25_general.txt"
ONET = "model/mtcnn_detector/ONet.dat"
VALIDATOR = "model/detection_validation/validator_cnn.txt"
SVR = "model/patch_experts/svr_patches_0.25_general.txt"


@pytest.fixture()
def cache_dir(monkeypatch, tmp_path):
    folder = tmp_path / "cache"
    monkeypatch.setenv(cache.ENV_CACHE_DIR, str(folder))
    # files copied by a test are seconds old: remember their hashes anyway (the racy
    # window has its own test)
    monkeypatch.setattr(cache, "RACY_SECONDS", 0.0)
    cache._reset_for_tests()
    yield folder
    cache._reset_for_tests()


def _copy(src: Path, dst: Path) -> Path:
    dst.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(src, dst)
    return dst


def assert_same(a, b, where="obj"):
    """Same structure, types, values, dtypes, shapes and memory order."""
    # (a loaded CCNFScale's Sigma cache is a dict backed by the model cache)
    assert type(a) is type(b) or (isinstance(a, dict) and isinstance(b, dict)), where
    if isinstance(a, np.ndarray):
        assert a.dtype == b.dtype and a.shape == b.shape, where
        assert a.flags.c_contiguous == b.flags.c_contiguous, where
        assert a.flags.f_contiguous == b.flags.f_contiguous, where
        assert b.flags.aligned and a.flags.writeable == b.flags.writeable, where
        np.testing.assert_array_equal(a, b, err_msg=where)
    elif dataclasses.is_dataclass(a):
        for f in dataclasses.fields(a):
            assert_same(getattr(a, f.name), getattr(b, f.name), f"{where}.{f.name}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same(x, y, f"{where}[{i}]")
    elif isinstance(a, dict):
        assert list(a) == list(b), where
        for k in a:
            assert_same(a[k], b[k], f"{where}[{k!r}]")
    elif isinstance(a, float) and np.isnan(a):
        assert np.isnan(b), where
    else:
        assert a == b, where


def _entries(folder: Path, kind: str) -> list[Path]:
    return sorted(folder.glob(f"{kind}-*.bin"))


@pytest.mark.parametrize(
    "kind, rel, load, fresh",
    [
        ("ccnf_scale", CCNF, load_ccnf_scale, lambda p: CCNFScale.from_file(read_ccnf_patches(p))),
        ("mtcnn_cnn", ONET, read_cnn, read_cnn.__wrapped__),
        ("validator", VALIDATOR, read_validator, read_validator.__wrapped__),
        ("svr_patches", SVR, read_svr_patches, read_svr_patches.__wrapped__),
    ],
)
def test_cached_objects_equal_fresh_parse(cache_dir, kind, rel, load, fresh):
    path = resolve(rel)
    first = load(path)  # builds and stores
    assert len(_entries(cache_dir, kind)) == 1
    second = load(path)  # from the entry
    reference = fresh(path)
    assert_same(reference, first)
    assert_same(reference, second)


def test_entry_is_read_not_rebuilt(cache_dir, monkeypatch):
    path = resolve(ONET)
    read_cnn(path)

    def parse_again(*args, **kwargs):
        raise AssertionError("parsed again instead of loaded from the cache")

    monkeypatch.setattr("pyfaceau.parsers.mtcnn.BinaryReader", parse_again)
    assert_same(read_cnn(path), read_cnn(path))


@pytest.mark.parametrize("damage", ["truncated", "flipped", "garbage", "empty"])
def test_damaged_entry_is_ignored_and_rebuilt(cache_dir, damage):
    path = resolve(ONET)
    reference = read_cnn.__wrapped__(path)
    read_cnn(path)
    (entry,) = _entries(cache_dir, "mtcnn_cnn")
    data = entry.read_bytes()
    if damage == "truncated":
        entry.write_bytes(data[: len(data) - 100])
    elif damage == "flipped":  # one bit of an array
        i = len(data) - 1000
        entry.write_bytes(data[:i] + bytes([data[i] ^ 1]) + data[i + 1 :])
    elif damage == "garbage":
        entry.write_bytes(os.urandom(len(data)))
    else:
        entry.write_bytes(b"")
    assert_same(reference, read_cnn(path))
    assert entry.read_bytes() == data  # rebuilt in place


def test_entry_with_another_key_is_not_used(cache_dir, tmp_path):
    """An entry written for other file contents (same slot) is ignored: the key is the
    files' SHA-256, not their name."""
    copy = _copy(OPENFACE_DIR / ONET, tmp_path / "m" / ONET)
    good = read_cnn(copy)
    (entry,) = _entries(cache_dir, "mtcnn_cnn")
    # the same path now holds another network: a new key, the old entry must not be used
    other = (OPENFACE_DIR / "model/mtcnn_detector/RNet.dat").read_bytes()
    copy.write_bytes(other)
    fresh = read_cnn(copy)
    assert_same(read_cnn.__wrapped__(copy), fresh)
    with pytest.raises(AssertionError):
        assert_same(good, fresh)
    assert len(_entries(cache_dir, "mtcnn_cnn")) == 1  # same slot, overwritten


def test_paths_in_cached_objects_are_the_callers(cache_dir, tmp_path):
    a = _copy(OPENFACE_DIR / ONET, tmp_path / "a" / "ONet.dat")
    b = _copy(OPENFACE_DIR / ONET, tmp_path / "b" / "ONet.dat")
    assert read_cnn(a).path == a
    assert read_cnn(b).path == b
    assert read_cnn(a).path == a  # from its entry


def test_hash_remembered_until_the_file_changes(cache_dir, tmp_path, monkeypatch):
    copy = _copy(OPENFACE_DIR / PDM, tmp_path / "m" / PDM)
    assert resolve(PDM, tmp_path / "m") == copy
    hashed = []
    real = cache._sha256_of
    monkeypatch.setattr(cache, "_sha256_of", lambda p: hashed.append(p) or real(p))
    cache._reset_for_tests()  # a new process: only the hashes file remains
    resolve(PDM, tmp_path / "m")
    assert hashed == []  # not re-hashed
    data = bytearray(copy.read_bytes())
    data[200] = ord("7") if data[200] != ord("7") else ord("8")
    copy.write_bytes(bytes(data))  # same size, new content
    with pytest.raises(ModelFileError, match="altered"):
        resolve(PDM, tmp_path / "m")
    assert len(hashed) == 1


def test_recently_changed_file_is_not_remembered(cache_dir, tmp_path, monkeypatch):
    monkeypatch.setattr(cache, "RACY_SECONDS", 2.0)
    copy = tmp_path / "fresh.txt"
    copy.write_bytes(b"x" * 100)
    cache.file_sha256(copy)
    assert str(os.path.realpath(copy)) not in cache._read_memo_file(cache_dir)


def test_code_hash_follows_an_edited_module(cache_dir, tmp_path, monkeypatch):
    """The hash of a module's source in an entry's key is remembered per process only
    while the file's status stays the same: the module edited, the key changes."""
    import importlib

    name = "pyfaceau_cache_key_probe"
    source = tmp_path / f"{name}.py"
    source.write_text("A = 1\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    importlib.import_module(name)
    try:
        hashed = []
        real = cache._sha256_of
        monkeypatch.setattr(cache, "_sha256_of", lambda p: hashed.append(p) or real(p))
        first = cache._module_file_sha([name])
        assert cache._module_file_sha([name]) == first and len(hashed) == 1  # remembered
        source.write_text("A = 22\n")
        assert cache._module_file_sha([name]) != first and len(hashed) == 2
    finally:
        sys.modules.pop(name, None)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="XDG folders: Linux")
def test_default_cache_folder_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.delenv(cache.ENV_CACHE_DIR, raising=False)
    for folder in (tmp_path / "one", tmp_path / "two"):
        monkeypatch.setenv("XDG_CACHE_HOME", str(folder))
        assert cache.cache_dir() == folder / "pyfaceau"


def test_cache_off_and_unwritable_folder_still_load(monkeypatch, tmp_path):
    path = resolve(ONET)
    reference = read_cnn.__wrapped__(path)
    monkeypatch.setenv(cache.ENV_CACHE_DIR, "")
    cache._reset_for_tests()
    assert cache.cache_dir() is None
    assert_same(reference, read_cnn(path))
    blocked = tmp_path / "file-not-folder"
    blocked.write_text("")
    monkeypatch.setenv(cache.ENV_CACHE_DIR, str(blocked / "cache"))
    cache._reset_for_tests()
    assert_same(reference, read_cnn(path))
    cache._reset_for_tests()


def test_parse_errors_are_not_cached(cache_dir, tmp_path):
    bad = tmp_path / "ONet.dat"
    bad.write_bytes((OPENFACE_DIR / ONET).read_bytes()[:5000])
    for _ in range(2):
        with pytest.raises(ModelFileError, match="ONet.dat"):
            read_cnn(bad)
    assert _entries(cache_dir, "mtcnn_cnn") == []


def test_sigmas_stored_once_and_loaded_bit_identical(cache_dir, monkeypatch):
    path = resolve(CCNF)
    fresh = CCNFScale.from_file(read_ccnf_patches(path)).sigmas(0, 9)  # no cache behind it
    first = load_ccnf_scale(path)
    np.testing.assert_array_equal(first.sigmas(0, 9), fresh)
    assert len(_entries(cache_dir, "ccnf_sigmas")) == 1
    second = load_ccnf_scale(path)  # a new run: loads instead of inverting again
    monkeypatch.setattr("pyfaceau.landmarks.clnf.patch_experts.cv2.invert",
                        lambda *a, **k: (_ for _ in ()).throw(AssertionError("inverted")))
    loaded = second.sigmas(0, 9)
    assert loaded.dtype == fresh.dtype and loaded.tobytes() == fresh.tobytes()
