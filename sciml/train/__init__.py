"""Training: one loop (Adam + optional L-BFGS finish) for every learned solver.

See :mod:`sciml.train.trainer` for the step convention, checkpoints, the NaN guard
and distributed use.
"""
from .trainer import (SCHEDULES, Callback, CheckpointMismatch, Constant, Cosine, StepDecay, TrainConfig, Trainer,
                      TrainHistory, TrainingDiverged, sum_backward)

__all__ = ["SCHEDULES", "Callback", "CheckpointMismatch", "Constant", "Cosine", "StepDecay", "TrainConfig", "Trainer", "TrainHistory",
           "TrainingDiverged", "sum_backward"]
