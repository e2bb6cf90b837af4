"""``retinaface_mobilenet025.onnx`` made from the public PyTorch weights, without PyTorch.

The fast path's face detector is RetinaFace with a MobileNet-0.25 backbone
(biubug6/Pytorch_Retinaface, as bundled in cunjian/pytorch_face_landmark). Its weights are
published as ``mobilenet0.25_Final.pth`` (a PyTorch state dict); no public ONNX export of
them has a pinned hash. This module reads that state dict
(:func:`~pyfaceau.modelstore.torch_checkpoint.read_torch_state_dict`), folds each batch
normalisation into its convolution the way PyTorch's ONNX exporter does
(``torch/csrc/jit/passes/onnx/eval_peephole.cpp``, ``fuseConvBatchNorm``: float32
``s = gamma / sqrt(var + eps)``, ``W * s``, ``beta - mean * s``), builds the network's
graph with the ``onnx`` package (the layout of ``shared/models/MODEL_NOTES.md`` section 1:
input ``[N, 3, H, W]`` BGR minus the means, outputs ``loc``, ``conf`` (softmax), ``landms``),
and checks the result before it is used: on a fixed input the converted network must give
the outputs that pyfaceau's reference export gives (:data:`CHECK_FILE`, within
:data:`CHECK_TOLERANCE`), otherwise nothing is written.

The network (``models/net.py`` and ``models/retinaface.py`` of those repositories):
MobileNet-0.25 (``body.stage1..3``: a 3x3 conv and 13 depthwise-separable blocks, leaky
ReLU 0.1), an FPN over the three stages (1x1 convs, nearest upsampling to the finer map,
3x3 merge convs), an SSH context module per level (3x3 conv of 32 channels; 3x3 convs of
16 channels stacked two and three deep; concatenated, ReLU) and, per level, 1x1 heads for
boxes (2 anchors x 4), classes (2 x 2) and five landmarks (2 x 10).
"""

from __future__ import annotations

import hashlib
import json
import os
from importlib import resources
from pathlib import Path

import numpy as np

from ..errors import ModelFileError
from .cache import file_sha256
from .store import MADE_RECORD_SUFFIX
from .torch_checkpoint import read_torch_state_dict

__all__ = [
    "PTH_SHA256",
    "PTH_SIZE",
    "PTH_URL",
    "CHECK_FILE",
    "CHECK_TOLERANCE",
    "retinaface_onnx_bytes",
    "check_retinaface_onnx",
    "convert_retinaface",
]

#: The public weights at the commit ``shared/models/MODEL_NOTES.md`` names.
PTH_URL = (
    "https://raw.githubusercontent.com/cunjian/pytorch_face_landmark/"
    "6f34bf9f034aa2f521952f825e6ccc567deb42d6/Retinaface/weights/mobilenet0.25_Final.pth"
)
PTH_SHA256 = "5f88f7957d9eaef82b49b9e0202bc56e97292e2aede2999209accd34442cc4df"
PTH_SIZE = 1_786_259

#: Package file with a fixed image (64 x 96 BGR uint8: noise and a bright disc) and the
#: reference export's outputs for it.
CHECK_FILE = "retinaface_check.npz"
#: Largest absolute difference accepted between the converted network's outputs and the
#: reference's on the check input (float32 noise of another CPU's kernels is ~1e-5; a
#: wrong weight changes outputs by far more).
CHECK_TOLERANCE = 1e-3

_BN_EPS = np.float32(1e-5)  # nn.BatchNorm2d's default, the ONNX node's epsilon
_MEANS = np.array([104, 117, 123], dtype=np.float32)  # BGR means the network expects removed
_LEAKY = 0.1  # every leaky ReLU of the network (out_channel <= 64)
_OPSET = 17

#: MobileNet-0.25's depthwise-separable blocks per stage: (stage, index, stride).
_BODY = (
    [("stage1", i, s) for i, s in ((1, 1), (2, 2), (3, 1), (4, 2), (5, 1))]
    + [("stage2", i, s) for i, s in ((0, 2), (1, 1), (2, 1), (3, 1), (4, 1), (5, 1))]
    + [("stage3", i, s) for i, s in ((0, 2), (1, 1))]
)


