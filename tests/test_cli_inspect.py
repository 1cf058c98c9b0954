"""The `inspect` command as a user runs it: a table, JSON, and exit 2 on bad files."""

from __future__ import annotations

import json
import subprocess
import sys

from tests import modelgen


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "compressor_gui", *args],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_inspect_prints_a_table_with_totals(demo_onnx):
    result = run_cli("inspect", str(demo_onnx))
    assert result.returncode == 0, result.stderr
    assert "depthwise" in result.stdout and "total:" in result.stdout
    assert "assumed: input 'input' dim 0 (batch) is dynamic: assumed 1" in result.stdout


def test_inspect_json_is_machine_readable(tmp_path):
    path = tmp_path / "fc.onnx"
    path.write_bytes(modelgen.linear(64, 10).SerializeToString())
    result = run_cli("inspect", str(path), "--json", "--input-shape", "4x64")
    payload = json.loads(result.stdout)
    assert payload["totals"]["params"] == 650
    assert payload["layers"][0]["macs"] == 4 * 64 * 10


def test_bad_file_exits_2_with_a_message_and_no_traceback(tmp_path):
    path = tmp_path / "broken.onnx"
    path.write_bytes(b"\x08\x07\x12")
    result = run_cli("inspect", str(path))
    assert result.returncode == 2
    assert "broken.onnx" in result.stderr and "Traceback" not in result.stderr
