"""What distillation trains the student towards, and its loss for models that are not
classifiers.

A classifier learns the teacher's softened logits (`trainer.kd_loss`). Any other model (a
detector's score and box maps, a DB text map, a VAD's probability and state, an encoder's
embeddings) learns every float output: values by their MSE over the teacher output's mean
square (each output counts alike whatever its scale), and outputs that come out of a Sigmoid
(probability maps, class scores) by the KL divergence of the Bernoulli probabilities, taken
on the Sigmoid's input: MSE on a saturated probability has no gradient, and a pruned DB
detector whose map is all ~0 never leaves it (measured: held-out cosine stuck at 0.37).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import onnx
import torch
import torch.nn.functional as F

from compressor_gui.core.distill_types import float_outputs, is_classifier, logits_name
from compressor_gui.core.errors import CompressorError

ENERGY_FLOOR = 1e-8  # the divisor for an output the teacher holds at ~0


@dataclass(frozen=True)
class Objective:
    """The student's tensors to train, the teacher's matching ones (by position), and how."""

    student: tuple[str, ...]
    teacher: tuple[str, ...]
    classifier: bool
    logistic: tuple[bool, ...] = ()  # dense targets that are a Sigmoid's input (logits)
    outputs: tuple[str, ...] = ()  # the student outputs the dense targets stand for


def choose_objective(
    module, student: onnx.ModelProto, teacher: onnx.ModelProto, sample: Mapping, labelled: bool
) -> Objective:
    """Classifier KD when the first output is one score vector per sample (`is_classifier`,
    its shape from running `module` on `sample`), else every float output of both models."""
    logits = logits_name(student)
    with torch.no_grad():
        shape = tuple(module.eval().run(sample, (logits,))[logits].shape)
    ours, theirs = float_outputs(student), float_outputs(teacher)
    if is_classifier(shape, len(ours), labelled):
        return Objective((logits,), (logits_name(teacher),), classifier=True)
    if len(theirs) != len(ours):
        raise CompressorError(
            f"the student has {len(ours)} float outputs, the teacher {len(theirs)}: "
            "distillation trains each output towards the teacher's, so both need the same"
        )
    pairs = [
        (_before_sigmoid(student, mine), _before_sigmoid(teacher, yours), mine, yours)
        for mine, yours in zip(ours, theirs, strict=True)
    ]
    # through a Sigmoid only where both models end in one (a pruned student still does)
    logistic = tuple(a != mine and b != yours for a, b, mine, yours in pairs)
    return Objective(
        student=tuple(p[0] if flag else p[2] for p, flag in zip(pairs, logistic, strict=True)),
        teacher=tuple(p[1] if flag else p[3] for p, flag in zip(pairs, logistic, strict=True)),
        classifier=False,
        logistic=logistic,
        outputs=tuple(ours),
    )


def dense_loss(
    objective: Objective, student: Sequence[torch.Tensor], teacher: Sequence[np.ndarray]
) -> torch.Tensor:
    """Sum over outputs: KL of the Bernoulli probabilities for a Sigmoid's logits, else MSE
    over the teacher's mean square (1.0 is the loss of a student that outputs zeros)."""
    total = torch.zeros(())
    for ours, theirs, logistic in zip(student, teacher, objective.logistic, strict=True):
        target = torch.from_numpy(np.ascontiguousarray(theirs)).float().reshape(ours.shape)
        if logistic:
            probability = torch.sigmoid(target)
            own_entropy = F.binary_cross_entropy_with_logits(target, probability)
            total = total + F.binary_cross_entropy_with_logits(ours.float(), probability)
            total = total - own_entropy
        else:
            energy = target.square().mean().clamp(min=ENERGY_FLOOR)
            total = total + F.mse_loss(ours.float(), target) / energy
    return total


def as_outputs(objective: Objective, values: Sequence[np.ndarray]) -> list[np.ndarray]:
    """The dense targets as the model outputs them (Sigmoid applied to logits), for the
    output cosine to the teacher."""
    return [
        torch.sigmoid(torch.from_numpy(np.ascontiguousarray(value))).numpy() if logistic else value
        for value, logistic in zip(values, objective.logistic, strict=True)
    ]


def _before_sigmoid(model: onnx.ModelProto, output: str) -> str:
    """The input of the Sigmoid producing `output`, else `output` itself."""
    producer = next((n for n in model.graph.node if output in n.output), None)
    return producer.input[0] if producer is not None and producer.op_type == "Sigmoid" else output
