"""Result changes read one way only: which direction, and by how much."""

from __future__ import annotations

from compressor_gui.core.summaries import change_text


def test_change_says_slower_faster_size_or_same() -> None:
    assert change_text("time", 0.611, 0.887) == "1.45x slower"
    assert change_text("time", 2.1, 1.0) == "2.10x faster"
    assert change_text("time", 1.0, 1.001) == "same"
    assert change_text("size", 1_320_000, 291_940) == "0.22x size"
    assert change_text("rate", 100, 210) == "2.10x higher"
    assert change_text("rate", 100, None) == ""
