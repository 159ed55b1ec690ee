"""kiln.train: pretraining a GPT on next-token prediction, and its checkpoints.

The stage: `run(TrainConfig) -> TrainSummary`; `load_train_config(path, overrides)` builds the config as
`kiln train` does. The loop itself is `kiln.train.trainer.Trainer`.
"""

from kiln.model.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from kiln.train.config import TrainConfig, load_train_config
from kiln.train.stage import TrainSummary, run

__all__ = [
    "CheckpointError",
    "TrainConfig",
    "TrainSummary",
    "load_checkpoint",
    "load_train_config",
    "run",
    "save_checkpoint",
]
