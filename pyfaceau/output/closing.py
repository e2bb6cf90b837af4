"""The context-manager protocol shared by the output writers."""

from __future__ import annotations

from types import TracebackType
from typing import TypeVar

__all__ = ["ClosingWriter"]

_W = TypeVar("_W", bound="ClosingWriter")


class ClosingWriter:
    """A writer used as ``with Writer(...) as w:``; leaving the block calls :meth:`close`."""

    def close(self) -> None:  # pragma: no cover - every writer defines it
        raise NotImplementedError

    def __enter__(self: _W) -> _W:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
