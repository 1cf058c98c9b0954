"""NVIDIA Jetson specifics: parse trtexec (TensorRT 8 and 10), tegrastats (Nano to Orin, JetPack
4 to 7) and the L4T release; find the tools on a box, build the trtexec and tegrastats command
lines. What runs there, not how it gets there: the SSH transport never appears here.

Formats follow NVIDIA's sampleReporting.cpp and the real board output in our test fixtures.
"""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from compressor_gui.core.errors import TargetError
from compressor_gui.core.latency import LatencyStats
from compressor_gui.targets.base import BenchConfig, BenchResult

TIMES_MARK = "@@TRTEXEC_TIMES"
TRTEXEC_FALLBACK = "/usr/src/tensorrt/bin/trtexec"
TEGRASTATS_INTERVAL_MS = 200
# A shell line printing `tegrastats=PATH` and `trtexec=PATH` for the tools a box has.
TOOLS_PROBE = (
    'T=$(command -v tegrastats); [ -n "$T" ] && echo "tegrastats=$T"; '
    "T=$(command -v trtexec || ls /usr/src/tensorrt/bin/trtexec 2>/dev/null); "
    '[ -n "$T" ] && echo "trtexec=$T"; true'
)

_FRAME_RE = re.compile(
    r"^&&&& (RUNNING|PASSED|FAILED) TensorRT\.trtexec \[TensorRT v(\d+)\](?: \[b\d+\])? # (.*)$"
)
_PREFIX_RE = re.compile(r"^\[[\d/]+-[\d:]+\] \[([IWEV])\] (?:\[TRT\] )?")
_STAT_RE = re.compile(
    r"^(Latency|End-to-End Host Latency|Enqueue Time|H2D Latency|"
    r"GPU Compute Time|D2H Latency): (.*)$"
)
_VALUE_RE = re.compile(r"(min|max|mean|median|percentile\((\d+(?:\.\d+)?)%\)) = ([-\d.e+]+) ms")
_L4T_RE = re.compile(
    r"^# R(\d+) \(release\), REVISION: ([\d.]+)(?:, GCID: (\d+))?(?:, BOARD: ([\w-]+))?"
)
_TIMESTAMP_RE = re.compile(r"^\d+-\d+-\d+ \d+:\d+:\d+ ")
_RAM_RE = re.compile(r"\bRAM (\d+)/(\d+)MB")
_CPU_RE = re.compile(r"\bCPU \[([^\]]*)\]|\bcpu \[([^\]]*)\]@\d+")
_GPU_RE = re.compile(r"\bGR3D(?:_FREQ)? (\d+)%")
_TEMP_RE = re.compile(r"\b([A-Za-z][\w]*)@(-?\d+(?:\.\d+)?)C\b")
_POWER_RE = re.compile(r"\b([A-Z][A-Z0-9_]*) (\d+)(?:mW)?/(\d+)(?:mW)?(?:/\d+(?:mW)?)?\b")
SENSOR_OFF_C = -256.0


# ---------------------------------------------------------------- L4T and board


def parse_l4t_release(text: str) -> dict[str, Any] | None:
    """First line of /etc/nv_tegra_release -> {"version": "36.3.0", "major", "revision", ...}."""
    for line in text.splitlines():
        match = _L4T_RE.match(line.strip())
        if match:
            major, revision, gcid, board = match.groups()
            return {
                "version": f"{major}.{revision}",
                "major": int(major),
                "revision": revision,
                "gcid": gcid,
                "board": board,
            }
    return None


def parse_device_model(raw: bytes | str) -> str:
    """/proc/device-tree/model is NUL-terminated; return the clean board name."""
    text = raw.decode(errors="replace") if isinstance(raw, bytes) else raw
    return text.replace("\0", "").strip()


def found_tools(probe_output: str) -> dict[str, str]:
    """{"tegrastats": path, "trtexec": path} for the tools TOOLS_PROBE found."""
    tools = {}
    for line in probe_output.splitlines():
        name, sep, path = line.partition("=")
        if sep and name in ("tegrastats", "trtexec") and path.strip():
            tools[name] = path.strip()
    return tools


# ---------------------------------------------------------------- trtexec


@dataclass(frozen=True)
class TrtexecReport:
    """What a trtexec log says; `stats` maps a section (e.g. "Latency") to its values in ms."""

    passed: bool
    version: str | None
    command: str | None
    throughput_qps: float | None
    stats: dict[str, dict[str, float]] = field(default_factory=dict)
    errors: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()
    device: str | None = None
    engine_build_s: float | None = None
    engine_load_s: float | None = None


