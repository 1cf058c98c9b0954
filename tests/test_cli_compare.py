"""`compressor-gui compare`: --json as a subprocess, the recipe it writes, errors as exit 2."""

from __future__ import annotations

import json
import subprocess
import sys

import onnx
import pytest

from compressor_gui.core.model import save_onnx
from compressor_gui.core.plan import CompressionPlan, LayerSetting, load_recipe
from compressor_gui.core.prune import apply_pruning

HARD_LAYER = "/block2/conv1/Conv"


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "compressor_gui", *args],
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture(scope="module")
def pruned(demo_onnx, tmp_path_factory):
    """Every layer pruned 20 %, one layer 90 % (unstructured, no fine-tuning)."""
    plan = CompressionPlan(default=LayerSetting(prune_ratio=0.2))
    plan = plan.with_layers([HARD_LAYER], prune_ratio=0.9)
    model, _ = apply_pruning(onnx.load(str(demo_onnx)), plan)
    return save_onnx(model, tmp_path_factory.mktemp("cli_compare") / "pruned.onnx")


def test_json_ranks_the_hardest_pruned_layer_first_and_writes_its_recipe(
    demo_onnx, pruned, tmp_path
):
    recipe = tmp_path / "keep.yaml"
    argv = ["compare", str(demo_onnx), str(pruned), "--json", "--samples", "64", "--top", "1"]
    result = run_cli(*argv, "--recipe-out", str(recipe))
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["samples"] == 64 and data["fidelity_only"] is False
    assert data["keep_float"] == [data["layers"][0]["name"]]
    assert data["keep_float"][0] in (HARD_LAYER, "/block2/conv2/Conv")
    assert data["recipe"]["layers"][data["keep_float"][0]] == {"bits": 32, "prune_ratio": 0.0}
    assert {"sqnr_db", "relative_error", "added_error"} <= set(data["layers"][0])
    assert data["measured_on"]["cpu_model"]
    kept = load_recipe(recipe).layers[data["keep_float"][0]]
    assert kept.bits == 32 and kept.prune_ratio == 0.0


def test_table_without_data_says_fidelity_only(demo_onnx, pruned, tmp_path):
    copy = save_onnx(onnx.load(str(demo_onnx)), tmp_path / "original.onnx")  # not "the demo"
    result = run_cli("compare", str(copy), str(pruned), "--top", "2")
    assert result.returncode == 0, result.stderr
    assert "random inputs: fidelity only" in result.stdout
    assert "top-1 100" not in result.stdout  # no accuracy claimed on noise
    assert "layers:" in result.stdout and "--exclude " in result.stdout


def test_a_second_file_that_is_not_a_model_exits_2(demo_onnx, tmp_path):
    text = tmp_path / "notes.onnx"
    text.write_text("not a model\n")
    result = run_cli("compare", str(demo_onnx), str(text))
    assert result.returncode == 2
    assert result.stderr.startswith("error: ") and len(result.stderr.strip().splitlines()) == 1


def test_a_missing_file_exits_2(demo_onnx, tmp_path):
    result = run_cli("compare", str(demo_onnx), str(tmp_path / "nope.onnx"))
    assert result.returncode == 2 and "nope.onnx" in result.stderr


def test_a_model_whose_layers_cannot_be_observed_says_so(tmp_path, capsys):
    """Its only Conv sits in If branches chosen by the data itself: nothing was compared, so
    the last line may not say that no layer adds error."""
    from compressor_gui.cli import main
    from tests import modelgen

    original = tmp_path / "branchy.onnx"
    onnx.save(modelgen.conv_in_if_branch(), str(original))
    compressed = tmp_path / "branchy_int8.onnx"
    compress = ["compress", str(original), "--int8", "-o", str(compressed), "--no-latency"]
    assert main(compress) == 0
    capsys.readouterr()
    assert main(["compare", str(original), str(compressed)]) == 0
    out = capsys.readouterr().out
    assert "inside a subgraph: not observed" in out
    assert out.rstrip().endswith(
        "no layer could be compared (the notes say why): nothing to suggest"
    )
