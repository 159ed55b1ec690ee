"""The quickstart's instruction task: built from real stories, checked by a program."""

from __future__ import annotations

from pathlib import Path

from kiln.posttrain.word_task import make_tasks, read_tinystories, shorten, split_stories, uses_words, words_used

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
