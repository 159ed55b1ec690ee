"""Stop strings cost memory linear in their length: one 100 KB stop string used to build every prefix of itself
(+4.6 GB, the server frozen for 15 s). Now each string is capped and matching keeps no prefix table."""

from __future__ import annotations

import tracemalloc

import pytest

from kiln.generate.sampling import SamplingParams
from kiln.generate.stops import MAX_STOP_CHARS, StopMatcher, truncate_at_stop


def test_sixteen_longest_stops_stream_in_linear_memory() -> None:
    # Adversarial: every stop is a run of one character, so every suffix of the text is a prefix of every stop.
    stops = [chr(ord("a") + i % 2) * (MAX_STOP_CHARS - 2) + f"{i:02d}" for i in range(16)]
    text = "a" * (3 * MAX_STOP_CHARS) + "b" * 100
    tracemalloc.start()
    matcher = StopMatcher(stops)
    out = "".join(matcher.push(ch)[0] for ch in text[:2000]) + "".join(
        matcher.push(text[i : i + 512])[0] for i in range(2000, len(text), 512)
    )
    out += matcher.flush()
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert out == truncate_at_stop(text, stops)[0] == text  # nothing matched: all of it comes out
    # The prefix table alone would hold 16 x 4096^2 / 2 characters (~134 MB); linear matching needs a few copies
    # of the stops and the held text.
    assert peak < 4 * 16 * MAX_STOP_CHARS + 2_000_000, peak


def test_a_stop_string_over_the_cap_is_refused_naming_the_limit() -> None:
    with pytest.raises(ValueError, match=f"at most {MAX_STOP_CHARS} characters"):
        SamplingParams(stop=("x" * (MAX_STOP_CHARS + 1),)).validate()
    with pytest.raises(ValueError, match="at most"):
        StopMatcher(["y" * (MAX_STOP_CHARS + 1)])


def test_longest_allowed_stop_still_matches_across_pieces() -> None:
    stop = "<" + "z" * (MAX_STOP_CHARS - 2) + ">"
    text = "before" + stop + "after"
    matcher = StopMatcher([stop])
    out = ""
    for i in range(0, len(text), 7):
        piece, done = matcher.push(text[i : i + 7])
        out += piece
        if done:
            break
    out += matcher.flush()
    assert out == "before" and matcher.stopped and matcher.matched == stop
