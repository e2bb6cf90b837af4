"""Many inputs: a batch on every core (or on a Dask cluster) that survives faults and resumes.

- :func:`run_batch`: the whole batch (``pyfaceau batch`` calls it).
- :func:`discover_inputs`: which inputs, and where each one's CSV goes
  (:mod:`pyfaceau.batch.inputs` has the rules).
- :func:`plan_workers`: worker processes and threads per input.
- :mod:`pyfaceau.batch.records`: the record beside each output, and the run summary.
- :class:`SideOutputs`: the aligned faces, HOG file, tracked video and per-person CSVs
  written beside each CSV (:mod:`pyfaceau.batch.outputs`).
- :func:`run_task`: one input, as a worker runs it.
"""

from __future__ import annotations

from .inputs import VIDEO_SUFFIXES, BatchInput, discover_inputs
from .outputs import SideOutputs
from .records import SUMMARY_NAME, Status, SummaryRow
from .runner import BatchProgress, BatchReport, plan_workers, run_batch
from .worker import BatchTask, TaskResult, run_task

__all__ = [
    "VIDEO_SUFFIXES",
    "BatchInput",
    "BatchProgress",
    "BatchReport",
    "BatchTask",
    "SideOutputs",
    "SUMMARY_NAME",
    "Status",
    "SummaryRow",
    "TaskResult",
    "discover_inputs",
    "plan_workers",
    "run_batch",
    "run_task",
]
