"""RetinaFace from PyTorch weights without PyTorch (issue 13 item 6): the checkpoint reader
(both of PyTorch's formats), the conversion, its check against the reference outputs, and
``models download`` fetching the weights from a loopback server and converting them.

The public ``mobilenet0.25_Final.pth`` cannot be fetched here, so the tests make a
checkpoint of the same network from ``../shared/models/retinaface_mobilenet025.onnx``:
each convolution's folded weights as the convolution, and a batch normalisation that
folds back to exactly those values (mean 0, variance 1, scale ``sqrt(1 + eps)``, shift the
folded bias). The converted network must then detect exactly what the reference does.
"""

from __future__ import annotations

import io
import pickle
import struct
import sys
import types
import zipfile
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest

from conftest import SAMPLES, SHARED, loopback_http
from pyfaceau.errors import ModelFileError

onnx = pytest.importorskip("onnx")

from pyfaceau.modelstore import retinaface_convert as rc  # noqa: E402
from pyfaceau.modelstore.torch_checkpoint import read_torch_state_dict  # noqa: E402

REFERENCE_ONNX = SHARED / "models" / "retinaface_mobilenet025.onnx"


# -- the network's state dict, from the reference export -----------------------------------
def _conv_keys() -> list[tuple[str, bool]]:
    """The network's convolutions in the reference export's node order: (prefix, has a
    batch normalisation)."""
    keys = [("body.stage1.0", True)]
    for stage, n in (("stage1", 6), ("stage2", 6), ("stage3", 2)):
        for i in range(1 if stage == "stage1" else 0, n):
            keys += [(f"body.{stage}.{i}.dw", True), (f"body.{stage}.{i}.pw", True)]
    keys += [(f"fpn.{n}", True) for n in ("output1", "output2", "output3", "merge2", "merge1")]
    for level in (1, 2, 3):
        keys += [(f"ssh{level}.{n}", True)
                 for n in ("conv3X3", "conv5X5_1", "conv5X5_2", "conv7X7_2", "conv7x7_3")]
    keys += [(f"{h}.{i}.conv1x1", False)
             for h in ("BboxHead", "ClassHead", "LandmarkHead") for i in range(3)]
    return keys


def _state_dict_from_reference() -> OrderedDict:
    model = onnx.load(str(REFERENCE_ONNX))
    inits = {i.name: onnx.numpy_helper.to_array(i) for i in model.graph.initializer}
    convs = [n for n in model.graph.node if n.op_type == "Conv"]
    keys = _conv_keys()
    assert len(convs) == len(keys) == 56
    gamma_one = np.sqrt(np.float32(1) + np.float32(1e-5)).astype(np.float32)
    state: OrderedDict = OrderedDict()
    for (prefix, has_bn), node in zip(keys, convs):
        w, b = (inits[name].astype(np.float32) for name in node.input[1:3])
        if not has_bn:
            state[f"{prefix}.weight"], state[f"{prefix}.bias"] = w, b
            continue
        if prefix.endswith((".dw", ".pw")):  # conv_dw: conv 0 / bn 1, conv 3 / bn 4
            block, part = prefix.rsplit(".", 1)
            first = part == "dw"
            conv, bn = (f"{block}.0", f"{block}.1") if first else (f"{block}.3", f"{block}.4")
        else:
            conv, bn = f"{prefix}.0", f"{prefix}.1"
        c = w.shape[0]
        state[f"{conv}.weight"] = w
        state[f"{bn}.weight"] = np.full(c, gamma_one, np.float32)
        state[f"{bn}.bias"] = b
        state[f"{bn}.running_mean"] = np.zeros(c, np.float32)
        state[f"{bn}.running_var"] = np.ones(c, np.float32)
        state[f"{bn}.num_batches_tracked"] = np.array(0, np.int64)
    return state


@pytest.fixture(scope="module")
def reference_state() -> OrderedDict:
    return _state_dict_from_reference()


# -- torch.save's two formats, written without torch -----------------------------------------
class _FakeTorch:
    """``torch``, ``torch._utils`` and the storage types as pickle names them, installed in
    ``sys.modules`` only while a checkpoint is written."""

    def __enter__(self) -> "_FakeTorch":
        torch = types.ModuleType("torch")
        utils = types.ModuleType("torch._utils")

        def _rebuild_tensor_v2(*args):  # noqa: ANN002, ANN202
            raise AssertionError("never called")

        _rebuild_tensor_v2.__module__ = "torch._utils"
        _rebuild_tensor_v2.__qualname__ = "_rebuild_tensor_v2"
        utils._rebuild_tensor_v2 = _rebuild_tensor_v2
        self.types = {}
        for name in ("FloatStorage", "LongStorage"):
            cls = type(name, (), {"__module__": "torch", "__qualname__": name})
            setattr(torch, name, cls)
            self.types[name] = cls
        torch._utils = utils
        self.rebuild = _rebuild_tensor_v2
        self._saved = {k: sys.modules.get(k) for k in ("torch", "torch._utils")}
        sys.modules["torch"], sys.modules["torch._utils"] = torch, utils
        return self

    def __exit__(self, *exc: object) -> None:
        for k, v in self._saved.items():
            if v is None:
                sys.modules.pop(k, None)
            else:
                sys.modules[k] = v


