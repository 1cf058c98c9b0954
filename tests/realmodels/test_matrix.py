"""Issue 14's verb x model matrix: every CLI verb on every real model of the suite.

inspect, compress (--int8 with data, --fp16, --int4), sensitivity, evaluate and bench exit 0
with a result; the other verbs exit 0, or 2 with a one-line reason. Exit 3 (internal error),
a traceback or a file left in the working directory fails every cell. compress --int8 with
calibration data that fits the model writes a file <= 0.35x the original that keeps cosine
>= 0.99 on held-out data.
"""

from __future__ import annotations

import pytest

from tests.realmodels.matrix import MUST_SUCCEED, VERBS
from tests.realmodels.suite import MODELS

# Cells that fail today because of work in progress elsewhere, in one place:
# (model, verb) -> (what happens, who is fixing it). Remove an entry once its fix lands.
EXPECTED_FAILURES: dict[tuple[str, str], tuple[str, str]] = {}

# compress --int8 of a Paddle export (calibration, fallbacks, evaluation) took over five
# minutes of wall time on two cores shared with other work (load average 12-18), the
# recognizer's (16 lines, static then weight-only) about twelve.
pytestmark = pytest.mark.timeout(1800)


def expected_failure(model_name: str, verb: str) -> list[pytest.MarkDecorator]:
    """A strict xfail where EXPECTED_FAILURES lists the cell: once fixed, the run fails until
    the entry is removed."""
    if (model_name, verb) not in EXPECTED_FAILURES:
        return []
    what, owner = EXPECTED_FAILURES[(model_name, verb)]
    return [pytest.mark.xfail(reason=f"{what} ({owner})", strict=True)]


# Rows of several minutes each on two cores (the INT8 cells calibrate, fall back and evaluate
# large Paddle graphs at 320-800 px): `make test-real` runs them, `make test` the other rows,
# which together still cover a Paddle export with Constant weights and dynamic H x W
# (ppocr-cls), a published CNN, an LSTM in If subgraphs and a transformer encoder.
HEAVY_MODELS = frozenset({"ppocr-det", "ppocr-rec", "layout-picodet"})


def marks_of(model_name: str, verb: str) -> list[pytest.MarkDecorator]:
    heavy = [pytest.mark.heavy] if model_name in HEAVY_MODELS else []
    return heavy + expected_failure(model_name, verb)


def _cases():
    for model in MODELS:
        for verb in VERBS:
            marks = marks_of(model.name, verb)
            yield pytest.param(model.name, verb, marks=marks, id=f"{model.name}:{verb}")


@pytest.mark.parametrize(("model_name", "verb"), list(_cases()))
def test_verb_on_real_model(workspace, model_name, verb):
    cell = workspace.cell(model_name, verb)
    assert "Traceback" not in cell.stderr, cell.stderr
    assert cell.stray_files == (), f"left in the working directory: {cell.stray_files}"
    assert cell.exit_code != 3, cell.stderr
    if verb in MUST_SUCCEED:
        assert cell.exit_code == 0, cell.reason
        assert cell.result, f"no result printed: {cell.stdout[:200]}"
    else:
        assert cell.exit_code in (0, 2), cell.stderr
        if cell.exit_code == 2:
            assert cell.reason and "\n" not in cell.reason
    if verb == "compress --int8":
        assert_really_quantized(cell.result)
    if verb == "compress --fp16":  # float16 weights halve the file (silero-vad was 0.96x:
        # onnxslim's fused branches repeated tensor names, which the converter asserts on)
        assert cell.result["after"]["size_bytes"] <= 0.6 * cell.result["before"]["size_bytes"]


def assert_really_quantized(result: dict) -> None:
    """compress --int8 with fitting calibration data: a file <= 0.35x that keeps cosine."""
    before, after = result["before"], result["after"]
    ratio = after["size_bytes"] / before["size_bytes"]
    assert ratio <= 0.35, f"file {ratio:.2f}x the original"
    assert after["eval"]["cosine"] >= 0.99
