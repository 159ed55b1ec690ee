"""GSM8K answer extraction and exact match, as lm-evaluation-harness 0.4's `gsm8k` task scores them.

The harness's task YAML (lm_eval/tasks/gsm8k/gsm8k.yaml) runs two filters over each generated text:
- "strict-match": regex `#### (\\-?[0-9\\.\\,]+)`, first match: the number after GSM8K's own "#### " marker;
- "flexible-extract": regex `(-?[$0-9.,]{2,})|(-?[0-9]+)` with group_select -1: the last number-like run;
each then `take_first`; no match gives "[invalid]". Then `exact_match` compares the filtered text with the whole
reference answer after removing, in order, the regexes "," "\\$" "(?s).*#### " "\\.$" from both and lowercasing
(ignore_case true, ignore_punctuation false). The functions below repeat those steps one by one (the harness's
RegexFilter.apply and exact_match_hf_evaluate) so that kiln's per-item answers equal the harness's
(tests/eval/test_eval_gsm8k_parity.py checks them against lm_eval itself).
"""

from __future__ import annotations

import re

STRICT = re.compile(r"#### (\-?[0-9\.\,]+)")
FLEXIBLE = re.compile(r"(-?[$0-9.,]{2,})|(-?[0-9]+)")
FALLBACK = "[invalid]"
IGNORE = (",", r"\$", r"(?s).*#### ", r"\.$")

# Filter name (the harness's, as its results name them) -> (pattern, group_select).
FILTERS: dict[str, tuple[re.Pattern[str], int]] = {
    "strict-match": (STRICT, 0),
    "flexible-extract": (FLEXIBLE, -1),
}


def regex_extract(text: str, pattern: re.Pattern[str], group_select: int = 0) -> str:
    """The harness's RegexFilter on one response: the selected match (of a pattern with alternative groups, its
    first non-empty group), stripped; FALLBACK when nothing matches."""
    matches = pattern.findall(text)
    if not matches:
        return FALLBACK
    match = matches[group_select]
    if isinstance(match, tuple):
        match = next((g for g in match if g), FALLBACK)
    return match.strip()


def extract(text: str, filter_name: str) -> str:
    pattern, group = FILTERS[filter_name]
    return regex_extract(text, pattern, group)


def normalise(text: str) -> str:
    """exact_match's preprocessing with gsm8k's settings: the ignored regexes removed in order, then lowercase."""
    for regex in IGNORE:
        text = re.sub(regex, "", text)
    return text.lower()


def exact_match(prediction: str, reference: str) -> bool:
    """Whether a filtered prediction equals the reference answer (the whole "... #### 18" text) after
    normalisation; "#### 1,000." and "1000" both become "1000"."""
    return normalise(prediction) == normalise(reference)
