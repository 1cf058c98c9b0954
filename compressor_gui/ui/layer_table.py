"""The layer table: inventory facts and the plan's setting per row, sortable and filterable."""

from __future__ import annotations

from PySide6.QtCore import (
    QAbstractTableModel,
    QModelIndex,
    QPersistentModelIndex,
    QSortFilterProxyModel,
    Qt,
)

from compressor_gui.core.inventory import LayerInfo
from compressor_gui.formatting import human_bytes, human_count
from compressor_gui.ui.session import Session

SORT_ROLE = Qt.ItemDataRole.UserRole + 1
_Index = QModelIndex | QPersistentModelIndex


COLUMN_NAMES = [
    "Layer",
    "Op",
    "Shape",
    "Params",
    "Bytes",
    "MACs",
    "Sparsity",
    "Sensitivity",
    "Bits",
    "Prune",
    "Pattern",
]


def _worst_drop(session: Session, name: str) -> float | None:
    """The layer's largest measured metric drop over the swept options (None: not measured)."""
    table = session.sensitivity
    if table is None:
        return None
    drops = [p.drop for p in table.curve(name) if p.drop is not None]
    return max(drops) if drops else None


def _cell(session: Session, layer: LayerInfo, column: str) -> tuple[str, object]:
    """The text shown and the raw value sorted by, for one cell."""
    setting = session.plan.setting(layer.name)
    match column:
        case "Layer":
            return layer.name, layer.name
        case "Op":
            return layer.op_type, layer.op_type
        case "Shape":
            return "x".join(map(str, layer.weight_shape)), layer.params
        case "Params":
            return human_count(layer.params), layer.params
        case "Bytes":
            return human_bytes(layer.size_bytes), layer.size_bytes
        case "MACs":
            return human_count(layer.macs), -1 if layer.macs is None else layer.macs
        case "Sparsity":
            return f"{layer.sparsity:.1%}", layer.sparsity
        case "Sensitivity":
            worst = _worst_drop(session, layer.name)
            return ("", -1.0) if worst is None else (f"{worst:.2f} pts", worst)
        case "Bits":
            return str(setting.bits), setting.bits
        case "Prune":
            return f"{setting.prune_ratio:.0%}", setting.prune_ratio
        case _:
            return setting.prune_pattern, setting.prune_pattern


PLAN_COLUMNS = range(COLUMN_NAMES.index("Bits"), len(COLUMN_NAMES))
_NUMERIC = {"Params", "Bytes", "MACs", "Sparsity", "Sensitivity", "Bits", "Prune"}


class LayerTableModel(QAbstractTableModel):
    """One row per inventory layer; plan columns refresh when the plan changes."""

    def __init__(self, session: Session) -> None:
        super().__init__(session)
        self._session = session
        self._layers: tuple[LayerInfo, ...] = ()
        session.model_changed.connect(self._reset)
        session.plan_changed.connect(self._plan_changed)
        session.sensitivity_changed.connect(self._reset)

    def _reset(self) -> None:
        self.beginResetModel()
        inv = self._session.inventory
        self._layers = inv.layers if inv else ()
        self.endResetModel()

    def _plan_changed(self) -> None:
        if self._layers:
            top = self.index(0, PLAN_COLUMNS.start)
            bottom = self.index(len(self._layers) - 1, PLAN_COLUMNS.stop - 1)
            self.dataChanged.emit(top, bottom, [Qt.ItemDataRole.DisplayRole])

    def layer(self, row: int) -> LayerInfo:
        return self._layers[row]

    def rowCount(self, parent: _Index = QModelIndex()) -> int:  # noqa: B008, N802
        return 0 if parent.isValid() else len(self._layers)

    def columnCount(self, parent: _Index = QModelIndex()) -> int:  # noqa: B008, N802
        return 0 if parent.isValid() else len(COLUMN_NAMES)

    def data(self, index: _Index, role: int = Qt.ItemDataRole.DisplayRole):
        if not index.isValid():
            return None
        layer = self._layers[index.row()]
        name = COLUMN_NAMES[index.column()]
        if role == Qt.ItemDataRole.DisplayRole:
            return _cell(self._session, layer, name)[0]
        if role == SORT_ROLE:
            return _cell(self._session, layer, name)[1]
        if role == Qt.ItemDataRole.TextAlignmentRole and name in _NUMERIC:
            return int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        if role == Qt.ItemDataRole.ToolTipRole and index.column() == 0:
            notes = "\n".join(layer.notes)
            where = f"\nin subgraph {layer.graph}" if layer.graph else ""
            return f"{layer.name} ({layer.kind}){where}" + (f"\n{notes}" if notes else "")
        return None

    def headerData(self, section: int, orientation, role: int = Qt.ItemDataRole.DisplayRole):  # noqa: N802
        if orientation == Qt.Orientation.Horizontal and role == Qt.ItemDataRole.DisplayRole:
            return COLUMN_NAMES[section]
        return None


class LayerFilterProxy(QSortFilterProxyModel):
    """Sorts by raw values (not the formatted text) and filters on layer name or op type."""

    def __init__(self, source: LayerTableModel) -> None:
        super().__init__(source)
        self.setSourceModel(source)
        self.setSortRole(SORT_ROLE)
        self._needle = ""

    def set_filter_text(self, text: str) -> None:
        self.beginFilterChange()
        self._needle = text.strip().lower()
        self.endFilterChange(QSortFilterProxyModel.Direction.Rows)

    def filterAcceptsRow(self, row: int, parent: _Index) -> bool:  # noqa: N802
        if not self._needle:
            return True
        layer = self.sourceModel().layer(row)
        return self._needle in layer.name.lower() or self._needle in layer.op_type.lower()
