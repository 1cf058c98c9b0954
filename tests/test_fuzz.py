"""Fuzzed files down the path a user's file takes (open, inventory, plan, data, one run):
each case ends in a success or a CompressorError, never an internal error, a crash or a hang.
Cases run in a child process (tests/fuzzing.py), so a native crash cannot end the test run.
benchmarks/fuzz.py runs the same cases by the ten thousand."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings

from tests import fuzzing

FUZZ = settings(
    deadline=None,
    derandomize=True,  # the same cases on every run; benchmarks/fuzz.py explores at random
    database=None,  # no .hypothesis folder left in the working directory
    suppress_health_check=list(HealthCheck),
)


@pytest.fixture(scope="module")
def runner():
    runner = fuzzing.Runner()
    yield runner
    runner.close()


def _check(runner: fuzzing.Runner, case: fuzzing.Case) -> None:
    outcome = runner.run(case)
    assert outcome.kind in ("success", "clean error"), f"{case.label}: {outcome.detail}"


@settings(FUZZ, max_examples=300)
@given(case=fuzzing.mutated_bytes())
def test_damaged_model_files_are_refused_in_words(runner, case) -> None:
    _check(runner, case)


@settings(FUZZ, max_examples=450)
@given(case=fuzzing.mutated_graphs())
def test_hostile_graphs_are_refused_in_words_or_run(runner, case) -> None:
    """Absurd and negative dims, wrong dtypes, cycles, short tensors, odd opsets and
    attributes, weight files inside, missing or outside the model's folder."""
    _check(runner, case)


@settings(FUZZ, max_examples=250)
@given(case=fuzzing.bad_data())
def test_data_of_the_wrong_keys_dtypes_and_shapes_is_refused_in_words(runner, case) -> None:
    _check(runner, case)