def trt_version(token: str) -> str:
    """v8001 -> 8.0.1, v8502 -> 8.5.2, v100300 -> 10.3.0 (MMmmpp for 10.x, Mmpp for 8.x)."""
    number = int(token)
    if number >= 100000:
        return f"{number // 10000}.{number // 100 % 100}.{number % 100}"
    return f"{number // 1000}.{number // 100 % 10}.{number % 100}"


def parse_trtexec(log: str) -> TrtexecReport:
    passed = False
    version = command = device = None
    throughput = build_s = load_s = None
    stats: dict[str, dict[str, float]] = {}
    errors: list[str] = []
    warnings: list[str] = []
    saw_frame_end = False
    for raw in log.splitlines():
        line = raw.rstrip()
        frame = _FRAME_RE.match(line)
        if frame:
            state, token, command = frame.groups()
            version = trt_version(token)
            if state != "RUNNING":
                passed, saw_frame_end = state == "PASSED", True
            continue
        prefix = _PREFIX_RE.match(line)
        level = prefix.group(1) if prefix else None
        body = line[prefix.end() :] if prefix else line.strip()
        if level == "E" or body.startswith("ERROR:"):
            errors.append(body)
        elif level == "W":
            warnings.append(body)
        if body.startswith("Throughput: ") and body.endswith(" qps"):
            throughput = float(body.split()[1])
        elif body.startswith("Selected Device: "):
            device = body.split(": ", 1)[1]
        elif match := re.match(r"Engine built in ([\d.]+) sec", body):
            build_s = float(match.group(1))
        elif match := re.match(r"Engine (?:loaded|deserialized) in ([\d.]+) sec", body):
            load_s = float(match.group(1))
        elif match := _STAT_RE.match(body):
            values = {}
            for key, pct, value in _VALUE_RE.findall(match.group(2)):
                values[f"p{pct.removesuffix('.0')}" if pct else key] = float(value)
            stats[match.group(1)] = values
    if not saw_frame_end:
        passed = throughput is not None and not errors
    return TrtexecReport(
        passed=passed,
        version=version,
        command=command,
        throughput_qps=throughput,
        stats=stats,
        errors=tuple(errors),
        warnings=tuple(warnings),
        device=device,
        engine_build_s=build_s,
        engine_load_s=load_s,
    )


def parse_export_times(text: str) -> list[float]:
    """Per-query host latencies (ms) from a --exportTimes JSON file."""
    records = json.loads(text)
    return [float(r["latencyMs"]) for r in records if isinstance(r, dict) and "latencyMs" in r]


def trtexec_command(
    model_path: Path, remote_model: str, trtexec: str | None, config: BenchConfig
) -> list[str]:
    """The remote command: trtexec with our settings, then its --exportTimes file after a mark."""
    args = [f"--onnx={remote_model}", "--exportTimes=times.json"]
    if config.duration_s:
        args += [f"--duration={config.duration_s:g}", "--iterations=1"]
    else:
        args += [f"--iterations={config.runs}", "--duration=0"]
    if config.precision == "fp16":
        args.append("--fp16")
    elif config.precision == "int8":
        args.append("--int8")
    elif config.precision not in ("fp32", "default"):
        raise TargetError(f"trtexec runs fp32, fp16 or int8, not {config.precision}")
    shapes = _dynamic_input_shapes(model_path, config.batch_size, config.input_shapes or {})
    if shapes:
        args.append("--shapes=" + ",".join(shapes))
    script = f'"$0" "$@"; rc=$?; echo {TIMES_MARK}; cat times.json 2>/dev/null; exit $rc'
    return ["sh", "-c", script, trtexec or TRTEXEC_FALLBACK, *args]


def _dynamic_input_shapes(model_path: Path, batch: int, given: dict) -> list[str]:
    """`name:1x3x224x224` for each input with a symbolic dim: the first is the batch, the
    others come from the resolved input shape (core/shapes.py) when given, else 1."""
    import onnx

    from compressor_gui.core.graph import real_inputs

    graph = onnx.load(str(model_path), load_external_data=False).graph
    shapes = []
    for value in real_inputs(graph):
        dims = [d.dim_value if d.dim_value > 0 else 0 for d in value.type.tensor_type.shape.dim]
        if 0 in dims or batch != 1:
            sizes = given.get(value.name) or []
            sizes = sizes if len(sizes) == len(dims) else [1] * len(dims)
            fixed = [batch if i == 0 else (d or int(sizes[i])) for i, d in enumerate(dims)]
            shapes.append(f"{value.name}:" + "x".join(map(str, fixed)))
    return shapes


