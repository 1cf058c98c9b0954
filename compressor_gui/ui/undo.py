"""Undoable plan edits. A slider drag is one gesture, so it merges into one undo step."""

from __future__ import annotations

from typing import TYPE_CHECKING

from PySide6.QtGui import QUndoCommand

from compressor_gui.core.plan import CompressionPlan

if TYPE_CHECKING:
    from compressor_gui.ui.session import Session

_EDIT_ID = 1


class PlanEdit(QUndoCommand):
    """Replace the session's plan; undo restores the one before."""

    def __init__(
        self,
        session: Session,
        before: CompressionPlan,
        after: CompressionPlan,
        text: str,
        merge_key: tuple | None = None,
    ) -> None:
        super().__init__(text)
        self._session = session
        self._before = before
        self._after = after
        self._merge_key = merge_key

    def id(self) -> int:
        return _EDIT_ID

    def mergeWith(self, other: QUndoCommand) -> bool:  # noqa: N802 (Qt API)
        """Steps of one gesture (same slider, same layers) collapse into the first."""
        if not isinstance(other, PlanEdit) or self._merge_key is None:
            return False
        if other._merge_key != self._merge_key:
            return False
        self._after = other._after
        self.setText(other.text())
        return True

    def redo(self) -> None:
        self._session._apply_plan(self._after)

    def undo(self) -> None:
        self._session._apply_plan(self._before)
