"""Tests of kiln.train: the trainer: optimizers, schedules, the data loader, exact resume after a kill,
DDP/FSDP under torchrun (gloo).

Shared fixtures of these tests go here; helpers shared with other packages are in tests/helpers.py."""