def result_from_trtexec(
    target: str, model_path: Path, config: BenchConfig, lines: list[str], exit_code: int
) -> BenchResult:
    """A BenchResult from what a trtexec_command run printed, or a TargetError quoting its
    error lines."""
    log_lines, times_text = lines, ""
    if TIMES_MARK in log_lines:
        cut = log_lines.index(TIMES_MARK)
        log_lines, times_text = log_lines[:cut], "\n".join(log_lines[cut + 1 :])
    log = "\n".join(log_lines)
    report = parse_trtexec(log)
    if exit_code != 0 or not report.passed:
        raise TargetError(trtexec_failure_message(report, exit_code))
    samples: list[float] = []
    notes = [
        f"TensorRT {report.version}: latency is host latency (H2D + compute + D2H)",
        "warm-up is trtexec's own (200 ms by default)",
    ]
    if times_text.strip():
        try:
            samples = parse_export_times(times_text)
        except (ValueError, KeyError):
            notes.append("the --exportTimes file was unreadable: stats from the summary")
    if samples:
        latency = LatencyStats.from_samples(samples, config.threads)
    else:
        latency = _latency_from_summary(report, config)
    if config.precision == "int8":
        notes.append("INT8 without calibration: speed only, unless the model has Q/DQ nodes")
    gpu = report.stats.get("GPU Compute Time", {})
    if "median" in gpu:
        notes.append(f"GPU compute time median {gpu['median']:g} ms")
    create_s = report.engine_build_s if report.engine_build_s is not None else report.engine_load_s
    throughput = (report.throughput_qps or 1000.0 / latency.mean_ms) * config.batch_size
    return BenchResult(
        target=target,
        runtime="trtexec",
        device=report.device or "GPU",
        precision=config.precision,
        model_path=str(model_path),
        batch_size=config.batch_size,
        latency=latency,
        throughput_per_s=throughput,
        session_create_ms=None if create_s is None else create_s * 1000.0,
        runtime_version=f"TensorRT {report.version}" if report.version else "TensorRT",
        raw_log=log,
        notes=tuple(notes + list(report.warnings[-3:])),
    )


def _latency_from_summary(report: TrtexecReport, config: BenchConfig) -> LatencyStats:
    values = report.stats.get("Latency")
    if not values or "median" not in values:
        raise TargetError("trtexec printed no latency summary (was the run cut short?)")
    p99 = values.get("p99", values["max"])
    return LatencyStats(
        p50_ms=values["median"],
        p90_ms=values.get("p90", p99),  # TensorRT 8.0-8.2 print only the 99th percentile
        p99_ms=p99,
        mean_ms=values["mean"],
        min_ms=values["min"],
        max_ms=values["max"],
        runs=config.runs,
        threads=config.threads,
    )


def trtexec_failure_message(report: TrtexecReport, exit_code: int) -> str:
    """Quote trtexec's own errors and add what usually fixes them."""
    errors = list(report.errors[:6]) or [f"trtexec exited with code {exit_code}"]
    text = " | ".join(errors)
    hints = []
    if "Unknown option" in text:
        hints.append(
            "this TensorRT removed that flag (TensorRT 10 dropped --workspace, "
            "--explicitBatch, --buildOnly; use --memPoolSize=workspace:N)"
        )
    if any("Device memory is insufficient" in w for w in report.warnings) or "memory" in text:
        hints.append("the board ran short of memory: close other apps or try a smaller batch")
    if "Could not find any implementation" in text or "No importer registered" in text:
        hints.append("an operator of this model is not supported by this TensorRT")
    if "Failed to parse onnx file" in text:
        hints.append("TensorRT could not parse the ONNX file (unsupported op or opset)")
    version = f" {report.version}" if report.version else ""
    message = f"trtexec (TensorRT{version}) failed: {text}"
    return message + ("; " + "; ".join(hints) if hints else "")


# ---------------------------------------------------------------- tegrastats


def tegrastats_command(path: str) -> str:
    """The shell line that samples the board beside a run."""
    return f"{shlex.quote(path)} --interval {TEGRASTATS_INTERVAL_MS}"


