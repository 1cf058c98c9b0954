"""What to do next, worded for each door: the command line names its flags and verbs, the
window its menus and buttons.

Core messages are written in the command line's words, taken from this table; the window
shows every message through `in_window_words`, which puts each phrase's window wording in
its place. A phrase written here once is worded right at both doors.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Advice:
    """One thing a user can do, as each door says it."""

    cli: str
    window: str


FIND_LOSSY_LAYERS = Advice(
    "Run `compressor-gui compare ORIGINAL COMPRESSED --data D` to find the layers that lose "
    "most and keep them float (--exclude NAME)",
    "The Layer error tab (Run ▸ Where did accuracy go?) shows the layers that lose most; "
    "its Keep worst float button keeps them float",
)
AVOID_U8S8_SATURATION = Advice(
    "try --reduce-range or --weight-type u8 (or int8_form: auto)",
    "try Edit ▸ INT8 form ▸ u8s8-rr or u8u8 (or auto)",
)
GIVE_DATA = Advice(
    "give --data D (an .npz or an image folder)",
    "choose data (Run ▸ Choose data file… or Choose image folder…)",
)
GIVE_EVAL_DATA = Advice(
    "give --eval-data E",
    "to measure on other data, choose it (Run ▸ Choose data file…) and run Run ▸ Evaluate",
)
WITHOUT_DATA = Advice("without --data", "without data chosen")
OTHER_CALIBRATION = Advice(
    "another --calibration (entropy, minmax)",
    "another calibration method (a recipe with calibration: entropy or minmax, through "
    "File ▸ Load recipe…)",
)
SMALLER_PRUNING = Advice(
    "prune channels (--pattern channel) or quantize as well (--int8, --int4)",
    "prune channels (Pattern: channel) or quantize as well (Bits 8 or 4)",
)

ALL = (
    FIND_LOSSY_LAYERS,
    AVOID_U8S8_SATURATION,
    GIVE_DATA,
    GIVE_EVAL_DATA,
    WITHOUT_DATA,
    OTHER_CALIBRATION,
    SMALLER_PRUNING,
)


def in_window_words(text: str) -> str:
    """`text` with each command-line phrase of the table in its window wording."""
    for advice in ALL:
        text = text.replace(advice.cli, advice.window)
    return text
