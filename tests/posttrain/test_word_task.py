"""The quickstart's instruction task: built from real stories, checked by a program."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from kiln.posttrain.word_task import (
    STOPWORDS,
    make_tasks,
    read_tinystories,
    shorten,
    split_stories,
    uses_words,
    words_used,
)

STORIES = Path(__file__).resolve().parents[2] / "src" / "kiln" / "assets" / "quickstart" / "tinystories.txt.gz"


def test_every_task_is_followed_by_its_own_story():
    tasks = make_tasks(read_tinystories(STORIES), seed=0)
    assert len(tasks) > 1000
    assert all(uses_words(t.story, t.words) and len(set(t.words)) == 3 for t in tasks)
    assert all(len(t.story) <= 600 and t.prompt.startswith("Write a short story that uses the words") for t in tasks)
    assert tasks[0].record()["messages"][1]["content"] == tasks[0].story


def test_the_checker_wants_whole_words():
    assert uses_words("The Kayak was warm. Goodbye!", ["kayak", "warm", "goodbye"])
    assert not uses_words("kayaks are warmer", ["kayak", "warm", "goodbye"])
    assert words_used("a warm kayak", ["kayak", "warm", "goodbye"]) == 2


def test_stories_split_at_single_newlines_and_shorten_at_sentence_ends():
    text = "First story.\n\nStill first.\nSecond story. It ends here."
    assert split_stories(text) == ["First story.\n\nStill first.", "Second story. It ends here."]
    assert shorten("One. Two. Three.", 10) == "One. Two."


def test_preference_pairs_differ_only_in_the_asked_for_words():
    from kiln.posttrain.word_task import preference_pairs, swap_words

    assert swap_words("Tim saw a Ball. The ball rolled.", ["ball", "saw"], ["kite", "had"]) == (
        "Tim had a Kite. The kite rolled."
    )
    tasks = make_tasks(read_tinystories(STORIES), seed=0)[:60]
    pairs = preference_pairs(tasks, seed=3, per_task=2)
    assert len(pairs) == 240 and pairs == preference_pairs(tasks, seed=3, per_task=2)  # deterministic
    assert pairs != preference_pairs(tasks, seed=4, per_task=2)
    for p, mirror in zip(pairs[::2], pairs[1::2], strict=True):
        for q in (p, mirror):
            assert q["prompt"].endswith(f"{q['words'][0]}, {q['words'][1]} and {q['words'][2]}.")
            assert uses_words(q["chosen"], q["words"]) and words_used(q["rejected"], q["words"]) == 0
        # Each reply chosen once and rejected once: ignoring the prompt is right on half of them.
        assert (p["chosen"], p["rejected"]) == (mirror["rejected"], mirror["chosen"])
        assert p["chosen"] in {t.story for t in tasks}
        assert len(p["chosen"].split()) == len(p["rejected"].split())


@pytest.mark.parametrize("vocabulary", ["instructions", "stories"])
def test_swapped_tasks_can_only_be_answered_from_the_prompt(vocabulary):
    from kiln.posttrain.word_task import swapped_tasks

    tasks = make_tasks(read_tinystories(STORIES), seed=0)[:50]
    swapped = swapped_tasks(tasks, per_task=2, seed=0, vocabulary=vocabulary)
    assert len(swapped) == 100 and swapped == swapped_tasks(tasks, per_task=2, seed=0, vocabulary=vocabulary)
    originals = {t.story: t for t in tasks}
    for task, s in zip([t for t in tasks for _ in range(2)], swapped, strict=True):
        assert uses_words(s.story, s.words) and words_used(s.story, task.words) == 0
        assert s.story not in originals and s.words != task.words and len(set(s.words)) == 3
        assert len(s.story.split()) == len(task.story.split())
    named = {w for t in tasks for w in t.words}
    new = {w for s in swapped for w in s.words}
    if vocabulary == "instructions":  # another task's three words
        assert {s.words for s in swapped} <= {t.words for t in tasks}
    else:  # any uncommon word of the stories: far more words than the instructions name
        in_stories = {w for t in tasks for w in re.findall(r"[a-z]+", t.story.lower())}
        assert new <= in_stories and not new & STOPWORDS and all(len(w) >= 4 for w in new)
        assert len(new - named) > len(new) / 2


def test_swapped_tasks_name_a_bad_vocabulary():
    from kiln.posttrain.word_task import swapped_tasks

    with pytest.raises(ValueError, match="vocabulary must be instructions or stories, got 'nouns'"):
        swapped_tasks(make_tasks(read_tinystories(STORIES), seed=0)[:10], vocabulary="nouns")


def test_new_instructions_name_words_no_single_story_answers():
    from kiln.posttrain.word_task import new_instructions

    tasks = make_tasks(read_tinystories(STORIES), seed=0)[:200]
    prompts = new_instructions(tasks, 300, seed=1)
    assert len(prompts) == 300 and prompts == new_instructions(tasks, 300, seed=1)
    task_words = {w for t in tasks for w in t.words}
    for p in prompts:
        assert len(set(p["words"])) == 3 and set(p["words"]) <= task_words
        assert (
            p["prompt"]
            == f"Write a short story that uses the words {p['words'][0]}, {p['words'][1]} and {p['words'][2]}."
        )
    # No story of the tasks follows any of them: only the instruction says which words to use.
    assert not any(uses_words(t.story, p["words"]) for t in tasks for p in prompts)
    # Drawn uniformly over the distinct words, not as often as the tasks use them: the most common task word is
    # named about as often as any other, so a reply listing the common words earns little.
    from collections import Counter

    named = Counter(w for p in prompts for w in p["words"])
    common = Counter(w for t in tasks for w in t.words).most_common(1)[0][0]
    assert named[common] <= 3 * 900 / len(task_words) + 5


def test_new_instructions_from_the_stories_vocabulary():
    """vocabulary="stories" names any uncommon word of the stories, as swapped_tasks does: far more words than
    the instructions name, still none that a single story answers."""
    from kiln.posttrain.word_task import new_instructions

    tasks = make_tasks(read_tinystories(STORIES), seed=0)[:200]
    prompts = new_instructions(tasks, 300, seed=1, vocabulary="stories")
    assert prompts == new_instructions(tasks, 300, seed=1, vocabulary="stories")
    named = {w for p in prompts for w in p["words"]}
    in_stories = {w for t in tasks for w in re.findall(r"[a-z]+", t.story.lower())}
    task_words = {w for t in tasks for w in t.words}
    assert named <= in_stories and not named & STOPWORDS and all(len(w) >= 4 for w in named)
    assert len(named - task_words) > len(named) / 2
    assert not any(uses_words(t.story, p["words"]) for t in tasks for p in prompts)
    with pytest.raises(ValueError, match="vocabulary must be instructions or stories, got 'nouns'"):
        new_instructions(tasks, 3, vocabulary="nouns")
