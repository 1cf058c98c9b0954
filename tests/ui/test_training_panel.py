"""The Training tab's live curves name the measure that applies: agreement with the teacher
for a classifier, the output cosine for a dense model (a detector's maps)."""

from __future__ import annotations

from compressor_gui.core.distill_types import EpochStats
from compressor_gui.core.jobs import CancelToken
from compressor_gui.ui.training import TrainingPanel


def _stats(epoch: int, **measure) -> EpochStats:
    return EpochStats(epoch, 2, None if epoch == 0 else 0.3, 0.4, None, **measure)


def test_a_dense_model_s_epochs_show_the_cosine_to_the_original(qtbot) -> None:
    panel = TrainingPanel()
    qtbot.addWidget(panel)
    panel.begin(CancelToken())
    panel.add(_stats(0, val_agreement=None, val_cosine=0.81))
    panel.add(_stats(1, val_agreement=None, val_cosine=0.9123))
    assert panel.status.text() == "epoch 1/2: validation loss 0.4000, cosine to the original 0.9123"
    assert panel.accuracy_plot.getAxis("left").labelText == "cosine to the original"


def test_a_classifier_s_epochs_show_the_agreement_with_the_teacher(qtbot) -> None:
    panel = TrainingPanel()
    qtbot.addWidget(panel)
    panel.begin(CancelToken())
    panel.add(_stats(0, val_agreement=0.5))
    assert panel.status.text().endswith("agreement with the teacher 50.0%")
    assert panel.accuracy_plot.getAxis("left").labelText == "validation (%)"
