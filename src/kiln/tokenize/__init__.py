"""kiln.tokenize: corpora -> tokens. Reading text corpora (`corpus`), training a tokenizer on one, and turning
one into the train/val token shards `kiln train` reads (`tokenize_corpus`, the format in `shards`). The
tokenizer algorithms themselves live in `kiln.tokenizer`."""