def with_tegrastats(result: BenchResult, lines: list[str]) -> BenchResult:
    """`result` with the board's power, temperatures and loads while it ran (if sampled)."""
    summary = summarize_tegrastats(lines)
    if summary is None:
        return result
    return replace(
        result,
        power_mw=summary.power_mw,
        temperatures_c=summary.temperatures_c,
        gpu_load_percent=summary.gpu_load_percent,
        cpu_load_percent=summary.cpu_load_percent,
        ram_used_bytes=summary.ram_used_bytes,
        notes=(
            *result.notes,
            f"tegrastats: {summary.samples} samples at {TEGRASTATS_INTERVAL_MS} ms",
        ),
    )


@dataclass(frozen=True)
class TegraSample:
    """One tegrastats line; power in mW (current value), temperatures in C, loads in %."""

    ram_used_mb: int | None
    ram_total_mb: int | None
    cpu_load_percent: tuple[float, ...]  # online cores only
    gpu_load_percent: float | None
    temperatures_c: dict[str, float]
    power_mw: dict[str, float]


@dataclass(frozen=True)
class TegraSummary:
    samples: int
    power_mw: dict[str, float]  # mean per rail, plus "total" (the board's input power)
    temperatures_c: dict[str, float]  # max per sensor
    gpu_load_percent: float | None
    cpu_load_percent: float | None
    ram_used_bytes: int | None


def parse_tegrastats_line(line: str) -> TegraSample | None:
    text = _TIMESTAMP_RE.sub("", line.strip())
    ram = _RAM_RE.search(text)
    if ram is None:
        return None
    cpu: list[float] = []
    if match := _CPU_RE.search(text):
        for entry in (match.group(1) or match.group(2)).split(","):
            if entry.strip() != "off" and "%" in entry:
                cpu.append(float(entry.split("%")[0]))
    gpu = _GPU_RE.search(text)
    temps = {
        name: float(value) for name, value in _TEMP_RE.findall(text) if float(value) > SENSOR_OFF_C
    }
    power = {
        name: float(cur)
        for name, cur, _avg in _POWER_RE.findall(text)
        if name not in {"RAM", "SWAP", "IRAM"}
    }
    return TegraSample(
        ram_used_mb=int(ram.group(1)),
        ram_total_mb=int(ram.group(2)),
        cpu_load_percent=tuple(cpu),
        gpu_load_percent=float(gpu.group(1)) if gpu else None,
        temperatures_c=temps,
        power_mw=power,
    )


def total_power_mw(power: dict[str, float]) -> float | None:
    """The board's input power: VDD_IN (POM_5V_IN on Nano); AGX Orin has no VDD_IN."""
    for rail in ("VDD_IN", "POM_5V_IN"):
        if rail in power:
            return power[rail]
    if "VIN_SYS_5V0" in power:
        return sum(power.get(r, 0.0) for r in ("VDD_GPU_SOC", "VDD_CPU_CV", "VIN_SYS_5V0"))
    rails = [value for name, value in power.items() if name != "NC"]
    return sum(rails) if rails else None


def summarize_tegrastats(lines: Iterable[str]) -> TegraSummary | None:
    samples = [s for s in map(parse_tegrastats_line, lines) if s is not None]
    if not samples:
        return None
    power: dict[str, list[float]] = {}
    for sample in samples:
        total = total_power_mw(sample.power_mw)
        rails = {**sample.power_mw, **({"total": total} if total is not None else {})}
        for name, value in rails.items():
            power.setdefault(name, []).append(value)
    power.pop("NC", None)
    temps: dict[str, float] = {}
    for sample in samples:
        for name, value in sample.temperatures_c.items():
            temps[name] = max(value, temps.get(name, value))
    gpu = [s.gpu_load_percent for s in samples if s.gpu_load_percent is not None]
    cpu = [sum(s.cpu_load_percent) / len(s.cpu_load_percent) for s in samples if s.cpu_load_percent]
    ram = [s.ram_used_mb for s in samples if s.ram_used_mb is not None]
    return TegraSummary(
        samples=len(samples),
        power_mw={name: sum(v) / len(v) for name, v in power.items()},
        temperatures_c=temps,
        gpu_load_percent=sum(gpu) / len(gpu) if gpu else None,
        cpu_load_percent=sum(cpu) / len(cpu) if cpu else None,
        ram_used_bytes=max(ram) * 2**20 if ram else None,
    )
