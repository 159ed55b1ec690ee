"""kiln: make a language model from raw web text and play with it."""

__version__ = "0.1.0"