class _Storage:
    def __init__(self, key: str, values: np.ndarray) -> None:
        self.key, self.values = key, values


class _Tensor:
    def __init__(self, fake: _FakeTorch, storage: _Storage, shape: tuple) -> None:
        strides = tuple(int(np.prod(shape[i + 1:])) for i in range(len(shape)))
        self._reduce = (fake.rebuild, (storage, 0, shape, strides, False, OrderedDict()))

    def __reduce__(self):  # noqa: ANN204
        return self._reduce


def _tensors(fake: _FakeTorch, state: OrderedDict) -> tuple[OrderedDict, list[_Storage]]:
    storages, obj = [], OrderedDict()
    for i, (k, v) in enumerate(state.items()):
        s = _Storage(str(i), np.ascontiguousarray(v))
        storages.append(s)
        obj[k] = _Tensor(fake, s, tuple(v.shape))
    return obj, storages


def _storage_type(fake: _FakeTorch, values: np.ndarray) -> type:
    return fake.types["FloatStorage" if values.dtype == np.float32 else "LongStorage"]


def write_zip_checkpoint(path: Path, state: OrderedDict) -> None:
    """``torch.save(state, path)`` as PyTorch >= 1.6 writes it."""
    with _FakeTorch() as fake:
        obj, storages = _tensors(fake, state)
        buf = io.BytesIO()
        pickler = pickle.Pickler(buf, protocol=2)
        pickler.persistent_id = lambda o: (  # type: ignore[method-assign]
            ("storage", _storage_type(fake, o.values), o.key, "cpu", o.values.size)
            if isinstance(o, _Storage) else None)
        pickler.dump(obj)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as z:
        z.writestr("archive/data.pkl", buf.getvalue())
        for s in storages:
            z.writestr(f"archive/data/{s.key}", s.values.astype(s.values.dtype.newbyteorder("<"))
                       .tobytes())
        z.writestr("archive/version", "3\n")


def write_legacy_checkpoint(path: Path, state: OrderedDict) -> None:
    """``torch.save(state, path, _use_new_zipfile_serialization=False)``."""
    with _FakeTorch() as fake:
        obj, storages = _tensors(fake, state)
        with open(path, "wb") as f:
            pickle.dump(0x1950A86A20F9469CFC6C, f, protocol=2)
            pickle.dump(1001, f, protocol=2)
            pickle.dump({"protocol_version": 1001, "little_endian": True}, f, protocol=2)
            pickler = pickle.Pickler(f, protocol=2)
            pickler.persistent_id = lambda o: (  # type: ignore[method-assign]
                ("storage", _storage_type(fake, o.values), o.key, "cpu", o.values.size, None)
                if isinstance(o, _Storage) else None)
            pickler.dump(obj)
            pickle.dump([s.key for s in storages], f, protocol=2)
            for s in storages:
                f.write(struct.pack("<q", s.values.size))
                f.write(s.values.tobytes())


# -- the reader -----------------------------------------------------------------------------
@pytest.mark.parametrize("writer", [write_zip_checkpoint, write_legacy_checkpoint])
def test_reader_gives_every_tensor_back(tmp_path, writer, reference_state) -> None:
    path = tmp_path / "weights.pth"
    writer(path, reference_state)
    got = read_torch_state_dict(path)
    assert list(got) == list(reference_state) and len(got) == 300
    for k, v in reference_state.items():
        assert got[k].dtype == v.dtype and got[k].shape == v.shape
        assert np.array_equal(got[k], v), k


def test_reader_refuses_other_files_and_code(tmp_path) -> None:
    text = tmp_path / "notes.pth"
    text.write_text("not a checkpoint")
    with pytest.raises(ModelFileError, match="PyTorch checkpoint"):
        read_torch_state_dict(text)
    evil = tmp_path / "evil.pth"
    with zipfile.ZipFile(evil, "w") as z:  # a pickle that would call os.system
        z.writestr("archive/data.pkl", b"cos\nsystem\n(S'echo hi'\ntR.")
    with pytest.raises(ModelFileError, match="unexpected object os.system"):
        read_torch_state_dict(evil)
    with pytest.raises(ModelFileError, match="no such file"):
        read_torch_state_dict(tmp_path / "missing.pth")


# -- the conversion -------------------------------------------------------------------------
def assert_same_outputs(model: Path, reference: Path) -> None:
    """The two networks give the same bits on the check input, on this CPU: the stored
    reference outputs were computed with AVX2 kernels, and onnxruntime's AVX-512 ones
    round differently (about 5e-6 from them), for either network alike."""
    import onnxruntime as ort

    data = rc._check_data()
    x = np.ascontiguousarray((data["image"].astype(np.float32) - rc._MEANS).transpose(2, 0, 1)[None])
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    outputs = []
    for path in (model, reference):
        session = ort.InferenceSession(str(path), sess_options=opts,
                                       providers=["CPUExecutionProvider"])
        names = [o.name for o in session.get_outputs()]
        outputs.append(dict(zip(names, session.run(None, {"input": x}))))
    for key in ("loc", "conf", "landms"):
        np.testing.assert_array_equal(outputs[0][key], outputs[1][key])
    assert rc.check_retinaface_onnx(model) <= 1e-5  # and near the stored outputs on any CPU


