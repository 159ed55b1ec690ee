import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kiln.generate.stops import StopMatcher, truncate_at_stop


def run(stops, chunks):
    """Push every chunk (checking the per-push contract), flush, return (emitted text, matcher)."""
    m = StopMatcher(stops)
    out = []
    seen = ""
    for c in chunks:
        was_stopped = m.stopped
        emitted, stopped = m.push(c)
        seen += c
        if was_stopped:
            assert (emitted, stopped) == ("", True)
        out.append(emitted)
        assert stopped == m.stopped
        if not stopped:
            # Nothing is lost: emitted + held back == everything pushed.
            assert "".join(out) + m.pending == seen
    out.append(m.flush())
    assert m.text == "".join(out)
    return "".join(out), m


def split(text, cuts):
    cuts = sorted({c % (len(text) + 1) for c in cuts})
    bounds = [0, *cuts, len(text)]
    return [text[a:b] for a, b in itertools.pairwise(bounds)]


ALPHABET = "ab<|>"
stop_strings = st.text(alphabet=ALPHABET, min_size=1, max_size=4)


@st.composite
def texts_and_stops(draw):
    """Stops that often overlap or sit inside one another, and texts built partly from pieces of them, so
    that partial and complete matches are common."""
    stops = draw(st.lists(stop_strings, max_size=3))
    if stops and draw(st.booleans()):
        # Add a stop that is a substring of another (prefix, suffix or strictly inside).
        s = draw(st.sampled_from(stops))
        i = draw(st.integers(0, len(s) - 1))
        j = draw(st.integers(i + 1, len(s)))
        stops.append(s[i:j])
    pieces = st.one_of(
        st.text(alphabet=ALPHABET, max_size=3),
        *(
            [st.sampled_from(stops).flatmap(lambda s: st.sampled_from([s[:k] for k in range(1, len(s) + 1)]))]
            if stops
            else []
        ),
    )
    text = "".join(draw(st.lists(pieces, max_size=8)))
    return text, stops


@settings(max_examples=500, deadline=None)
@given(ts=texts_and_stops(), cuts=st.lists(st.integers(min_value=0, max_value=40), max_size=12))
def test_streaming_equals_truncation(ts, cuts):
    text, stops = ts
    chunks = split(text, cuts)
    assert "".join(chunks) == text
    emitted, m = run(stops, chunks)
    expected, hit = truncate_at_stop(text, stops)
    assert emitted == expected
    assert m.stopped == hit
    for s in stops:
        assert s not in emitted
    if hit:
        assert text[len(expected) :].startswith(m.matched)
    # Which stop matched does not depend on the chunking either.
    whole = StopMatcher(stops)
    whole.push(text)
    whole.flush()
    assert whole.matched == m.matched
    assert (m.matched is None) == (not hit)


@settings(max_examples=200, deadline=None)
@given(
    text=st.text(alphabet=ALPHABET, max_size=20),
    stops=st.lists(stop_strings, min_size=1, max_size=3),
)
def test_holds_back_only_possible_stop_prefixes(text, stops):
    # Character by character: after each push with no stop complete anywhere, the held text is exactly the
    # longest suffix that is a proper prefix of a stop.
    m = StopMatcher(stops)
    seen = ""
    for ch in text:
        _, stopped = m.push(ch)
        seen += ch
        if stopped or truncate_at_stop(seen, stops)[1]:
            break
        longest = max(
            (n for n in range(1, len(seen) + 1) if any(s.startswith(seen[-n:]) and s != seen[-n:] for s in stops)),
            default=0,
        )
        assert m.pending == seen[len(seen) - longest :]


def test_stop_split_across_three_chunks():
    m = StopMatcher(["<|end|>"])
    assert m.push("Hello <|e") == ("Hello ", False)
    assert m.push("nd") == ("", False)
    assert m.push("|> more") == ("", True)
    assert m.stopped and m.matched == "<|end|>"
    assert m.push("anything") == ("", True)
    assert m.flush() == ""
    assert m.text == "Hello "


def test_false_start_is_released():
    m = StopMatcher(["<|end|>"])
    assert m.push("a <|") == ("a ", False)
    assert m.push("x") == ("<|x", False)
    assert m.push(" b") == (" b", False)
    assert m.flush() == ""
    assert not m.stopped
    assert m.text == "a <|x b"


def test_held_prefix_released_at_flush():
    m = StopMatcher(["<|end|>"])
    assert m.push("done <|en") == ("done ", False)
    assert m.flush() == "<|en"
    assert not m.stopped
    assert m.text == "done <|en"


def test_stop_at_very_start():
    m = StopMatcher(["###"])
    assert m.push("###rest") == ("", True)
    assert m.text == ""
    assert truncate_at_stop("###rest", ["###"]) == ("", True)


def test_earliest_of_multiple_stops_wins():
    text = "one STOP two END three"
    assert truncate_at_stop(text, ["END", "STOP"]) == ("one ", True)
    m = StopMatcher(["END", "STOP"])
    assert m.push(text) == ("one ", True)
    assert m.matched == "STOP"
    emitted, m = run(["END", "STOP"], list(text))
    assert emitted == "one " and m.matched == "STOP"


def test_overlapping_stops():
    # "ab" and "bc" overlap in "abc": the earlier one ("ab") cuts.
    assert truncate_at_stop("xabc", ["bc", "ab"]) == ("x", True)
    assert run(["bc", "ab"], ["xa", "bc"])[0] == "x"
    # One stop a prefix of another: same start, the shorter completes first.
    m = StopMatcher(["<|end|>", "<|"])
    assert m.push("hi <") == ("hi ", False)
    assert m.push("|end") == ("", True)
    assert m.matched == "<|"
    m = StopMatcher(["<|end|>", "<|"])
    assert m.push("hi <|end|>") == ("hi ", True)
    assert m.matched == "<|"


def test_stop_inside_longer_stop_waits_for_the_earlier_candidate():
    # "end" completes first but "<|end|>" may still be completing from an earlier position.
    m = StopMatcher(["<|end|>", "end"])
    assert m.push("x <|end") == ("x ", False)
    assert m.push("|>") == ("", True)
    assert m.matched == "<|end|>"
    # The longer one fails to complete: cut at "end", which was already known.
    m = StopMatcher(["<|end|>", "end"])
    assert m.push("x <|end") == ("x ", False)
    assert m.push("!") == ("<|", True)
    assert m.matched == "end"
    # Generation ends while still undecided: flush applies the complete stop.
    m = StopMatcher(["<|end|>", "end"])
    assert m.push("x <|end") == ("x ", False)
    assert m.flush() == "<|"
    assert m.stopped and m.matched == "end"


def test_no_stops_passes_through():
    m = StopMatcher([])
    for piece in ["a", "<|end|>", "", "b"]:
        assert m.push(piece) == (piece, False)
    assert m.flush() == ""
    assert m.text == "a<|end|>b"
    assert truncate_at_stop("a<|end|>b", []) == ("a<|end|>b", False)


def test_empty_stop_rejected():
    with pytest.raises(ValueError, match="non-empty"):
        StopMatcher(["ok", ""])
    with pytest.raises(ValueError, match="non-empty"):
        truncate_at_stop("text", [""])
