"""What distillation trains the student towards, and its loss for models that are not
classifiers.

A classifier learns the teacher's softened logits (`trainer.kd_loss`). Any other model (a
detector's score and box maps, a DB text map, a VAD's probability and state, an encoder's
embeddings) learns every float output by its MSE over the teacher output's mean square, so
that each output counts alike whatever its scale. Measured on the 50 %-channel-pruned PP-OCR
det (4 epochs, held-out crops): this MSE on the probability map reached cosine 0.937, the
Bernoulli KL on the Sigmoid's logits 0.924, both together 0.932; the plain MSE stays.
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
    return Objective(tuple(ours), tuple(theirs), classifier=False)


def dense_loss(student: Sequence[torch.Tensor], teacher: Sequence[np.ndarray]) -> torch.Tensor:
    """Sum over outputs of MSE / the teacher output's mean square: box offsets in pixels
    count as much as scores in 0..1; 1.0 is the loss of a student that outputs zeros."""
    total = torch.zeros(())
    for ours, theirs in zip(student, teacher, strict=True):
        target = torch.from_numpy(np.ascontiguousarray(theirs)).float().reshape(ours.shape)
        energy = target.square().mean().clamp(min=ENERGY_FLOOR)
        total = total + F.mse_loss(ours.float(), target) / energy
    return total