def _detections(model_path: Path, image: np.ndarray):
    from pyfaceau.detection.retinaface import RetinaFaceDetector

    return RetinaFaceDetector(model_path=model_path).detect(image)


def test_converted_network_detects_what_the_reference_detects(tmp_path, reference_state) -> None:
    import cv2

    pth = tmp_path / "mobilenet0.25_Final.pth"
    write_zip_checkpoint(pth, reference_state)
    out = rc.convert_retinaface(pth, tmp_path / "retinaface_mobilenet025.onnx")
    assert_same_outputs(out, REFERENCE_ONNX)  # the same weights, bit for bit
    images = [cv2.imread(str(p)) for p in sorted((SAMPLES / "images").iterdir())[:4]]
    images.append(cv2.imread(str(sorted((SAMPLES / "image_sequence").iterdir())[0])))
    for image in images:
        ours, ref = _detections(out, image), _detections(REFERENCE_ONNX, image)
        assert len(ours) == len(ref) > 0
        np.testing.assert_allclose(ours.boxes, ref.boxes, atol=1e-3)
        np.testing.assert_allclose(ours.scores, ref.scores, atol=1e-5)


def test_other_weights_are_refused_and_nothing_is_written(tmp_path, reference_state) -> None:
    state = OrderedDict(reference_state)
    w = state["ssh2.conv3X3.0.weight"].copy()
    w[0, 0, 0, 0] += 0.5  # one weight of 45,000 changed
    state["ssh2.conv3X3.0.weight"] = w
    pth = tmp_path / "other.pth"
    write_legacy_checkpoint(pth, state)
    out = tmp_path / "retinaface_mobilenet025.onnx"
    with pytest.raises(ModelFileError, match="other outputs than the reference"):
        rc.convert_retinaface(pth, out)
    assert not out.exists() and not list(tmp_path.glob("*.part"))
    state["ssh2.conv3X3.0.weight"] = w[:, :32]  # a weight of another shape
    write_zip_checkpoint(pth, state)
    with pytest.raises(ModelFileError, match="do not fit the network"):
        rc.convert_retinaface(pth, out)
    del state["LandmarkHead.2.conv1x1.bias"]
    write_zip_checkpoint(pth, state)
    with pytest.raises(ModelFileError, match="LandmarkHead.2.conv1x1.bias is missing"):
        rc.convert_retinaface(pth, out)
    assert not out.exists()


# -- models download from a loopback server --------------------------------------------------
@pytest.fixture
def weights_server(tmp_path, reference_state):
    root = tmp_path / "www"
    root.mkdir()
    write_zip_checkpoint(root / "mobilenet0.25_Final.pth", reference_state)

    with loopback_http(lambda rel: root / rel) as (url, _served):
        yield url + "mobilenet0.25_Final.pth", root


def test_download_fetches_the_weights_and_converts_them(
    tmp_path, weights_server, monkeypatch
) -> None:
    from pyfaceau.modelstore import download
    from pyfaceau.modelstore.cache import file_sha256
    from pyfaceau.modelstore.store import resolve

    url, root = weights_server
    monkeypatch.setitem(download.ONNX_SOURCES, "pfld.onnx", None)  # the test fetches one file
    monkeypatch.setattr(rc, "PTH_URL", url)
    monkeypatch.setattr(rc, "PTH_SHA256", file_sha256(root / "mobilenet0.25_Final.pth"))
    dest = tmp_path / "models"
    report = download.download_models(dest, accept_license=True, groups=("onnx",))
    assert "retinaface_mobilenet025.onnx" in report.added, report.failed
    path = resolve("retinaface_mobilenet025.onnx", dest)
    assert path == dest / "retinaface_mobilenet025.onnx"
    assert_same_outputs(path, REFERENCE_ONNX)
    # a second download finds it in place; a damaged copy is refused and made again
    again = download.download_models(dest, accept_license=True, groups=("onnx",))
    assert "retinaface_mobilenet025.onnx" in again.present
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(ModelFileError, match="truncated"):
        resolve("retinaface_mobilenet025.onnx", dest)
    monkeypatch.setattr(rc, "PTH_SHA256", "0" * 64)  # the server's file is not the pinned one
    failed = download.download_models(dest, accept_license=True, groups=("onnx",))
    assert "retinaface_mobilenet025.onnx" in failed.failed
    assert "SHA256" in failed.failed["retinaface_mobilenet025.onnx"].upper()
    # a record that does not match its file is no pass
    dest.joinpath("retinaface_mobilenet025.onnx.made.json").write_text("{}")
    with pytest.raises(ModelFileError):
        resolve("retinaface_mobilenet025.onnx", dest)
