"""kiln.train: pretraining a GPT on next-token prediction, and its checkpoints."""

from kiln.model.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from kiln.train.config import TrainConfig

__all__ = ["CheckpointError", "TrainConfig", "load_checkpoint", "save_checkpoint"]
