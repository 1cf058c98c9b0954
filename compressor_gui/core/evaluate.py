"""Accuracy on labeled data, fidelity against the original, size and latency in onnxruntime.

Fidelity needs no labels, so any data (or none: random inputs) says how far a compressed model
drifted: top-1 agreement, mean cosine similarity and SQNR of the outputs. Latency is measured
with fixed threads after a warm-up, and reported as percentiles of single-sample runs.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import onnx

from compressor_gui.core.data import Dataset
from compressor_gui.core.errors import CompressorError, error_text
from compressor_gui.core.graph import make_session
from compressor_gui.core.jobs import CancelToken, Job, Progress
from compressor_gui.core.latency import LatencyStats
from compressor_gui.core.shapes import random_feed

_MAX_SQNR_DB = 200.0  # identical outputs: "infinite" SQNR, capped so JSON can hold it


@dataclass(frozen=True)
class EvalResult:
    """Quality of a model on a dataset: accuracy (labels) and fidelity (a reference)."""

    samples: int
    top1: float | None = None  # fraction 0..1
    top5: float | None = None  # only when there are more than 5 classes
    agreement_top1: float | None = None  # fraction of samples with the reference's top-1
    cosine: float | None = None  # mean over samples
    sqnr_db: float | None = None


def run_outputs(
    session, dataset: Dataset, batch_size: int = 64, cancel: CancelToken | None = None
) -> list[np.ndarray]:
    """Every output of the model over the dataset, samples concatenated on axis 0."""
    collected: list[list[np.ndarray]] = []
    for feed in dataset.batches(batch_size):
        if cancel is not None:
            cancel.raise_if_cancelled()
        try:
            outputs = session.run(None, feed)
        except Exception as exc:  # onnxruntime raises its own types for bad feeds
            raise CompressorError(
                f"the model cannot run on {dataset.source or 'this data'}: "
                f"{error_text(exc, 200)}; give data that matches its inputs (--data)"
            ) from exc
        if not collected:
            collected = [[] for _ in outputs]
        for store, value in zip(collected, outputs, strict=True):
            value = np.asarray(value)
            store.append(value if _batch_form(dataset) else value[None])
    return [np.concatenate(parts, axis=0) for parts in collected]


def _batch_form(dataset: Dataset) -> bool:
    return all(form == "batch" for form in dataset.forms.values())


def accuracy(logits: np.ndarray, labels: np.ndarray) -> tuple[float, float | None]:
    """(top-1, top-5) as fractions; top-5 is None with 5 classes or fewer."""
    scores = logits.reshape(len(labels), -1)
    top1 = float(np.mean(np.argmax(scores, axis=1) == labels))
    if scores.shape[1] <= 5:
        return top1, None
    top5_idx = np.argpartition(-scores, 5, axis=1)[:, :5]
    return top1, float(np.mean(np.any(top5_idx == labels[:, None], axis=1)))


def fidelity(
    reference: np.ndarray | list[np.ndarray], outputs: np.ndarray | list[np.ndarray]
) -> tuple[float | None, float, float]:
    """(top-1 agreement, mean cosine similarity, SQNR dB) of outputs against the reference.
    Agreement compares the first output's argmax, where it is one score vector per sample
    (None for a detector's or an encoder's maps); cosine and SQNR cover every float output
    joined per sample (a VAD's probability and its recurrent state alike). With one value
    per sample the cosine is taken over the batch vector (a cosine of scalars says nothing)."""
    reference = [reference] if isinstance(reference, np.ndarray) else reference
    outputs = [outputs] if isinstance(outputs, np.ndarray) else outputs
    count = len(reference[0])
    first_ref = reference[0].reshape(count, -1)
    first_out = outputs[0].reshape(count, -1)
    agreement = None
    if scores_per_sample(reference[0]) and first_ref.dtype.kind == "f":
        agreement = float(np.mean(np.argmax(first_ref, axis=1) == np.argmax(first_out, axis=1)))
    ref = _joined(reference, count)
    out = _joined(outputs, count)
    if ref.shape[1] > 1:
        cosine = float(np.mean(_cosine_rows(ref, out)))
    else:
        cosine = float(_cosine_rows(ref.reshape(1, -1), out.reshape(1, -1))[0])
    return agreement, cosine, sqnr_db(ref, out)


def scores_per_sample(output: np.ndarray) -> bool:
    """Whether an output is one score vector per sample (N x classes, trailing 1s allowed):
    only then does top-1 agreement mean something; over a detector's or a DB text map's
    flattened values (0.00 % for a pruned PP-OCR det) it does not."""
    return sum(size > 1 for size in output.shape[1:]) == 1


def _joined(arrays: list[np.ndarray], count: int) -> np.ndarray:
    floats = [a.reshape(count, -1) for a in arrays if a.dtype.kind == "f"]
    return np.concatenate(floats, axis=1).astype(np.float64)


def _cosine_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    dots = np.sum(a * b, axis=1)
    both_zero = (np.linalg.norm(a, axis=1) == 0) & (np.linalg.norm(b, axis=1) == 0)
    return np.where(both_zero, 1.0, dots / np.where(norms > 0, norms, 1.0))


def sqnr_db(reference: np.ndarray, changed: np.ndarray) -> float:
    """Signal-to-quantization-noise ratio in dB, capped at 200 dB for identical tensors."""
    signal = float(np.sum(np.square(reference, dtype=np.float64)))
    noise = float(np.sum(np.square(np.asarray(reference) - changed, dtype=np.float64)))
    return sqnr_db_from_energy(signal, noise)


def sqnr_db_from_energy(signal: float, noise: float) -> float:
    """`sqnr_db` from summed squares (reference, difference): sums gathered batch by batch
    give the SQNR of the whole data without holding it."""
    if noise <= signal * 10 ** (-_MAX_SQNR_DB / 10):
        return _MAX_SQNR_DB
    if signal == 0.0:
        return 0.0
    return 10.0 * math.log10(signal / noise)


def evaluate(
    session,
    dataset: Dataset,
    reference: list[np.ndarray] | None = None,
    cancel: CancelToken | None = None,
) -> tuple[EvalResult, list[np.ndarray]]:
    """Accuracy of the first output on labeled data, fidelity of all outputs against a
    reference; returns the result and the outputs (the original's are the next reference)."""
    outputs = run_outputs(session, dataset, cancel=cancel)
    return score(outputs, dataset, reference), outputs


def score(
    outputs: list[np.ndarray], dataset: Dataset, reference: list[np.ndarray] | None = None
) -> EvalResult:
    """The one rule for accuracy and fidelity, whichever machine computed `outputs`."""
    top1 = top5 = agreement = cosine = sqnr = None
    if dataset.labels is not None and outputs[0].size % len(dataset.labels) == 0:
        top1, top5 = accuracy(outputs[0], dataset.labels)
    if reference is not None:
        shapes = [o.shape for o in outputs]
        if shapes != [r.shape for r in reference]:
            raise CompressorError(
                f"the compressed model's output shapes {shapes} differ from the original's "
                f"{[r.shape for r in reference]}"
            )
        agreement, cosine, sqnr = fidelity(reference, outputs)
    return EvalResult(len(dataset), top1, top5, agreement, cosine, sqnr)


def evaluate_models_job(
    models: Sequence[tuple[str, onnx.ModelProto | str | os.PathLike[str]]],
    dataset: Dataset,
    cancel: CancelToken | None = None,
) -> Job[dict[str, EvalResult]]:
    """Evaluate models one after another on the same data; the first one's outputs are the
    reference the others' fidelity is measured against."""
    results: dict[str, EvalResult] = {}
    reference = None
    for index, (label, source) in enumerate(models):
        yield Progress(index, len(models), f"{label}: running {len(dataset)} samples")
        result, outputs = evaluate(make_session(source), dataset, reference, cancel=cancel)
        reference = outputs if reference is None else reference
        results[label] = result
    yield Progress(len(models), len(models), "done")
    return results


def sample_feed(
    model: onnx.ModelProto,
    dataset: Dataset | None = None,
    seed: int = 0,
    shapes: Mapping[str, Sequence[int]] | None = None,
) -> dict:
    """One single-sample feed: the dataset's first sample, else random data of the input
    `shapes` (default: dynamic dims 1) - enough to time a model and to check that it runs."""
    if dataset is not None:
        return next(dataset.batches(1))
    return random_feed(model, shapes, seed=seed)


def measure_latency(
    session, feed: dict, *, warmup: int = 5, runs: int = 30, max_seconds: float = 10.0
) -> LatencyStats:
    """Percentiles of the wall time of `session.run` on one feed after `warmup` runs; stops early
    (at least 5 runs) when `max_seconds` is spent, so a slow model cannot stall a job."""
    for _ in range(warmup):
        session.run(None, feed)
    times: list[float] = []
    deadline = time.perf_counter() + max_seconds
    for _ in range(runs):
        start = time.perf_counter()
        session.run(None, feed)
        times.append((time.perf_counter() - start) * 1000.0)
        if len(times) >= 5 and time.perf_counter() > deadline:
            break
    return LatencyStats.from_samples(times, session.get_session_options().intra_op_num_threads)
