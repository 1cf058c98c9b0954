"""What distillation takes and gives, torch-free: its options, each epoch's figures and the
report, and the two choices the training loop and the GUI share (the tensor to distill on,
the validation part). The job (`distill`), its loop (`trainer`) and QAT (`qat`) all read
these, and the GUI unpickles them without torch."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import onnx

from compressor_gui.core.errors import CompressorError

AUGMENTATIONS = ("auto", "none", "crop", "crop+flip")


@dataclass(frozen=True)
class DistillOptions:
    """How to train. `threads` None: all cores. `augment` "auto": random crops (shifts of
    1/16 of the side) where the data is images; flips only when asked ("crop+flip"), since
    a mirrored digit or page is not always the same class."""

    epochs: int = 10
    temperature: float = 4.0
    alpha: float = 0.7
    learning_rate: float = 3e-3  # Adam, cosine decay to 0 over the run
    batch_size: int = 32
    qat: bool = False
    features: tuple[str, ...] = ()  # FitNets hints: tensor names present in both graphs
    feature_weight: float = 1.0
    validation_fraction: float = 0.1
    augment: str = "auto"
    use_labels: bool = True  # False: soft targets only, even when the data has labels
    threads: int | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        if self.epochs < 1:
            raise CompressorError(f"epochs must be at least 1, not {self.epochs}")
        if not 0.0 <= self.alpha <= 1.0:
            raise CompressorError(f"alpha must be within 0..1, not {self.alpha}")
        if self.temperature <= 0:
            raise CompressorError(f"temperature must be above 0, not {self.temperature}")
        if self.augment not in AUGMENTATIONS:
            raise CompressorError(f"augment is one of {AUGMENTATIONS}, not {self.augment!r}")
        if not 0.0 < self.validation_fraction < 0.5:
            raise CompressorError("validation_fraction must be within 0..0.5")


@dataclass(frozen=True)
class EpochStats:
    """One epoch, as the live curve shows it (epoch 0: the student before training)."""

    epoch: int
    epochs: int
    train_loss: float | None
    val_loss: float
    val_top1: float | None  # on the validation samples that have labels
    val_agreement: float | None  # top-1 agreement with the teacher (classifiers only)
    seconds_left: float | None = None
    best: bool = False
    val_right: float = 0.0  # samples right: their label, else the teacher's top-1 (picks best)
    val_cosine: float | None = None  # dense models: output cosine to the teacher (picks best)


def fidelity_words(stats: EpochStats) -> str:
    """The measure of closeness to the original that applies: top-1 agreement for a
    classifier, the output cosine for a model with dense outputs (a detector's maps, an
    encoder's embeddings), where an argmax over the flattened outputs means nothing."""
    if stats.val_cosine is not None:
        return f"cosine to the original {stats.val_cosine:.4f}"
    return f"agreement with the teacher {stats.val_agreement:.1%}"


@dataclass(frozen=True)
class QatLayer:
    """One layer trained with its quantization simulated, in words for the report."""

    name: str
    bits: int
    simulated: str


@dataclass(frozen=True)
class DistillReport:
    history: tuple[EpochStats, ...]
    best_epoch: int
    stopped_early: bool
    train_samples: int  # unlabeled ones included
    validation_samples: int
    seconds: float
    threads: int
    qat_layers: tuple[QatLayer, ...] = ()
    int8_form: str = ""  # the INT8 form QAT simulated ("" without INT8 QAT)
    teacher_val_top1: float | None = None
    notes: tuple[str, ...] = field(default_factory=tuple)
    unlabeled_samples: int = 0  # extra samples the teacher alone labelled (soft targets)
    teacher_runtime: str = "onnxruntime"  # what computed the teacher's logits
    dense_outputs: tuple[str, ...] = ()  # trained by the feature loss; () = classifier KD

    @property
    def classifier(self) -> bool:
        """Trained as a classifier (softened logits), judged by top-1 / agreement."""
        return not self.dense_outputs

    @property
    def before(self) -> EpochStats:
        return self.history[0]

    @property
    def best(self) -> EpochStats:
        return self.history[self.best_epoch]


def logits_name(model: onnx.ModelProto) -> str:
    """The tensor to distill on: the first output, or the input of the Softmax producing it
    (probabilities hide the teacher's dark knowledge; KD wants logits)."""
    output = model.graph.output[0].name
    producer = next((n for n in model.graph.node if output in n.output), None)
    if producer is not None and producer.op_type in ("Softmax", "LogSoftmax"):
        return producer.input[0]
    return output


FLOAT_TYPES = (
    onnx.TensorProto.FLOAT,
    onnx.TensorProto.FLOAT16,
    onnx.TensorProto.DOUBLE,
    onnx.TensorProto.BFLOAT16,
)


def float_outputs(model: onnx.ModelProto) -> list[str]:
    """The model's float outputs, in order (a VAD's state too: what the user runs)."""
    return [o.name for o in model.graph.output if o.type.tensor_type.elem_type in FLOAT_TYPES]


def is_classifier(
    first_output_shape: tuple[int, ...], float_output_count: int, labels: bool
) -> bool:
    """Whether softmax KD on the first output fits: it is one score vector per sample
    ([N, classes]) and either the data has class labels or it is the only float output.
    Anything else (a detector's score and box maps, a DB probability map, a VAD's
    probability and state, an encoder's embeddings) is dense: every float output is
    trained towards the teacher's."""
    scores = len(first_output_shape) == 2 and first_output_shape[1] > 1
    return scores and (labels or float_output_count == 1)


def validation_split(count: int, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(training, validation) sample indices: a seeded random `fraction` of the training data
    is held out to choose the best epoch."""
    order = np.random.default_rng(seed).permutation(count)
    held = max(1, int(round(count * fraction)))
    return np.sort(order[held:]), np.sort(order[:held])
