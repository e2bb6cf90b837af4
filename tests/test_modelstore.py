"""Model store: resolution order, checksum errors, install, and the real download code
against a loopback HTTP server that serves ../shared/openface-2.2."""

from __future__ import annotations

import functools
import os
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from conftest import ONNX_DIR, OPENFACE_DIR, loopback_http
from pyfaceau.cli import main
from pyfaceau.errors import ModelFileError
from pyfaceau.modelstore import MANIFEST, resolve, search_dirs
from pyfaceau.modelstore.download import download_models, install_models, openface_url

PDM = "AU_predictors/In-the-wild_aligned_PDM_68.txt"
SMALL = [PDM, "AU_predictors/AU_all_best.txt", "model/tris_68_full.txt"]


def test_manifest_matches_shared_checksums():
    sums = {}
    for line in (OPENFACE_DIR / "SHA256SUMS").read_text().splitlines():
        digest, rel = line.split()
        sums[rel.removeprefix("./")] = digest
    sums.pop("SHA256SUMS", None)
    openface = {k: e.sha256 for k, e in MANIFEST.items() if e.group == "openface"}
    assert openface == sums
    assert {k for k, e in MANIFEST.items() if e.group == "onnx"} == {
        "retinaface_mobilenet025.onnx",
        "pfld.onnx",
    }


def test_search_order(monkeypatch, tmp_path):
    monkeypatch.setenv("PYFACEAU_MODELS", os.pathsep.join([str(tmp_path / "a"), str(tmp_path / "b")]))
    dirs = search_dirs(str(tmp_path / "x") + os.pathsep + str(tmp_path / "y"))
    assert dirs[:4] == [tmp_path / "x", tmp_path / "y", tmp_path / "a", tmp_path / "b"]
    assert len(dirs) == 5  # then the user data folder


def test_first_folder_with_the_file_wins(monkeypatch, tmp_path):
    monkeypatch.setenv("PYFACEAU_MODELS", str(OPENFACE_DIR))
    assert resolve(PDM) == OPENFACE_DIR / PDM
    local = tmp_path / PDM
    local.parent.mkdir(parents=True)
    shutil.copy(OPENFACE_DIR / PDM, local)
    assert resolve(PDM, tmp_path) == local


