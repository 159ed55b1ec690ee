"""A verifiable instruction task built from TinyStories: "Write a short story that uses the words A, B and C."

The three words are taken from a real story, which is the answer, so the data teaches the behaviour with text the
base model already knows how to write; whether a reply follows the instruction is checked by a program (all three
words appear as whole words), which makes the task usable as a success rate after SFT and as a verifiable reward
for preference tuning and RL.
"""

from __future__ import annotations

import gzip
import random
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from kiln.utils.checks import require

# Words too common to make an instruction meaningful (a story "uses" them by accident).
_COMMON = """
about above after again also always among another anything around away back because been before being below
best better between both came come could does doing done down each even ever every first from gave give goes
going gone good great have having here home into just know knew like little look looked made make many more
most much must never next nice once only other over play played said same says should some something soon
still such sure take than that their them then there these they thing things think this those thought
through time told took under very want wanted wants were what when where which while will with would your
yours upon felt feel happy liked loved help helped tell asked day days
"""
STOPWORDS = frozenset(_COMMON.split())
_WORD = re.compile(r"\b[a-z]{4,}\b")


@dataclass(frozen=True)
class WordTask:
    words: tuple[str, str, str]
    story: str

    @property
    def prompt(self) -> str:
        a, b, c = self.words
        return f"Write a short story that uses the words {a}, {b} and {c}."

    def record(self) -> dict:
        """As SFT data: a chat conversation, with the words kept for checking."""
        return {
            "messages": [{"role": "user", "content": self.prompt}, {"role": "assistant", "content": self.story}],
            "words": list(self.words),
        }


def words_used(text: str, words: Iterable[str]) -> int:
    """How many of `words` appear in `text` as whole words (case-insensitive)."""
    low = text.lower()
    return sum(bool(re.search(rf"\b{re.escape(w.lower())}\b", low)) for w in words)


def uses_words(text: str, words: Sequence[str]) -> bool:
    """Whether every word appears in `text` as a whole word (case-insensitive): the instruction is followed."""
    return words_used(text, words) == len(words)


def split_stories(text: str) -> list[str]:
    """TinyStories as bundled: paragraphs of a story are separated by a blank line, stories by a single newline."""
    return [s.strip() for s in re.split(r"(?<!\n)\n(?!\n)", text) if s.strip()]


def shorten(story: str, max_chars: int) -> str:
    """The story cut at the last sentence end within max_chars (a short story fits a small model's context)."""
    if len(story) <= max_chars:
        return story
    keep = 0
    for end in (". ", ".\n", '!"', '."', "! "):
        i = story.rfind(end, 0, max_chars)
        n = len(end.rstrip())  # the punctuation (and closing quote) stays, the space after it goes
        if i >= 0 and i + n <= max_chars:
            keep = max(keep, i + n)
    return story[:keep].strip() if keep else story[:max_chars]


def make_tasks(
    stories: Sequence[str], seed: int = 0, min_chars: int = 150, max_chars: int = 600, from_first: int = 240
) -> list[WordTask]:
    """One task per story (shortened to max_chars at a sentence end): three distinct uncommon words from its
    first `from_first` characters, so a reply that follows the instruction uses them early, where a small
    model's attention back to the prompt is strongest (a learnable habit: "Once upon a time, there was a ...")."""
    rng = random.Random(seed)
    out = []
    for story in stories:
        story = shorten(story, max_chars)
        if len(story) < min_chars:
            continue
        head = story[:from_first].rsplit(maxsplit=1)[0]  # whole words only: the cut may split the last one
        candidates = sorted({w for w in _WORD.findall(head.lower()) if w not in STOPWORDS})
        if len(candidates) < 3:
            continue
        words = tuple(rng.sample(candidates, 3))
        out.append(WordTask(words, story))  # type: ignore[arg-type]
    return out


def swap_words(story: str, old: Sequence[str], new: Sequence[str]) -> str:
    """`story` with every whole-word use of old[i] replaced by new[i] (a capital kept where the word had one)."""
    for o, n in zip(old, new, strict=True):
        story = re.sub(rf"\b{re.escape(o)}\b", lambda m, n=n: n.capitalize() if m[0][0].isupper() else n, story,
                       flags=re.IGNORECASE)  # fmt: skip
    return story


def preference_pairs(tasks: Sequence[WordTask], seed: int = 0, per_task: int = 1) -> list[dict]:
    """Preference pairs for the task, as `kiln dpo` and `kiln reward` read them; chosen follows the instruction,
    rejected does not, and only reading the instruction tells them apart.

    For a task (words W, story S) and another task's words W' (none of them in S): S' is S with W swapped for W'.
    Two mirrored pairs: "use W": chosen S, rejected S'; "use W'": chosen S', rejected S. The replies differ only in
    those words, and each reply is chosen once and rejected once, so a model that ignores the prompt (and prefers,
    say, the original wording) is right on exactly half of them: chance is 0.5 by construction. (Pairs of two
    unrelated stories were tried first: a small model's preference then comes from the stories themselves, and
    DPO on them did not carry to held-out tasks; see docs/benchmarks.md.) Deterministic for a seed; `per_task`
    other tasks each, so 2 * per_task pairs per task; W' comes from `tasks` too, so held-out tasks stay held out.
    """
    out = []
    for task, swapped in _swaps(tasks, seed, per_task):
        out.append({"prompt": task.prompt, "chosen": task.story, "rejected": swapped.story, "words": list(task.words)})
        out.append({"prompt": swapped.prompt, "chosen": swapped.story, "rejected": task.story,
                    "words": list(swapped.words)})  # fmt: skip
    return out


