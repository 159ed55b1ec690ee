"""Tests of kiln.posttrain: fine-tuning a tiny base model trained for real (the `base_model` and `chat_file`
fixtures live in tests/conftest.py, since the serve tests chat with fine-tuned models too)."""
