"""kiln.interop: kiln models in other engines' formats (Hugging Face directories, GGUF for llama.cpp)."""