def _broken_copy(tmp_path: Path, how: str) -> Path:
    target = tmp_path / PDM
    target.parent.mkdir(parents=True, exist_ok=True)
    data = (OPENFACE_DIR / PDM).read_bytes()
    if how == "truncated":
        data = data[: len(data) // 2]
    else:  # same size, one byte changed
        data = data[:100] + (b"7" if data[100:101] != b"7" else b"8") + data[101:]
    target.write_bytes(data)
    return target


@pytest.mark.parametrize("how, word", [("truncated", "truncated"), ("altered", "altered")])
def test_damaged_file_is_one_clear_error(monkeypatch, tmp_path, how, word):
    monkeypatch.setenv("PYFACEAU_MODELS", str(tmp_path))
    _broken_copy(tmp_path, how)
    with pytest.raises(ModelFileError) as info:
        resolve(PDM)
    msg = str(info.value)
    assert "\n" not in msg and word in msg and "In-the-wild_aligned_PDM_68.txt" in msg
    assert "pyfaceau models" in msg  # says how to fix it


def test_missing_file_lists_searched_folders(monkeypatch, tmp_path):
    monkeypatch.setenv("PYFACEAU_MODELS", str(tmp_path / "nothing"))
    with pytest.raises(ModelFileError, match="not found .*nothing"):
        resolve(PDM)
    with pytest.raises(ModelFileError, match="not a pyfaceau model file"):
        resolve("model/unknown.txt")


def test_install_verifies_and_copies(tmp_path):
    src = tmp_path / "src"
    for rel in SMALL:
        (src / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(OPENFACE_DIR / rel, src / rel)
    (src / "pfld.onnx").write_bytes((ONNX_DIR / "pfld.onnx").read_bytes()[:1000])  # truncated
    dest = tmp_path / "dest"
    report = install_models(src, dest)
    assert sorted(report.added) == sorted(SMALL)
    assert "truncated" in report.failed["pfld.onnx"]
    assert not (dest / "pfld.onnx").exists()
    assert resolve(PDM, dest) == dest / PDM
    again = install_models(src, dest)
    assert again.added == [] and sorted(again.present) == sorted(SMALL)


@pytest.fixture()
def loopback_server():
    """An HTTP server on 127.0.0.1 serving ../shared/openface-2.2 and the ONNX files."""
    def file_for(rel: str) -> Path:
        return (ONNX_DIR if rel.endswith(".onnx") else OPENFACE_DIR) / rel

    with loopback_http(file_for) as (url, served):
        yield url, served


def test_download_from_mirror_all_files(loopback_server, tmp_path):
    url, served = loopback_server
    report = download_models(tmp_path, accept_license=True, mirror=url)
    assert report.ok, report.failed
    assert len(report.added) == len(MANIFEST)
    for rel in MANIFEST:
        assert resolve(rel, tmp_path) == tmp_path / rel
    # a second run fetches nothing
    count = served["count"]
    again = download_models(tmp_path, accept_license=True, mirror=url)
    assert again.added == [] and served["count"] == count


def test_download_rejects_a_file_with_the_wrong_checksum(loopback_server, tmp_path, monkeypatch):
    url, _ = loopback_server
    import pyfaceau.modelstore.download as dl

    entry = MANIFEST[PDM]
    fake = dl.ModelEntry(entry.path, "0" * 64, entry.size, entry.group)
    monkeypatch.setattr(dl, "_entries", lambda groups: [fake])
    report = download_models(tmp_path, accept_license=True, mirror=url)
    assert PDM in report.failed and not (tmp_path / PDM).exists()


def test_download_without_a_server_stops_at_the_first_file(tmp_path):
    """Nothing listens on the mirror's port: one attempt, one reason for every file, no
    empty folders left; a mirror that is not a URL and a destination that is a file are
    refused before anything is fetched."""
    import socket

    with socket.socket() as sock:  # a free port, closed again: nobody listens there
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    report = download_models(tmp_path / "d", accept_license=True,
                             mirror=f"http://127.0.0.1:{port}")
    assert len(report.failed) == len(MANIFEST) and not report.added
    assert {why for why in report.failed.values()} == {next(iter(report.failed.values()))}
    assert next(iter(report.failed.values())).startswith("no connection")
    assert not (tmp_path / "d").exists() or not any((tmp_path / "d").rglob("*"))
    with pytest.raises(ModelFileError, match="mirror"):
        download_models(tmp_path, accept_license=True, mirror="file:///x")
    (tmp_path / "f").write_text("")
    for call in (lambda: download_models(tmp_path / "f", accept_license=True),
                 lambda: install_models(OPENFACE_DIR, tmp_path / "f")):
        with pytest.raises(ModelFileError, match="not a folder"):
            call()


def test_download_needs_the_licence(tmp_path):
    with pytest.raises(ModelFileError, match="licence"):
        download_models(tmp_path, accept_license=False)
    result = CliRunner().invoke(main, ["models", "download", "--dest", str(tmp_path)], input="no\n")
    assert result.exit_code == 2
    assert "non-commercial" in result.output
    assert not any(tmp_path.rglob("*.txt"))


def test_cli_download_with_interactive_yes(loopback_server, tmp_path, monkeypatch):
    url, _ = loopback_server
    import pyfaceau.cli as cli

    monkeypatch.setattr(cli, "_stdin_is_interactive", lambda: True)
    result = CliRunner().invoke(
        main, ["models", "download", "--dest", str(tmp_path), "--mirror", url], input="YES\n"
    )
    assert result.exit_code == 0, result.output
    assert (tmp_path / PDM).is_file() and (tmp_path / "pfld.onnx").is_file()


def test_official_urls_point_at_the_release_tag():
    url = openface_url(MANIFEST[PDM])
    assert url.endswith("/OpenFace_2.2.0/lib/local/FaceAnalyser/AU_predictors/In-the-wild_aligned_PDM_68.txt")
    url = openface_url(MANIFEST["model/mtcnn_detector/PNet.dat"])
    assert "/OpenFace_2.2.0/lib/local/LandmarkDetector/model/mtcnn_detector/PNet.dat" in url


def test_cli_models_path(monkeypatch):
    monkeypatch.setenv("PYFACEAU_MODELS", os.pathsep.join([str(OPENFACE_DIR), str(ONNX_DIR)]))
    result = CliRunner().invoke(main, ["models", "path"])
    assert result.exit_code == 0 and str(OPENFACE_DIR) in result.output
    assert "model files found" not in result.output  # listing only: verify checks
    result = CliRunner().invoke(main, ["models", "verify", "--models", "/no/such/dir"])
    assert result.exit_code == 0 and str(OPENFACE_DIR) in result.output
    assert f"all {len(MANIFEST)} model files found" in result.output
    assert "note: /no/such/dir: no such folder" in result.output


def test_cli_install_exit_codes(tmp_path):
    src = tmp_path / "src"
    (src / "AU_predictors").mkdir(parents=True)
    shutil.copy(OPENFACE_DIR / PDM, src / PDM)
    runner = CliRunner()
    ok = runner.invoke(main, ["models", "install", str(src), "--dest", str(tmp_path / "a")])
    assert ok.exit_code == 0 and "installed 1" in ok.output
    assert "OpenFace's files: 179 still missing" in ok.output and "now holds" not in ok.output
    full = runner.invoke(main, ["models", "install", str(OPENFACE_DIR), "--dest", str(src)])
    assert full.exit_code == 0 and f"{src} now holds every file of the faithful path\n" in full.output
    assert "the fast path's networks" not in full.output  # none of them: no partial group
    (src / "pfld.onnx").write_bytes(b"broken")
    bad = runner.invoke(main, ["models", "install", str(src), "--dest", str(tmp_path / "b")])
    assert bad.exit_code == 1 and "pfld.onnx" in bad.output
    empty = runner.invoke(main, ["models", "install", str(tmp_path / "nothing_here")])
    assert empty.exit_code == 2 and "not a folder" in empty.output
    # a destination that cannot be a folder, a folder where a file goes, a bad mirror URL
    (tmp_path / "afile").write_text("")
    under_file = runner.invoke(main, ["models", "install", str(src), "--dest",
                                      str(tmp_path / "afile" / "sub")])
    assert under_file.exit_code == 2
    assert under_file.output == f"pyfaceau: error: {tmp_path / 'afile' / 'sub'}: cannot create the folder (Not a directory)\n"
    (tmp_path / "c" / PDM).mkdir(parents=True)
    blocked = runner.invoke(main, ["models", "install", str(src), "--dest", str(tmp_path / "c")])
    assert blocked.exit_code == 1 and "(Is a directory)" in blocked.output
    assert not [p for p in (tmp_path / "c").rglob("*.part")]
    mirror = runner.invoke(main, ["models", "download", "--accept-license", "--dest",
                                  str(tmp_path / "d"), "--mirror", "http://[::1"])
    assert mirror.exit_code == 2 and "--mirror http://[::1: not a URL" in mirror.output


def test_onnx_files_come_from_their_pinned_public_sources(loopback_server, tmp_path, monkeypatch):
    """Without a mirror the ONNX files are fetched from ``ONNX_SOURCES`` (here served by the
    loopback server) and checked against the manifest; RetinaFace has no public ONNX file,
    so its weights are fetched to be converted (``tests/test_retinaface_convert.py``; here
    the server has none)."""
    url, served = loopback_server
    import pyfaceau.modelstore.download as dl
    import pyfaceau.modelstore.retinaface_convert as rc

    monkeypatch.setattr(rc, "PTH_URL", url + "no/mobilenet0.25_Final.pth")
    assert dl.ONNX_SOURCES["pfld.onnx"].startswith(
        "https://raw.githubusercontent.com/cunjian/pytorch_face_landmark/"
    ) and dl.ONNX_SOURCES["pfld.onnx"].endswith("/onnx/pfld.onnx")
    assert dl.ONNX_SOURCES["retinaface_mobilenet025.onnx"] is None
    monkeypatch.setitem(dl.ONNX_SOURCES, "pfld.onnx", url + "pfld.onnx")
    report = download_models(tmp_path, accept_license=True, groups=("onnx",))
    assert report.added == ["pfld.onnx"] and served["count"] == 2  # pfld, RetinaFace's weights
    assert (tmp_path / "pfld.onnx").read_bytes() == (ONNX_DIR / "pfld.onnx").read_bytes()
    assert "404" in report.failed["retinaface_mobilenet025.onnx"]
    # a source whose file changed is refused and leaves nothing behind
    (tmp_path / "pfld.onnx").unlink()
    monkeypatch.setitem(dl.ONNX_SOURCES, "pfld.onnx", url + "retinaface_mobilenet025.onnx")
    report = download_models(tmp_path, accept_license=True, groups=("onnx",))
    assert "pfld.onnx" in report.failed and not (tmp_path / "pfld.onnx").exists()
    # a RetinaFace source, once one is pinned, is fetched and checked the same way
    monkeypatch.setitem(dl.ONNX_SOURCES, "retinaface_mobilenet025.onnx", url + "retinaface_mobilenet025.onnx")
    monkeypatch.setitem(dl.ONNX_SOURCES, "pfld.onnx", url + "pfld.onnx")
    report = download_models(tmp_path, accept_license=True, groups=("onnx",))
    assert report.ok and sorted(report.added) == ["pfld.onnx", "retinaface_mobilenet025.onnx"]
    for rel in ("pfld.onnx", "retinaface_mobilenet025.onnx"):
        assert resolve(rel, tmp_path) == tmp_path / rel
