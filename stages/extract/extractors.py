"""The main-text extractors the extract stage offers (`stages.extract.extractor`).

Each is a function from a page's HTML (decoded) to its main text, or None when it finds none.

    trafilatura   trafilatura's full cascade (lxml, readability and jusText fallbacks)
    resiliparse   resiliparse's main-content pass over its own parser, without the elements
                  that BOILERPLATE_SELECTORS names, then each line of its text kept or dropped
                  as jusText does with paragraphs (length, link density, neighbours), and only
                  the region(s) of the page that hold the main text

The choice between them, measured on labelled pages: bench/README.md, "Extraction quality".
"""

from __future__ import annotations

import html as html_entities
import re
from collections.abc import Callable
from functools import partial

from stages.extract.cleaning import clean_text

Extractor = Callable[[str], str | None]

# Elements that resiliparse's main-content rules keep inside the article: footers, captions, author
# boxes. 14 more (related, share, comment, newsletter, cookie, ...) gained 0.002 F1 for 3-12% more
# time (bench/README.md, "Extraction quality").
BOILERPLATE_SELECTORS = ("footer", "figcaption", "[class*=footer]", "[class*=author]", "[class*=caption]")
RESILIPARSE_OPTIONS = dict(preserve_formatting="minimal_html", links=True, comments=False, alt_texts=False,
                           list_bullets=False)
# resiliparse's main-content rules, or a selector matching a wrapper, drop the whole article of
# some pages; below this many characters the page is read again without both, and the line
# classification alone decides.
MIN_MAIN_CONTENT_CHARS = 300

# A line is good (main text), near-good, short or bad (boilerplate), as in jusText.
GOOD, NEAR, SHORT, BAD = "good", "near", "short", "bad"
LONG_LINE_CHARS = 100  # good, unless a link list
NEAR_LINE_CHARS = 50  # good in a <p>, else near-good
MAX_LINK_DENSITY = 0.3  # of a line shorter than LONG_LINE_CHARS: more is bad
# Good lines separated by more than REGION_GAP others form separate regions; a region with less
# than MIN_REGION_SHARE of the largest one's text (teasers, author bios, footers) is dropped.
REGION_GAP = 3
MIN_REGION_SHARE = 0.1

TOKEN = re.compile(r"<(/?)([a-z0-9]+)[^>]*>|([^<]+)")
HEADING_TAGS = {"h1", "h2", "h3", "h4", "h5", "h6"}


def trafilatura_extractor() -> Extractor:
    """trafilatura 2.3.1's full cascade, comments excluded, tables kept: the settings chosen by
    `bench/extract_settings.py` (bench/README.md, "Extraction settings")."""
    import trafilatura

    return partial(trafilatura.extract, fast=False, include_comments=False, include_tables=True)


def resiliparse_extractor(
    skip_elements: tuple[str, ...] = BOILERPLATE_SELECTORS, classify_lines: bool = True
) -> Extractor:
    """Resiliparse's main content, its boilerplate lines dropped (module docstring); the
    arguments exist for bench/extract_quality.py to measure each step."""
    from resiliparse.extract.html2text import extract_plain_text

    def extract(html: str) -> str | None:
        lines = minimal_html_lines(
            extract_plain_text(html, main_content=True, skip_elements=skip_elements, **RESILIPARSE_OPTIONS)
        )
        if sum(len(text) for text, _, _ in lines) < MIN_MAIN_CONTENT_CHARS:
            lines = minimal_html_lines(extract_plain_text(html, main_content=False, **RESILIPARSE_OPTIONS))
        texts = main_text_lines(lines) if classify_lines else [text for text, _, _ in lines]
        return "\n".join(texts) or None

    return extract


def minimal_html_lines(minimal_html: str) -> list[tuple[str, int, str | None]]:
    """resiliparse's minimal HTML as lines of text: (text, characters inside links, "p" for a
    paragraph, "h" for a heading, else None)."""
    lines = []
    text: list[str] = []
    link_chars = 0
    in_link = in_paragraph = False
    tag = None
    for match in TOKEN.finditer(minimal_html):
        closing, name, chunk = match.groups()
        if chunk is None:
            if name == "a":
                in_link = not closing
            elif name == "p":
                in_paragraph = not closing
                tag = tag or "p"
            elif name in HEADING_TAGS:
                tag = tag or "h"
            continue
        if "&" in chunk:
            chunk = html_entities.unescape(chunk)
        for i, part in enumerate(chunk.split("\n")):
            if i:
                lines.append(("".join(text).strip(), link_chars, tag or ("p" if in_paragraph else None)))
                text, link_chars, tag = [], 0, None
            text.append(part)
            if in_link:
                link_chars += len(part.strip())
    lines.append(("".join(text).strip(), link_chars, tag or ("p" if in_paragraph else None)))
    return [line for line in lines if line[0]]


def main_text_lines(lines: list[tuple[str, int, str | None]]) -> list[str]:
    """The texts of the lines classified good, in the main region(s)."""
    classes = _revised([_line_class(*line) for line in lines], lines)
    return [text for (text, _, _), cls in zip(lines, _main_regions(classes, lines)) if cls == GOOD]


def _line_class(text: str, link_chars: int, tag: str | None) -> str:
    n = len(text)
    if "©" in text or n < LONG_LINE_CHARS and link_chars > MAX_LINK_DENSITY * n:
        return BAD
    if n >= LONG_LINE_CHARS or n >= NEAR_LINE_CHARS and tag == "p":
        return GOOD
    return NEAR if n >= NEAR_LINE_CHARS else SHORT


def _revised(classes: list[str], lines: list[tuple[str, int, str | None]]) -> list[str]:
    """Short and near-good lines take the class of the good or bad lines around them (the
    page's edges count as bad); a heading without links right before good text is good."""
    before, after = _nearest_decided(classes), _nearest_decided(classes[::-1])[::-1]
    revised = list(classes)
    for i, cls in enumerate(classes):
        if cls in (SHORT, NEAR):
            if before[i] == after[i]:
                revised[i] = before[i]
            else:
                revised[i] = GOOD if cls == NEAR else BAD
    for i, (_, link_chars, tag) in enumerate(lines[:-1]):
        if tag == "h" and not link_chars and revised[i + 1] == GOOD:
            revised[i] = GOOD
    return revised


def _nearest_decided(classes: list[str]) -> list[str]:
    """For each line, the class of the last good or bad line before it (BAD at the start)."""
    nearest, last = [], BAD
    for cls in classes:
        nearest.append(last)
        if cls in (GOOD, BAD):
            last = cls
    return nearest


def _main_regions(classes: list[str], lines: list[tuple[str, int, str | None]]) -> list[str]:
    good = [i for i, cls in enumerate(classes) if cls == GOOD]
    if not good:
        return classes
    regions = [[good[0]]]
    for i in good[1:]:
        if i - regions[-1][-1] > REGION_GAP + 1:
            regions.append([])
        regions[-1].append(i)
    sizes = [sum(len(lines[i][0]) for i in region) for region in regions]
    dropped = {i for region, size in zip(regions, sizes) if size < MIN_REGION_SHARE * max(sizes) for i in region}
    return [BAD if i in dropped else cls for i, cls in enumerate(classes)]


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
