"""Fuzz the loaders and the feeds by the ten thousand and count how each case ended.

Damaged model files, hostile graphs (absurd and negative dims, wrong dtypes, cycles, short
tensors, odd opsets and attributes, weight files outside the model's folder) and data of the
wrong keys, dtypes and shapes go down the path a user's file takes (tests/fuzzing.py), in a
child process. Every `--cli-every`-th case also goes through the real command line
(`compressor-gui inspect` and `compress --fp16`): exit code 3 there is an internal error and
"Traceback" on its terminal a traceback. The bar: 0 internal errors, tracebacks, crashes, hangs.

    .venv/bin/python benchmarks/fuzz.py [--cases 10000] [--cli-every 100] [--seed 0]
"""

from __future__ import annotations

import argparse
import collections
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from hypothesis import HealthCheck, Phase, given, seed, settings

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests import fuzzing  # noqa: E402


def cli_outcome(case: fuzzing.Case) -> fuzzing.Outcome:
    """The case through the command line, as a user would run it."""
    with tempfile.TemporaryDirectory(prefix="fuzz-cli-") as tmp:
        folder = fuzzing.write_case(case, Path(tmp))
        model = str(folder / "model.onnx")
        out = str(Path(tmp) / "out" / "small.onnx")
        worst = fuzzing.Outcome("success")
        for argv in (["inspect", model], ["compress", model, "--fp16", "-o", out, "--no-latency"]):
            try:
                result = subprocess.run(
                    [sys.executable, "-m", "compressor_gui", *argv],
                    capture_output=True,
                    text=True,
                    timeout=fuzzing.CASE_TIMEOUT_S * 3,
                    cwd=tmp,
                )
            except subprocess.TimeoutExpired:
                return fuzzing.Outcome("hang", " ".join(argv[:1]))
            printed = result.stdout + result.stderr
            if "Traceback (most recent call last)" in printed:
                return fuzzing.Outcome("traceback", printed[-3000:])
            if result.returncode == 3:
                return fuzzing.Outcome("internal error", result.stderr[-3000:])
            if result.returncode not in (0, 2):
                return fuzzing.Outcome("crash", f"exit code {result.returncode}")
            if result.returncode == 2:
                worst = fuzzing.Outcome("clean error", result.stderr.strip()[:300])
        return worst


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=10_000)
    parser.add_argument("--cli-every", type=int, default=100, help="0: never")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    runner = fuzzing.Runner()
    counts: collections.Counter[str] = collections.Counter()
    cli_counts: collections.Counter[str] = collections.Counter()
    bad: list[tuple[str, fuzzing.Outcome]] = []
    started = time.monotonic()

    @seed(args.seed)
    @settings(
        max_examples=args.cases,
        deadline=None,
        database=None,
        phases=[Phase.generate],  # count every case once: no shrinking, no replays
        suppress_health_check=list(HealthCheck),
    )
    @given(fuzzing.any_case())
    def run(case: fuzzing.Case) -> None:
        number = sum(counts.values()) + 1
        outcome = runner.run(case)
        counts[outcome.kind] += 1
        if outcome.kind not in ("success", "clean error"):
            bad.append((case.label, outcome))
        if args.cli_every and number % args.cli_every == 0:
            through_cli = cli_outcome(case)
            cli_counts[through_cli.kind] += 1
            if through_cli.kind not in ("success", "clean error"):
                bad.append((f"{case.label} (CLI)", through_cli))
        if number % 1000 == 0:
            print(f"  {number} cases, {time.monotonic() - started:.0f} s", file=sys.stderr)

    try:
        run()
    finally:
        runner.close()
    elapsed = time.monotonic() - started
    print(f"{sum(counts.values())} cases in {elapsed:.0f} s (seed {args.seed})")
    for kind in fuzzing.OUTCOMES:
        line = f"  {kind:<15} {counts[kind]:>6}"
        if args.cli_every:
            line += f"   via the CLI: {cli_counts[kind]:>4}"
        print(line)
    for label, outcome in bad[:10]:
        print(f"\n--- {outcome.kind} ({label})\n{outcome.detail}")


if __name__ == "__main__":
    main()
