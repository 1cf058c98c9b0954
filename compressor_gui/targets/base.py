"""What every target shares: the run settings in, one `BenchResult` out, and the Target contract."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from compressor_gui.core.errors import TargetError
from compressor_gui.core.hardware import MachineInfo
from compressor_gui.core.jobs import CancelToken, Job
from compressor_gui.core.latency import LatencyStats

if TYPE_CHECKING:  # the benchmark child process imports this module: keep it light
    import onnx

    from compressor_gui.core.data import Dataset

RUNTIMES = ("ort", "openvino", "trtexec")
LabeledModels = Sequence[tuple[str, "onnx.ModelProto | Path"]]  # (label, model or its file)


@dataclass(frozen=True)
class BenchConfig:
    """How to run one benchmark; `duration_s` (if set) replaces the fixed run count."""

    warmup: int = 10
    runs: int = 100
    duration_s: float | None = None
    threads: int = 0  # 0: the runtime's default
    batch_size: int = 1
    runtime: str = "ort"
    provider: str | None = None  # ORT execution provider; None: the best one available
    precision: str = "fp32"  # fp32 | fp16 | bf16 | int8 | default (runtime picks)
    timeout_s: float = 600.0
    fidelity_data: str | None = None  # .npz file whose outputs come back for a fidelity check
    # .npz whose first sample the timed runs feed: a made-up integer (a sample rate, a token
    # id) can take another branch of the model than real input does
    feed_data: str | None = None
    # input name -> the shape dynamic dims take (core/shapes.py; dim 0 becomes batch_size)
    input_shapes: dict[str, list[int]] | None = None

    def __post_init__(self) -> None:
        if self.runtime not in RUNTIMES:
            raise TargetError(f"unknown runtime {self.runtime!r}: use one of {', '.join(RUNTIMES)}")
        if self.batch_size < 1 or self.runs < 1 or self.warmup < 0 or self.threads < 0:
            raise TargetError("batch size and runs must be >= 1, warm-up and threads >= 0")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class BenchResult:
    """One benchmark run on any target; fields a target cannot measure stay None or empty."""

    target: str
    runtime: str
    device: str  # ORT provider, OpenVINO device, or the GPU trtexec ran on
    precision: str
    model_path: str
    batch_size: int
    latency: LatencyStats  # with the runs it timed and the threads it ran with
    throughput_per_s: float
    session_create_ms: float | None = None
    peak_memory_bytes: int | None = None
    power_mw: Mapping[str, float] = field(default_factory=dict)  # mean per rail while running
    temperatures_c: Mapping[str, float] = field(default_factory=dict)  # max per sensor
    gpu_load_percent: float | None = None  # mean
    cpu_load_percent: float | None = None  # mean over cores and samples
    ram_used_bytes: int | None = None  # max of the board's used RAM while running
    runtime_version: str = ""
    raw_log: str = ""
    notes: tuple[str, ...] = ()

    @property
    def runs(self) -> int:
        return self.latency.runs

    @property
    def threads(self) -> int:
        return self.latency.threads

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["power_mw"] = dict(self.power_mw)
        data["temperatures_c"] = dict(self.temperatures_c)
        data["notes"] = list(self.notes)
        return {**data, "runs": self.runs, "threads": self.threads}


@dataclass(frozen=True)
class RuntimeOption:
    """One way a target can run a model: what `--sweep` iterates over."""

    runtime: str
    device: str
    precision: str

    @property
    def label(self) -> str:
        return f"{self.runtime}/{self.device}/{self.precision}"


@dataclass(frozen=True)
class ModelOutputs:
    """Each model's outputs over one dataset, as one machine's runtime computed them."""

    outputs: tuple[list[Any], ...]  # per model: every output (numpy), samples on axis 0
    machine: MachineInfo
    runtime: str  # e.g. "onnxruntime 1.23.2 CPUExecutionProvider"


class Target(ABC):
    """A place where a model runs; `benchmark` is a job (generator yielding Progress)."""

    name: str

    @property
    def place(self) -> str:
        """The machine the target runs on; runs in one place share its cores, so a fan-out
        never overlaps them."""
        return self.name

    @abstractmethod
    def describe(self) -> dict[str, Any]:
        """What the machine is: OS/arch, runtimes and versions, accelerators, and under
        "machine" its MachineInfo.to_dict() (read in the same visit)."""

    @abstractmethod
    def machine(self) -> MachineInfo:
        """The CPU (instruction sets, cores, memory) and runtime versions that run models."""

    @abstractmethod
    def runtime_options(self) -> list[RuntimeOption]:
        """Every runtime x device x precision this target can run, for a sweep."""

    @abstractmethod
    def benchmark(
        self, model_path: str | Path, config: BenchConfig, cancel: CancelToken | None = None
    ) -> Job[BenchResult]:
        """Run the model and return a BenchResult; honour `cancel` while waiting."""

    def model_outputs(
        self,
        models: LabeledModels,
        dataset: Dataset,
        config: BenchConfig | None = None,
        cancel: CancelToken | None = None,
    ) -> Job[ModelOutputs]:
        """Every output of each (label, model) over every sample, computed on this target
        (onnxruntime on its CPU unless `config` says another runtime or device)."""
        config = config or BenchConfig()
        if config.runtime == "trtexec":
            raise TargetError("trtexec returns no outputs: evaluate with ort on this target")
        return (yield from self._outputs(models, dataset, config, cancel or CancelToken()))

    @abstractmethod
    def _outputs(
        self, models: LabeledModels, dataset: Dataset, config: BenchConfig, cancel: CancelToken
    ) -> Job[ModelOutputs]:
        """`model_outputs` with its defaults filled in."""
