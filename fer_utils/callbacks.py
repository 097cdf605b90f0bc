"""The Keras callbacks of a training phase: learning-rate schedule, checkpoints, early stopping,
time budget (`PhaseController`) and the one-bar-per-phase progress display (`PhaseBar`).

This module imports Keras when it is imported (its classes subclass `keras.callbacks.Callback`);
`fer_utils.training` imports it only when it trains.
"""

from __future__ import annotations

import dataclasses
import math
import time
from pathlib import Path

import keras
import numpy as np

from fer_utils import checkpoints
from fer_utils import progress as progress_bars


@dataclasses.dataclass(frozen=True)
class PhaseStep:
    """One phase of a run as the orchestrator schedules it.

    Attributes:
        name: "head", "finetune" or "end_to_end".
        epochs: Epochs planned for the phase.
        folder: Its checkpoint folder, RUN_DIR/backup/<name>.
        epoch_offset: Epochs of the earlier phases (history rows are numbered across the run).
        budget_s: Seconds the phase may use; None for no time budget.
        peak_learning_rate: The schedule's peak.
    """

    name: str
    epochs: int
    folder: Path
    epoch_offset: int
    budget_s: float | None
    peak_learning_rate: float


def cosine_learning_rate(progress: float, peak: float, warmup_fraction: float) -> float:
    """Linear warm-up to `peak` over the first `warmup_fraction`, then cosine decay to zero."""
    progress = min(max(progress, 0.0), 1.0)
    if warmup_fraction > 0 and progress < warmup_fraction:
        return peak * progress / warmup_fraction
    decay = (progress - warmup_fraction) / max(1.0 - warmup_fraction, 1e-12)
    return 0.5 * peak * (1.0 + math.cos(math.pi * decay))


