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


def test_preference_pairs_prefer_the_story_that_follows_the_instruction():
    from kiln.posttrain.word_task import preference_pairs

    tasks = make_tasks(read_tinystories(STORIES), seed=0)[:60]
    pairs = preference_pairs(tasks, seed=3, per_task=2)
    assert len(pairs) == 120 and pairs == preference_pairs(tasks, seed=3, per_task=2)  # deterministic
    assert pairs != preference_pairs(tasks, seed=4, per_task=2)
    stories = {t.story for t in tasks}
    for p in pairs:
        assert p["prompt"].endswith(f"{p['words'][0]}, {p['words'][1]} and {p['words'][2]}.")
        assert uses_words(p["chosen"], p["words"]) and words_used(p["rejected"], p["words"]) == 0
        assert p["rejected"] in stories and p["rejected"] != p["chosen"]
