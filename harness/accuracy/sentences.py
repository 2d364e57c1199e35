"""Sentence splitting for rougeLsum, offline.

The MLPerf recipe joins ``nltk.sent_tokenize`` sentences with newlines before scoring (rougeLsum
scores sentence by sentence). ``sent_tokenize`` needs nltk's trained English Punkt data, which
is a download. When that data is installed it is used, and scores equal the reference recipe's.
Otherwise the same Punkt algorithm runs untrained, with a list of common English abbreviations
so "Mr." or "U.S." do not end sentences; rouge1/2/L do not depend on the split, only rougeLsum
may differ slightly. Which splitter ran is recorded with every score.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from dataclasses import dataclass

log = logging.getLogger(__name__)

NLTK_PUNKT = "nltk-punkt"
FALLBACK = "punkt-untrained+abbreviations"

# Lower-case, without the final period, as Punkt stores them.
ABBREVIATIONS = frozenset("""
mr mrs ms dr prof sr jr st mt ft rev hon pres gov sen rep gen col lt maj capt sgt cpl adm cmdr
insp supt det jan feb mar apr jun jul aug sep sept oct nov dec mon tue wed thu fri sat sun
inc corp co ltd llc plc bros dept univ assn est approx vs etc al fig no vol pp ed eds
u.s u.k u.n e.u d.c a.m p.m e.g i.e ph.d m.d b.a m.a u.s.a n.y l.a
ave blvd rd hwy calif fla mass penn tenn tex wash ariz colo conn ill ind kan mich minn miss okla ore wis
""".split())


@dataclass(frozen=True)
class Splitter:
    name: str
    split: Callable[[str], list[str]]


@functools.cache
def splitter() -> Splitter:
    """nltk's trained Punkt when its data is installed, else the untrained fallback."""
    import nltk

    for resource in ("tokenizers/punkt_tab/english/", "tokenizers/punkt/english.pickle"):
        try:
            nltk.data.find(resource)
        except LookupError:
            continue
        try:
            nltk.sent_tokenize("Probe. Sentence.")
        except LookupError:
            break
        return Splitter(NLTK_PUNKT, nltk.sent_tokenize)
    from nltk.tokenize.punkt import PunktParameters, PunktSentenceTokenizer

    params = PunktParameters()
    params.abbrev_types = set(ABBREVIATIONS)
    log.info("nltk punkt data not installed: sentence splitting with %s", FALLBACK)
    return Splitter(FALLBACK, PunktSentenceTokenizer(params).tokenize)


def split_lines(text: str) -> str:
    """The MLPerf postprocessing: strip, split into sentences, one sentence per line."""
    return "\n".join(splitter().split(text.strip()))
