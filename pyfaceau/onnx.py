"""onnxruntime sessions for the ONNX networks (RetinaFace, PFLD): opening with one-line
:class:`~pyfaceau.errors.ModelFileError` messages, and checking that a file is the expected
network. Shared by :mod:`pyfaceau.detection` and :mod:`pyfaceau.landmarks`.

An ``onnxruntime.InferenceSession`` may be run from several threads at once
(onnxruntime's documented guarantee), so one session serves every face and thread.
"""

from __future__ import annotations

import os
from pathlib import Path

from .errors import ModelFileError

__all__ = ["open_onnx_session", "check_session_io"]


def open_onnx_session(
    path: str | os.PathLike, intra_op_threads: int = 1, data: bytes | None = None
):
    """An onnxruntime CPU session, with loading errors turned into :class:`ModelFileError`.

    Parameters
    ----------
    path : the ``.onnx`` file (named in error messages; read unless ``data`` is given).
    intra_op_threads : threads inside one operator. MODEL_NOTES.md 3: 2 threads are
        fastest on an idle 2-core machine, 1 thread when another process is busy.
    data : the model's bytes, when already read (and possibly patched) by the caller.

    Returns
    -------
    onnxruntime.InferenceSession
    """
    import onnxruntime as ort

    p = Path(path)
    if data is None and not p.is_file():
        raise ModelFileError(f"{p}: ONNX model file not found; pass an existing .onnx file")
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = int(intra_op_threads)
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.log_severity_level = 3
    try:
        source = str(p) if data is None else data
        return ort.InferenceSession(source, sess_options=opts, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own exception types
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelFileError(
            f"{p}: not a loadable ONNX model ({first[:200]}); replace the file with the "
            "original one"
        ) from None


def check_session_io(
    session, path: Path, inputs: dict[str, int], outputs: dict[str, int | None]
) -> None:
    """Check a session's input names/ranks and output names/last-axis sizes.

    Raises
    ------
    ModelFileError
        If the network is not the expected one (e.g. the other ONNX file was given).
    """
    got_in = {i.name: i for i in session.get_inputs()}
    got_out = {o.name: o for o in session.get_outputs()}
    for name, rank in inputs.items():
        if name not in got_in or len(got_in[name].shape) != rank:
            raise ModelFileError(
                f"{path}: not the expected network (input '{name}' of rank {rank} missing; "
                f"has {sorted(got_in)}); use the model file from the pyfaceau manifest"
            )
    for name, last in outputs.items():
        if name not in got_out:
            raise ModelFileError(
                f"{path}: not the expected network (output '{name}' missing; has "
                f"{sorted(got_out)}); use the model file from the pyfaceau manifest"
            )
        shape = got_out[name].shape
        if last is not None and isinstance(shape[-1], int) and shape[-1] != last:
            raise ModelFileError(
                f"{path}: not the expected network (output '{name}' has last axis {shape[-1]}, "
                f"expected {last}); use the model file from the pyfaceau manifest"
            )