class PhaseController(keras.callbacks.Callback):
    """Learning-rate schedule, history, best weights, early stopping, time budget, checkpoints.

    Everything it knows is saved in `step.folder/state.json` at the end of each epoch together with
    the model's weights and optimizer state, so a new controller on the same folder continues
    exactly where the last one stopped (`initial_epoch` tells `fit` where that is).
    """

    def __init__(self, step: PhaseStep, steps_per_epoch: int, config):
        super().__init__()
        self.step = step
        self.folder = Path(step.folder)
        self.total_steps = max(int(step.epochs) * int(steps_per_epoch), 1)
        self.warmup_fraction = float(config.warmup_fraction)
        self.monitor = config.monitor
        self.patience = int(config.patience)
        self.state = {
            "epochs_done": 0, "history": [], "best_value": None, "best_epoch": None, "wait": 0,
            "elapsed_s": 0.0, "stopped_early": False, "out_of_time": False,
            "budget_s": step.budget_s, "weights_file": None, "best_file": None, "steps_done": 0,
        }
        state_path = self.folder / checkpoints.STATE_FILE
        if state_path.is_file():
            self.state.update(checkpoints.read_state(state_path))
        # A resumed run may come with a new time budget (e.g. a longer session); it wins.
        self.state["budget_s"] = step.budget_s

    # -- resuming -----------------------------------------------------------------------------
    @property
    def initial_epoch(self) -> int:
        return int(self.state["epochs_done"])

    @property
    def finished(self) -> bool:
        return bool(self.state["stopped_early"] or self.state["out_of_time"])

    def restore(self) -> None:
        """Load the last checkpoint's weights and optimizer state into the compiled model."""
        if not self.state["weights_file"]:
            return
        path = self.folder / self.state["weights_file"]
        if not self.model.optimizer.built:
            self.model.optimizer.build(self.model.trainable_variables)
        try:
            self.model.load_weights(path)
        except Exception as error:  # h5py and Keras raise OSError, ValueError, KeyError ...
            raise checkpoints.damaged_checkpoint(path, error) from None

    def restore_best(self) -> None:
        """Put the best epoch's weights back into the model (no-op if none was recorded)."""
        if self.state["best_file"]:
            self.model.set_weights(checkpoints.load_arrays(self.folder / self.state["best_file"]))

    # -- schedule and time budget -------------------------------------------------------------
    def _elapsed(self) -> float:
        return self.state["elapsed_s"] + (time.perf_counter() - self._epoch_start)

    def _progress(self, step: int) -> float:
        progress = step / self.total_steps
        if self.state["budget_s"]:
            progress = max(progress, self._elapsed() / self.state["budget_s"])
        return progress

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch_start = time.perf_counter()
        self._step = int(self.state["steps_done"])

    def on_train_batch_begin(self, batch, logs=None):
        progress = self._progress(self._step)
        if progress >= 1.0 and self.state["budget_s"] and self._step > 0:
            self.state["out_of_time"] = True
            self.model.stop_training = True
        self.model.optimizer.learning_rate = cosine_learning_rate(
            progress, self.step.peak_learning_rate, self.warmup_fraction
        )

    def on_train_batch_end(self, batch, logs=None):
        self._step += 1

    # -- end of epoch: history, best weights, early stopping, checkpoint -----------------------
    def on_epoch_end(self, epoch, logs=None):
        logs = dict(logs or {})
        seconds = time.perf_counter() - self._epoch_start
        self.state["elapsed_s"] += seconds
        self.state["steps_done"] = self._step
        self.state["history"] = self.state["history"][:epoch] + [self._history_row(epoch, logs, seconds)]
        self._track_best(epoch, logs.get(self.monitor))
        self._checkpoint(epoch)

    def _history_row(self, epoch: int, logs: dict, seconds: float) -> dict:
        row = {"epoch": self.step.epoch_offset + epoch + 1, "phase": self.step.name}
        for key in ("loss", "accuracy", "val_loss", "val_accuracy"):
            row[key] = float(logs[key]) if key in logs else None
        row["learning_rate"] = float(np.asarray(self.model.optimizer.learning_rate))
        row["seconds"] = round(seconds, 3)
        return row

    def _track_best(self, epoch: int, value) -> None:
        """Keep the best epoch's weights; stop when `patience` epochs did not improve on it."""
        best = self.state["best_value"]
        improved = value is not None and (
            best is None or (value > best if self.monitor == "val_accuracy" else value < best)
        )
        if improved:
            self.state.update(best_value=float(value), best_epoch=epoch + 1, wait=0)
            best_file = f"best-epoch{epoch + 1:04d}.npz"
            checkpoints.save_arrays(self.folder / best_file, self.model.get_weights())
            self.state["best_file"] = best_file
            return
        self.state["wait"] += 1
        if self.patience and self.state["wait"] >= self.patience:
            self.state["stopped_early"] = True
            self.model.stop_training = True

    def _checkpoint(self, epoch: int) -> None:
        # Weights first under a fresh name, then the state that points to them: a kill at any
        # moment leaves a state.json whose files are complete.
        weights_file = f"epoch{epoch + 1:04d}.weights.h5"
        self.folder.mkdir(parents=True, exist_ok=True)
        self.model.save_weights(self.folder / weights_file)
        self.state["epochs_done"] = epoch + 1
        self.state["weights_file"] = weights_file
        checkpoints.write_state(self.folder / checkpoints.STATE_FILE, self.state)
        checkpoints.remove_unreferenced(
            self.folder, keep={weights_file, self.state["best_file"], checkpoints.STATE_FILE}
        )


class PhaseBar(keras.callbacks.Callback):
    """One progress bar for a whole phase (one step per epoch), closed by a summary line."""

    def __init__(self, controller: PhaseController, epochs: int, description: str):
        super().__init__()
        self.controller, self.epochs, self.description = controller, epochs, description
        self.bar = None

    def on_train_begin(self, logs=None):
        self.bar = progress_bars.bar(total=self.epochs, initial=self.controller.initial_epoch,
                                     desc=self.description, unit="epoch", leave=True)

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        shown = {key: f"{logs[key]:.3f}" for key in ("loss", "val_accuracy") if key in logs}
        self.bar.set_postfix(shown, refresh=False)
        self.bar.update(1)

    def on_train_end(self, logs=None):
        if self.bar is not None:
            self.bar.close()
