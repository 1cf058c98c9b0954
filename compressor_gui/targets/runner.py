"""Our runner (remote_runner.py) as its callers see it, wherever it runs (a local child
process or a box over SSH): the code to ship, the request for a model's outputs, and its
reply turned into a BenchResult or a TargetError quoting what went wrong."""

from __future__ import annotations

import contextlib
import json
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from compressor_gui.core.errors import TargetError
from compressor_gui.core.latency import LatencyStats
from compressor_gui.targets.base import BenchConfig, BenchResult

if TYPE_CHECKING:  # the benchmark child process imports this module: keep it light
    from compressor_gui.core.data import Dataset

RUNNER_FILE = "remote_runner.py"
EVAL_BATCH = 64  # samples per run, as core/evaluate.py's run_outputs feeds them locally


def runner_code() -> bytes:
    return resources.files("compressor_gui.targets").joinpath(RUNNER_FILE).read_bytes()


def outputs_request(
    config: BenchConfig, model: str, data: str, outputs_path: str, dataset: Dataset
) -> dict[str, Any]:
    """Ask the runner for every output of `model` over the npz `data`, fed as the dataset
    says (core/data.py's rule), saved to `outputs_path`; nothing is timed."""
    return {
        **config.to_dict(),
        "model": model,
        "fidelity_data": data,
        "outputs_path": outputs_path,
        "outputs_only": True,
        "forms": dict(dataset.forms),
        "feed_step": dataset.feed_step(EVAL_BATCH),
    }


def reply_from_lines(lines: list[str], exit_code: int, where: str) -> dict[str, Any]:
    """The runner's result message among the JSON lines it printed, or a TargetError quoting
    its error (or the last lines when it printed none)."""
    reply = None
    errors = []
    for line in lines:
        if not line.startswith("{"):
            continue
        with contextlib.suppress(ValueError):
            message = json.loads(line)
            if message.get("type") == "result":
                reply = message
            elif message.get("type") == "error":
                errors.append(message["message"])
    if reply is None:
        detail = "; ".join(errors) or tail(lines)
        raise TargetError(f"the remote run on {where} failed (exit {exit_code}): {detail}")
    return reply


def result_from_reply(
    target: str, model_path: Path | str, config: BenchConfig, reply: dict[str, Any]
) -> BenchResult:
    """Turn the runner's result message into a BenchResult."""
    latency = LatencyStats.from_samples(reply["latencies_ms"], config.threads)
    total_s = sum(reply["latencies_ms"]) / 1000.0
    return BenchResult(
        target=target,
        runtime=config.runtime,
        device=reply["device"],
        precision=config.precision,
        model_path=str(model_path),
        batch_size=config.batch_size,
        latency=latency,
        throughput_per_s=len(reply["latencies_ms"]) * config.batch_size / total_s,
        session_create_ms=reply.get("session_create_ms"),
        peak_memory_bytes=reply.get("peak_memory_bytes"),
        runtime_version=reply.get("runtime_version", ""),
        notes=tuple(reply.get("notes", ())),
    )


def tail(lines: list[str], count: int = 5) -> str:
    """The last lines a failed run printed, for its error message."""
    return " | ".join(line for line in lines[-count:] if line.strip()) or "no output"
