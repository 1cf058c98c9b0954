"""Deploy on this machine, side by side in one run: what `compressor-gui deploy` recommends
against the best peer (OpenVINO + NNCF INT8 with its defaults), on a ResNet-18-style 224
trained on page orientation, a small transformer encoder block and the bundled demo.

    .venv/bin/python benchmarks/deploy.py [--rounds 5] [--runs 30] [--threads 2]
        [--models pages,encoder,demo,resnet] [--recovery-epochs 10] [--recovery-pages 128]
        [--forms ov-int8,ov-int8-c25,...]

Every form is built (the channel-pruned ones too), timed on this machine in interleaved
rounds (median of rounds) and scored against onnxruntime FP32, as `deploy MODEL --data D
--eval-data E` would. `pages`: ResNet-18-style (width 64, 4 classes) trained here from a
seeded start on text pages turned 0/90/180/270 degrees (tests/document_pages.py), once: the
model and its data are kept under .cache/bench/ keyed by a hash of the recipe, so reruns
skip the training. Deploy calibrates on, and trains the channel-pruned forms back on, the
first `--recovery-pages` training pages, and scores top-1 (budget 1 pt) on other pages,
never trained on. `resnet`: the same architecture with random weights and no labels, scored
on random inputs by output cosine (budget >= 0.99); its pruned forms cannot be trained back,
and it costs minutes, so it runs only when asked. The encoder is scored by cosine too; the
demo by top-1 on its labelled splits. The header names the CPU, so figures from different
machines can be put side by side honestly.
"""

from __future__ import annotations

import argparse
import hashlib
import inspect
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import torch  # noqa: E402

from compressor_gui.core.data import save_npz  # noqa: E402
from compressor_gui.core.deploy import DeployResult  # noqa: E402
from compressor_gui.core.hardware import local_machine  # noqa: E402
from compressor_gui.core.jobs import run_job  # noqa: E402
from compressor_gui.core.model import ModelSource  # noqa: E402
from compressor_gui.targets.deploy import Timing, deploy_job  # noqa: E402
from compressor_gui.targets.local import LocalTarget  # noqa: E402
from tests import document_pages  # noqa: E402
from tests.torchmodels import (  # noqa: E402
    resnet18_style,
    trained_resnet18_style,
    transformer_block,
)

DEMO = REPO / "resources" / "demo.onnx"
BENCH_CACHE = REPO / ".cache" / "bench"
# The trained ResNet: pages (count, rendering seed) and how it is trained. Changing any of
# it, or the code that renders or trains, changes the cache key.
PAGES_RECIPE = {
    "train_pages": (256, 11),
    "eval_pages": (200, 12),
    "epochs": 2,
    "batch_size": 16,
    "learning_rate": 2e-3,
    "width": 64,
}

PEER = "ov-int8"  # OpenVINO + NNCF INT8 post-training quantization, default settings


def show(name: str, result: DeployResult, seconds: float) -> None:
    base = result.row("ort-fp32")
    chosen = result.row(result.recommendation.key)
    print(f"\n{name} ({seconds:.0f} s to build, time and score {len(result.rows)} forms)")
    peer = next((r for r in result.rows if r.key == PEER and r.p50_ms), None)
    print(
        f"{'form':<36} {'p50 ms':>8} {'p90 ms':>8} {'vs FP32':>8} {'vs peer':>8} "
        f"{'top-1':>7} {'cosine':>8} {'MiB':>6}"
    )
    for row in sorted(result.rows, key=lambda r: r.p50_ms or 1e9):
        mark = "*" if row.key == chosen.key else " "
        speed = f"{base.p50_ms / row.p50_ms:.2f}x" if row.p50_ms else "n/a"
        over_peer = f"{peer.p50_ms / row.p50_ms:.2f}x" if row.p50_ms and peer else "n/a"
        top1 = f"{100 * row.top1:.2f}" if row.top1 is not None else "n/a"
        cosine = f"{row.cosine:.4f}" if row.cosine is not None else "n/a"
        p50 = f"{row.p50_ms:.2f}" if row.p50_ms else "n/a"
        p90 = f"{row.p90_ms:.2f}" if row.p90_ms else "n/a"
        print(
            f"{mark}{row.label:<35} {p50:>8} {p90:>8} {speed:>8} {over_peer:>8} {top1:>7} "
            f"{cosine:>8} {row.size_bytes / 2**20:6.2f}"
            + (f"  {row.error[:60]}" if row.error else "")
        )
    print(f"recommended: {result.recommendation.reason}")
    print(f"how it was made: {chosen.note}")
    if peer is not None:
        print(
            f"recommended vs {peer.label} (peer, NNCF defaults): "
            f"{peer.p50_ms / chosen.p50_ms:.2f}x ({chosen.p50_ms:.2f} vs {peer.p50_ms:.2f} ms)"
        )
    print(f"recommended vs onnxruntime FP32: {base.p50_ms / chosen.p50_ms:.2f}x")