def _swaps(tasks: Sequence[WordTask], seed: int, per_task: int) -> list[tuple[WordTask, WordTask]]:
    """(task, the task with its words swapped for another task's), `per_task` other tasks each, chosen among those
    whose words its story does not use; deterministic for a seed."""
    rng = random.Random(seed)
    vocab = _story_words(tasks)
    out = []
    for task, v in zip(tasks, vocab, strict=True):
        others = [o for o in tasks if o is not task and not v.intersection(o.words)]
        for other in rng.sample(others, min(per_task, len(others))):
            out.append((task, WordTask(other.words, swap_words(task.story, task.words, other.words))))
    return out


def _story_words(tasks: Sequence[WordTask]) -> list[set[str]]:
    """Each story's whole words, lower-cased. A word is used as a whole word exactly when it is one of the text's
    maximal runs of word characters (what `\\b...\\b` matches): one set per story makes the all-pairs checks set
    lookups, not 3 n^2 regex searches."""
    return [set(re.findall(r"\w+", t.story.lower())) for t in tasks]


VOCABULARIES = ("instructions", "stories")  # where swapped_tasks and new_instructions draw their words from


def _check_vocabulary(vocabulary: str) -> None:
    require(vocabulary in VOCABULARIES, f"vocabulary must be {' or '.join(VOCABULARIES)}, got {vocabulary!r}")


def swapped_tasks(
    tasks: Sequence[WordTask], per_task: int = 3, seed: int = 0, vocabulary: str = "instructions"
) -> list[WordTask]:
    """Fine-tuning data only copying can answer: each task's story with its three words swapped for new ones
    (`per_task` variants each), the instruction naming the new words.

    Why: with the original tasks alone, a reply's words are also predictable from the story itself, so a small
    model learns the stories and not the instruction; a swapped word fits the story no better than any other
    noun, and only the prompt says which one comes. With SFT's `keyword_weight` this taught the quickstart's
    model to use the words (docs/benchmarks.md, post-training effects).

    `vocabulary` says where the new words come from: "instructions", another task's three words (the 1,176
    words the quickstart's instructions name); "stories", three words drawn uniformly from every uncommon word
    of the tasks' stories (3,456 for the quickstart), none of them in the story. Why "stories": how often the
    fine-tuned model writes a word it is asked for follows how many training instructions named that word, and
    words no instruction named were almost never written, so a model taught on more words copies more of them
    (docs/benchmarks.md, GRPO rounds 16-17)."""
    _check_vocabulary(vocabulary)
    # seed + 1: other swaps than preference_pairs draws with the same seed, so DPO's pairs are not the SFT data.
    if vocabulary == "instructions":
        return [swapped for _, swapped in _swaps(tasks, seed + 1, per_task)]
    rng = random.Random(seed + 1)
    story_words = _story_words(tasks)
    pool = _vocabulary(tasks, "stories")
    out = []
    for task, used in zip(tasks, story_words, strict=True):
        for _ in range(per_task):
            words = tuple(rng.sample(pool, 3))
            while used.intersection(words):  # a word the story has would be "used" by the unswapped text
                words = tuple(rng.sample(pool, 3))
            out.append(WordTask(words, swap_words(task.story, task.words, words)))  # type: ignore[arg-type]
    return out


def _vocabulary(tasks: Sequence[WordTask], vocabulary: str) -> list[str]:
    """The words a swap or a new instruction draws from (sorted, so a seed fixes the draw): "instructions", the
    words the tasks' instructions name; "stories", every uncommon word of the tasks' stories."""
    _check_vocabulary(vocabulary)
    if vocabulary == "instructions":
        return sorted({w for t in tasks for w in t.words})
    return sorted({w for t in tasks for w in _WORD.findall(t.story.lower()) if w not in STOPWORDS})


def new_instructions(tasks: Sequence[WordTask], n: int, seed: int = 0, vocabulary: str = "instructions") -> list[dict]:
    """`n` RL prompts (`{"prompt", "words"}`, as `kiln rl reward=words` reads them): three distinct words drawn
    uniformly from `vocabulary` (as in `swapped_tasks`: the words the tasks' instructions name, or every uncommon
    word of their stories), no story the model was fine-tuned on using all three.

    Why new triples: on the fine-tuning tasks' own prompts, GRPO's reward rose by recalling the memorised stories,
    and the held-out success rate did not follow (docs/benchmarks.md); with new triples the reward is earned only
    by using the words the prompt names, which is what the held-out check measures.
    Why uniformly over the distinct words: drawn as the tasks use them, a few words are common ("girl", "park",
    "friends": the top 30 made 22% of the prompts' words), and GRPO learned to list those in every reply whatever
    the prompt asked (docs/benchmarks.md); drawn uniformly, no fixed list of words earns much. Deterministic for a
    seed."""
    rng = random.Random(seed)
    vocab = _story_words(tasks)
    pool = _vocabulary(tasks, vocabulary)
    out: list[dict] = []
    while len(out) < n:
        words = tuple(rng.sample(pool, 3))
        if not any(v.issuperset(words) for v in vocab):
            out.append({"prompt": WordTask(words, "").prompt, "words": list(words)})  # type: ignore[arg-type]
    return out


def read_tinystories(path: str | Path) -> list[str]:
    path = Path(path)
    raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    return split_stories(raw.decode("utf-8"))
