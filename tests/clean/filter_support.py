"""Shared by the quality-filter tests: clean prose that passes every filter, and a one-document decision."""

from __future__ import annotations

from kiln.clean.pipeline import Document, Step

# Twenty distinct English sentences sharing no 5-gram: clean prose that passes every filter with its defaults.
SENTENCES = [
    "The river rose quickly after three days of heavy rain in the northern hills.",
    "Farmers moved their cattle to higher ground before the water reached the barns.",
    "A small bakery on the corner sells bread that is still warm at seven in the morning.",
    "Her grandmother kept a diary for sixty years and wrote in it every single night.",
    "Most of the old bridges in this region were built with stone taken from nearby quarries.",
    "The committee will publish its final report once every member has reviewed the figures.",
    "Children learn to read faster when someone at home reads aloud with them each evening.",
    "We walked along the coast until the lighthouse disappeared behind a wall of fog.",
    "That museum has a collection of maps drawn by sailors who never returned from their voyages.",
    "Good coffee depends less on the machine than on fresh beans and clean water.",
    "The orchestra rehearsed the difficult second movement until the conductor was satisfied.",
    "Engineers tested the new engine in cold weather to be sure that it would start reliably.",
    "Several volunteers spent the weekend repairing fences damaged by the winter storms.",
    "His first novel was rejected by eleven publishers before a small press accepted it.",
    "Bees visit thousands of flowers to gather enough nectar for a single spoonful of honey.",
    "The village library opens late on Thursdays so that workers can borrow books after their shifts.",
    "Traders crossed the desert in long caravans and rested at wells known only to their guides.",
    "A careful gardener plants tomatoes where they will have sun for most of the day.",
    "Our neighbours have lived in the same brick house with their dogs for nearly forty years.",
    "Scientists measured the glacier again and found that it had retreated another hundred metres.",
]


def prose(k: int = 10, start: int = 0) -> str:
    """k distinct sentences, one per line."""
    return "\n".join(SENTENCES[start : start + k])


def decide(step: Step, text: str) -> str | None:
    return step.decide(Document("t", text))
