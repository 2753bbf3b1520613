"""The main-text extractors the extract stage offers (`stages.extract.extractor`).

Each is a function from a page's HTML (decoded) to its main text, or None when it finds none.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

from stages.extract.cleaning import clean_text

Extractor = Callable[[str], str | None]


def trafilatura_extractor() -> Extractor:
    """trafilatura 2.3.1's full cascade, comments excluded, tables kept: the settings chosen by
    `bench/extract_settings.py` (bench/README.md, "Extraction settings")."""
    import trafilatura

    return partial(trafilatura.extract, fast=False, include_comments=False, include_tables=True)


def resiliparse_extractor() -> Extractor:
    """Resiliparse's main-content heuristics over its own HTML parser."""
    from resiliparse.extract.html2text import extract_plain_text

    def extract(html: str) -> str | None:
        return extract_plain_text(html, main_content=True, preserve_formatting=True, comments=False,
                                  alt_texts=False, list_bullets=False)

    return extract


EXTRACTORS: dict[str, Callable[[], Extractor]] = {
    "trafilatura": trafilatura_extractor,
    "resiliparse": resiliparse_extractor,
}


def make_extractor(name: str, *, clean: bool = True) -> Extractor:
    """The extractor `name`, its output passed through `cleaning.clean_text` when `clean`."""
    if name not in EXTRACTORS:
        raise ValueError(f"unknown extractor {name!r}; choose one of {', '.join(EXTRACTORS)}")
    extract = EXTRACTORS[name]()
    if not clean:
        return extract

    def extract_clean(html: str) -> str | None:
        text = extract(html)
        return clean_text(text) if text else text

    return extract_clean
