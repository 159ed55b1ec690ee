"""kiln.tokenize: corpora -> tokens. Reading text corpora (`corpus`), training a tokenizer on one
(`train_tokenizer`, `kiln tokenizer train`), and turning one into the train/val token shards `kiln train` reads
(`tokenize_corpus`, `kiln tokenize`; the format in `shards`). The tokenizer algorithms themselves live in
`kiln.tokenizer`.

The two stages, by the stage contract: `run_tokenize(TokenizeConfig) -> TokenizeSummary`
(`kiln.tokenize.tokenize_corpus.run`) and `run_tokenizer_train(TokenizerTrainConfig) -> TokenizerTrainSummary`
(`kiln.tokenize.train_tokenizer.run`). They are imported on first use, so that `kiln train`, which only reads
shards (`kiln.tokenize.shards`), does not load the tokenizers.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "TokenizeConfig": "kiln.tokenize.tokenize_config:TokenizeConfig",
    "TokenizeSummary": "kiln.tokenize.tokenize_summary:TokenizeSummary",
    "run_tokenize": "kiln.tokenize.tokenize_corpus:run",
    "TokenizerTrainConfig": "kiln.tokenize.train_tokenizer:TokenizerTrainConfig",
    "TokenizerTrainSummary": "kiln.tokenize.train_tokenizer:TokenizerTrainSummary",
    "run_tokenizer_train": "kiln.tokenize.train_tokenizer:run",
}

__all__ = list(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'kiln.tokenize' has no attribute {name!r}")
    module, _, attr = _EXPORTS[name].partition(":")
    return getattr(importlib.import_module(module), attr)
