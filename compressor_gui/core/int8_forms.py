"""Which INT8 form a model gets on the machine that will run it, chosen by measuring.

onnxruntime's CPU INT8 kernels come in three forms that matter: U8S8 (u8 activations, s8
weights; the fastest where the CPU has VNNI or AMX), U8S8 with `reduce_range` (7-bit
weights, so VPMADDUBSW's int16 sums cannot saturate on CPUs without VNNI) and U8U8. The
right one depends on the target CPU and the model, so `choose_form` builds the candidates
the machine's family prefers and keeps the first one that is as faithful as the best one
measured on the calibration data.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from compressor_gui.core.errors import PlanError
from compressor_gui.core.hardware import MachineInfo


@dataclass(frozen=True)
class Int8Form:
    """One onnxruntime INT8 form: weight type and whether weights use 7 bits."""

    name: str
    weight_type: str  # "s8" | "u8"
    reduce_range: bool

    @property
    def label(self) -> str:
        return f"u8 activations, {self.weight_type} weights" + (
            ", reduce_range (7-bit weights)" if self.reduce_range else ""
        )


FORMS = {
    "u8s8": Int8Form("u8s8", "s8", False),
    "u8s8-rr": Int8Form("u8s8-rr", "s8", True),
    "u8u8": Int8Form("u8u8", "u8", False),
}
FORM_CHOICES = ("auto", *FORMS)

# A candidate this close to the most faithful one is as good: the faster form wins.
AGREEMENT_TOLERANCE = 0.005
COSINE_TOLERANCE = 0.002
# Two candidates are always measured (a rule alone is not a measurement); the third only
# when neither of the first two is this faithful.
GOOD_AGREEMENT = 0.99
GOOD_COSINE = 0.995


def form_from_flags(weight_type: str | None, reduce_range: bool) -> str:
    """The form that `--weight-type` / `--reduce-range` name ("auto" when neither is given)."""
    if weight_type is None and not reduce_range:
        return "auto"
    if weight_type == "u8":
        if reduce_range:
            raise PlanError("--reduce-range applies to s8 weights only (u8 weights use 8 bits)")
        return "u8u8"
    return "u8s8-rr" if reduce_range else "u8s8"


def preferred_forms(machine: MachineInfo) -> tuple[Int8Form, ...]:
    """Candidates for `machine`, fastest-and-safe first: without VNNI plain U8S8 saturates,
    so it comes last there (still measured when the first two disappoint)."""
    if machine.u8s8_saturates:
        return FORMS["u8s8-rr"], FORMS["u8u8"], FORMS["u8s8"]
    return FORMS["u8s8"], FORMS["u8s8-rr"], FORMS["u8u8"]


def rule_form(machine: MachineInfo) -> Int8Form:
    """The form chosen without measuring (no data, or the target is another CPU family)."""
    return preferred_forms(machine)[0]


@dataclass(frozen=True)
class FormScore:
    """One candidate measured against the float model on calibration samples."""

    form: str
    agreement: float | None
    cosine: float


@dataclass(frozen=True)
class FormChoice:
    form: Int8Form
    reason: str
    scores: tuple[FormScore, ...]


def choose_form(
    machine: MachineInfo,
    score: Callable[[Int8Form], FormScore | None],
    *,
    measured_here: bool,
) -> FormChoice:
    """Measure the machine's preferred candidates with `score` (None: the form failed to
    build) and keep the fastest one within tolerance of the most faithful. When the model
    will run on another CPU family than this one, measuring here says nothing: use the rule."""
    candidates = preferred_forms(machine)
    family = f"{machine.cpu_model} ({machine.isa_class})"
    if not measured_here:
        form = candidates[0]
        why = "no VNNI: u8s8 sums can saturate" if machine.u8s8_saturates else "VNNI/AMX/ARM"
        return FormChoice(form, f"{form.name} by rule for {family}, {why}; not measured", ())
    scores: list[FormScore] = []
    for index, form in enumerate(candidates):
        if index >= 2 and any(_good(s) for s in scores):
            break
        measured = score(form)
        if measured is not None:
            scores.append(measured)
    if not scores:
        form = candidates[0]
        return FormChoice(form, f"{form.name}: no candidate could be measured", ())
    best = max(scores, key=_fidelity_key)
    chosen = next(s for s in scores if _close(s, best))
    words = ", ".join(_describe(s) for s in scores)
    reason = f"{chosen.form} for {family}, measured on calibration data: {words}"
    if chosen.form != candidates[0].name:
        reason += f" ({candidates[0].name} lost fidelity here)"
    return FormChoice(FORMS[chosen.form], reason, tuple(scores))


def _fidelity_key(score: FormScore) -> tuple[float, float]:
    return (score.agreement if score.agreement is not None else 1.0, score.cosine)


def _close(score: FormScore, best: FormScore) -> bool:
    both = best.agreement is not None and score.agreement is not None
    if both and score.agreement < best.agreement - AGREEMENT_TOLERANCE:
        return False
    return score.cosine >= best.cosine - COSINE_TOLERANCE


def _good(score: FormScore) -> bool:
    agreement_ok = score.agreement is None or score.agreement >= GOOD_AGREEMENT
    return agreement_ok and score.cosine >= GOOD_COSINE


def _describe(score: FormScore) -> str:
    agreement = "" if score.agreement is None else f"agreement {score.agreement:.1%}, "
    return f"{score.form} {agreement}cosine {score.cosine:.4f}"
