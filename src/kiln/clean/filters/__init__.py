"""Heuristic quality filters for web text, as FineWeb runs them (datatrove's defaults), each a pipeline `Step`.

FineWeb's order, after URL filtering, extraction and language identification:

    run_steps(docs, [GopherRepetitionFilter(), GopherQualityFilter(),
                     C4QualityFilter(filter_no_terminal_punct=False), FineWebQualityFilter()])
"""

from kiln.clean.filters.c4 import C4QualityFilter
from kiln.clean.filters.fineweb import FineWebQualityFilter
from kiln.clean.filters.gopher import GopherQualityFilter, GopherRepetitionFilter, split_words
from kiln.clean.pipeline import Step

__all__ = [
    "C4QualityFilter",
    "FineWebQualityFilter",
    "GopherQualityFilter",
    "GopherRepetitionFilter",
    "fineweb_filters",
    "split_words",
]


def fineweb_filters() -> list[Step]:
    """The four filters in FineWeb's order and configuration (fresh instances, so their counts start at zero)."""
    return [
        GopherRepetitionFilter(),
        GopherQualityFilter(),
        C4QualityFilter(filter_no_terminal_punct=False),
        FineWebQualityFilter(),
    ]