def trained_on_pages(recovery_pages: int, threads: int) -> tuple[Path, Path, Path]:
    """(model, deploy data, eval data) of the ResNet trained on page orientation: from the
    cache, else rendered and trained now (minutes) and cached. The deploy data is the first
    `recovery_pages` training pages; the eval pages were never trained on."""
    code = inspect.getsource(document_pages) + inspect.getsource(trained_resnet18_style)
    key = json.dumps(PAGES_RECIPE, sort_keys=True) + code + torch.__version__
    folder = BENCH_CACHE / f"deploy-pages-{hashlib.sha256(key.encode()).hexdigest()[:12]}"
    count, seed = PAGES_RECIPE["train_pages"]
    if not folder.exists():
        started = time.perf_counter()
        x, y = document_pages.rotated_pages(count, seed)
        count_eval, seed_eval = PAGES_RECIPE["eval_pages"]
        x_eval, y_eval = document_pages.rotated_pages(count_eval, seed_eval)
        print(f"rendered {count} training and {count_eval} eval pages; training the ResNet")
        BENCH_CACHE.mkdir(parents=True, exist_ok=True)
        building = Path(tempfile.mkdtemp(prefix=".deploy-pages-", dir=BENCH_CACHE))
        trained_resnet18_style(
            building / "model.onnx",
            x,
            y,
            epochs=PAGES_RECIPE["epochs"],
            width=PAGES_RECIPE["width"],
            batch_size=PAGES_RECIPE["batch_size"],
            learning_rate=PAGES_RECIPE["learning_rate"],
            threads=threads,
            log=lambda line: print(f"  {line} ({time.perf_counter() - started:.0f} s)"),
        )
        save_npz(building / "eval.npz", {"x": x_eval, "y": y_eval})
        os.replace(building, folder)
        print(f"cached in {folder} ({time.perf_counter() - started:.0f} s)")
    data_file = folder / f"train_first{recovery_pages}.npz"
    if not data_file.exists():  # the first pages of the training set, rendered again
        x, y = document_pages.rotated_pages(min(recovery_pages, count), seed)
        tmp = data_file.with_name(f".{data_file.name}.{os.getpid()}.tmp")
        os.replace(save_npz(tmp, {"x": x, "y": y}), data_file)
    return folder / "model.onnx", data_file, folder / "eval.npz"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--models", default="pages,encoder,demo", help="also: resnet")
    parser.add_argument("--recovery-epochs", type=int, default=10)
    parser.add_argument("--recovery-pages", type=int, default=128)
    parser.add_argument("--forms", help="only these candidates, comma-separated (deploy --forms)")
    parser.add_argument("--train-threads", type=int, default=2, help="torch, when training")
    args = parser.parse_args()
    machine = local_machine()
    print(f"CPU: {machine.summary}; INT8 family {machine.isa_class}")
    timing = Timing(rounds=args.rounds, runs=args.runs, threads=args.threads)
    print(f"latency: {timing.describe()}; load average {os.getloadavg()[0]:.1f}")
    folder = Path(tempfile.mkdtemp(prefix="deploy-bench-"))
    try:
        makers = {
            "pages": (
                "ResNet-18-style 224 trained on page orientation (4 classes), labelled pages",
                lambda: trained_on_pages(args.recovery_pages, args.train_threads),
            ),
            "resnet": (
                "ResNet-18-style 224, random weights, random inputs",
                lambda: (resnet18_style(folder / "m"), None, None),
            ),
            "encoder": (
                "transformer encoder (seq 32, dim 64)",
                lambda: (transformer_block(folder), None, None),
            ),
            "demo": ("bundled demo, 32x32 digits, labelled splits", lambda: (DEMO, None, None)),
        }
        for index, key in enumerate(args.models.split(",")):
            name, make = makers[key]
            path, data, eval_data = make()
            work = folder / f"work{index}"
            work.mkdir()
            started = time.perf_counter()
            job = deploy_job(
                ModelSource(path),
                LocalTarget(),
                work,
                data=data,
                forms=args.forms.split(",") if args.forms else None,
                timing=timing,
                recovery_epochs=args.recovery_epochs,
                eval_data=eval_data,
            )
            result = run_job(job)
            show(name, result, time.perf_counter() - started)
            print(f"{result.notes[0]}; load average {os.getloadavg()[0]:.1f}")
    finally:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