def _fold(state: dict[str, np.ndarray], conv: str, bn: str) -> tuple[np.ndarray, np.ndarray]:
    """A bias-free convolution and its batch normalisation as one convolution (float32,
    in ``fuseConvBatchNorm``'s order of operations)."""
    try:
        w = state[f"{conv}.weight"].astype(np.float32)
        gamma = state[f"{bn}.weight"].astype(np.float32)
        beta = state[f"{bn}.bias"].astype(np.float32)
        mean = state[f"{bn}.running_mean"].astype(np.float32)
        var = state[f"{bn}.running_var"].astype(np.float32)
    except KeyError as exc:
        raise ModelFileError(f"RetinaFace weights: {exc.args[0]} is missing") from exc
    scale = gamma / np.sqrt(var + _BN_EPS)
    weight = w * scale.reshape(-1, *([1] * (w.ndim - 1)))
    bias = beta - mean * scale
    return weight.astype(np.float32), bias.astype(np.float32)


class _Graph:
    """Nodes and initialisers of the ONNX graph under construction."""

    def __init__(self) -> None:
        from onnx import helper, numpy_helper

        self.helper, self.numpy_helper = helper, numpy_helper
        self.nodes: list = []
        self.inits: list = []

    def const(self, name: str, value: np.ndarray) -> str:
        self.inits.append(self.numpy_helper.from_array(np.asarray(value), name))
        return name

    def op(self, op: str, inputs: list[str], name: str, **attrs: object) -> str:
        self.nodes.append(self.helper.make_node(op, inputs, [name], name=name, **attrs))
        return name

    def conv(self, x: str, name: str, weight: np.ndarray, bias: np.ndarray, stride: int = 1,
             group: int = 1, act: str | None = "leaky") -> str:
        k = weight.shape[2]
        y = self.op(
            "Conv", [x, self.const(f"{name}.weight", weight), self.const(f"{name}.bias", bias)],
            f"{name}.conv", kernel_shape=[k, k], strides=[stride, stride],
            pads=[k // 2] * 4, group=group, dilations=[1, 1],
        )
        if act == "leaky":
            return self.op("LeakyRelu", [y], f"{name}.act", alpha=_LEAKY)
        return y


def _conv_bn(g: _Graph, state: dict, x: str, prefix: str, stride: int = 1,
             act: str | None = "leaky") -> str:
    w, b = _fold(state, f"{prefix}.0", f"{prefix}.1")
    return g.conv(x, prefix, w, b, stride, act=act)


def _depthwise_block(g: _Graph, state: dict, x: str, prefix: str, stride: int) -> str:
    w, b = _fold(state, f"{prefix}.0", f"{prefix}.1")
    x = g.conv(x, f"{prefix}.dw", w, b, stride, group=w.shape[0])
    w, b = _fold(state, f"{prefix}.3", f"{prefix}.4")
    return g.conv(x, f"{prefix}.pw", w, b)


def _upsample_to(g: _Graph, x: str, like: str, name: str) -> str:
    """Nearest upsampling of ``x`` to the spatial size of ``like`` (``F.interpolate(size=)``
    with mode ``nearest``: ``floor(dst * in / out)``)."""
    shape_x = g.op("Shape", [x], f"{name}.shape_x")
    shape_like = g.op("Shape", [like], f"{name}.shape_like")
    nc = g.op("Slice", [shape_x, g.const(f"{name}.s0", np.array([0])),
                        g.const(f"{name}.s2", np.array([2]))], f"{name}.nc")
    hw = g.op("Slice", [shape_like, g.const(f"{name}.t2", np.array([2])),
                        g.const(f"{name}.t4", np.array([4]))], f"{name}.hw")
    sizes = g.op("Concat", [nc, hw], f"{name}.sizes", axis=0)
    return g.op("Resize", [x, "", "", sizes], name, mode="nearest",
                coordinate_transformation_mode="asymmetric", nearest_mode="floor")


def _ssh(g: _Graph, state: dict, x: str, prefix: str) -> str:
    c3 = _conv_bn(g, state, x, f"{prefix}.conv3X3", act=None)
    c5_1 = _conv_bn(g, state, x, f"{prefix}.conv5X5_1")
    c5 = _conv_bn(g, state, c5_1, f"{prefix}.conv5X5_2", act=None)
    c7_2 = _conv_bn(g, state, c5_1, f"{prefix}.conv7X7_2")
    c7 = _conv_bn(g, state, c7_2, f"{prefix}.conv7x7_3", act=None)
    cat = g.op("Concat", [c3, c5, c7], f"{prefix}.concat", axis=1)
    return g.op("Relu", [cat], f"{prefix}.relu")


def _head(g: _Graph, state: dict, features: list[str], head: str, width: int) -> str:
    parts = []
    for i, f in enumerate(features):
        prefix = f"{head}.{i}.conv1x1"
        try:
            w, b = state[f"{prefix}.weight"], state[f"{prefix}.bias"]
        except KeyError as exc:
            raise ModelFileError(f"RetinaFace weights: {exc.args[0]} is missing") from exc
        y = g.conv(f, prefix, w.astype(np.float32), b.astype(np.float32), act=None)
        y = g.op("Transpose", [y], f"{prefix}.nhwc", perm=[0, 2, 3, 1])
        shape = g.const(f"{prefix}.rows", np.array([0, -1, width], dtype=np.int64))
        parts.append(g.op("Reshape", [y, shape], f"{prefix}.rows_out"))
    return g.op("Concat", parts, f"{head}.concat", axis=1)


def retinaface_onnx_bytes(state: dict[str, np.ndarray]) -> bytes:
    """The serialised ONNX model of RetinaFace MobileNet-0.25 with the weights of ``state``
    (the state dict of ``mobilenet0.25_Final.pth``). Raises :class:`ModelFileError` when a
    weight is missing or has another shape than the network's."""
    from onnx import TensorProto, checker, helper

    g = _Graph()
    x = _conv_bn(g, state, "input", "body.stage1.0", stride=2)
    stages = {}
    for stage, index, stride in _BODY:
        x = _depthwise_block(g, state, x, f"body.{stage}.{index}", stride)
        stages[stage] = x
    out1 = _conv_bn(g, state, stages["stage1"], "fpn.output1")
    out2 = _conv_bn(g, state, stages["stage2"], "fpn.output2")
    out3 = _conv_bn(g, state, stages["stage3"], "fpn.output3")
    up3 = _upsample_to(g, out3, out2, "fpn.up3")
    out2 = _conv_bn(g, state, g.op("Add", [out2, up3], "fpn.add2"), "fpn.merge2")
    up2 = _upsample_to(g, out2, out1, "fpn.up2")
    out1 = _conv_bn(g, state, g.op("Add", [out1, up2], "fpn.add1"), "fpn.merge1")
    features = [_ssh(g, state, f, f"ssh{i + 1}") for i, f in enumerate((out1, out2, out3))]
    loc = _head(g, state, features, "BboxHead", 4)
    logits = _head(g, state, features, "ClassHead", 2)
    landms = _head(g, state, features, "LandmarkHead", 10)
    nodes = g.nodes + [
        helper.make_node("Softmax", [logits], ["conf"], name="conf", axis=-1),
        helper.make_node("Identity", [loc], ["loc"], name="loc"),
        helper.make_node("Identity", [landms], ["landms"], name="landms"),
    ]
    graph = helper.make_graph(
        nodes,
        "retinaface_mobilenet025",
        [helper.make_tensor_value_info(
            "input", TensorProto.FLOAT, ["batch", 3, "height", "width"]
        )],
        [
            helper.make_tensor_value_info("loc", TensorProto.FLOAT, ["batch", "priors", 4]),
            helper.make_tensor_value_info("conf", TensorProto.FLOAT, ["batch", "priors", 2]),
            helper.make_tensor_value_info("landms", TensorProto.FLOAT, ["batch", "priors", 10]),
        ],
        initializer=g.inits,
    )
    model = helper.make_model(
        graph, producer_name="pyfaceau", opset_imports=[helper.make_opsetid("", _OPSET)]
    )
    model.ir_version = 8
    try:
        checker.check_model(model, full_check=True)
    except Exception as exc:  # onnx's ValidationError / shape inference errors
        raise ModelFileError(f"RetinaFace weights do not fit the network: {exc}") from exc
    return model.SerializeToString()


def _check_data() -> dict[str, np.ndarray]:
    with resources.files(__package__).joinpath(CHECK_FILE).open("rb") as f:
        with np.load(f) as data:
            return {k: data[k] for k in data.files}


def check_retinaface_onnx(model: bytes | str | os.PathLike) -> float:
    """Run a RetinaFace ONNX model on the check input and return its largest absolute
    difference from the reference outputs (:data:`CHECK_FILE`)."""
    import onnxruntime as ort

    data = _check_data()
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.log_severity_level = 3
    source = model if isinstance(model, bytes) else str(model)
    try:
        session = ort.InferenceSession(source, sess_options=opts,
                                       providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own exception types
        raise ModelFileError(f"RetinaFace model does not load: {str(exc)[:200]}") from None
    names = [o.name for o in session.get_outputs()]
    image = data["image"].astype(np.float32) - _MEANS  # (H, W, 3) BGR, as the detector feeds it
    x = np.ascontiguousarray(image.transpose(2, 0, 1)[None])
    try:
        outputs = dict(zip(names, session.run(None, {"input": x})))
    except Exception as exc:  # e.g. a weight of another shape than the network's
        raise ModelFileError(
            f"RetinaFace weights do not fit the network: {str(exc)[:200]}"
        ) from None
    worst = 0.0
    for key in ("loc", "conf", "landms"):
        got = outputs.get(key)
        if got is None or got.shape != data[key].shape:
            return float("inf")
        worst = max(worst, float(np.max(np.abs(got.astype(np.float64) - data[key]))))
    return worst


def convert_retinaface(pth: str | os.PathLike, out: str | os.PathLike) -> Path:
    """Convert ``mobilenet0.25_Final.pth`` into the fast path's RetinaFace ONNX model.

    The converted network is checked against the reference outputs before anything is
    written; ``out`` is written atomically (a temporary file renamed into place), with a
    record beside it (``out`` + :data:`~pyfaceau.modelstore.store.MADE_RECORD_SUFFIX`:
    the file's SHA-256 and size, the weights' SHA-256 and the check's result) by which the
    model store accepts it in place of the pinned export.

    Raises
    ------
    ModelFileError
        The checkpoint is unreadable, lacks a weight, or its network's outputs differ from
        the reference (other weights than ``mobilenet0.25_Final.pth``'s).
    """
    state = {k.removeprefix("module."): v for k, v in read_torch_state_dict(pth).items()}
    model = retinaface_onnx_bytes(state)
    worst = check_retinaface_onnx(model)
    if not worst <= CHECK_TOLERANCE:
        raise ModelFileError(
            f"{pth}: the converted RetinaFace gives other outputs than the reference "
            f"(largest difference {worst:.3g} > {CHECK_TOLERANCE}); not "
            f"mobilenet0.25_Final.pth (SHA-256 {PTH_SHA256[:12]}...)?"
        )
    target = Path(out)
    target.parent.mkdir(parents=True, exist_ok=True)
    record = target.with_name(target.name + MADE_RECORD_SUFFIX)
    record.unlink(missing_ok=True)  # never a record beside another file
    tmp = target.with_name(target.name + ".part")
    tmp.write_bytes(model)
    os.replace(tmp, target)
    made = {
        "source": Path(pth).name,
        "source_sha256": file_sha256(Path(pth)),
        "sha256": hashlib.sha256(model).hexdigest(),
        "size": len(model),
        "check_max_abs_difference": worst,
    }
    tmp = record.with_name(record.name + ".part")
    tmp.write_text(json.dumps(made, indent=1) + "\n")
    os.replace(tmp, record)
    return target
