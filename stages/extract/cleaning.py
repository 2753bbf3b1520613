"""What extraction leaves that no one wants in training text, removed line by line.

    blank lines       whitespace-only lines; trailing whitespace
    layout tables     runs of table rows (trafilatura's `| a | b |`, resiliparse's cells between
                      tabs) that are not data tables: infoboxes, navboxes, layout grids. A data
                      table has a header row (trafilatura's `|---|` line under `<th>` cells) or
                      at least DATA_TABLE_ROWS rows, DATA_ROW_SHARE of them with two filled
                      cells or more; and no cell of it is a menu. It is kept whole. Of any other
                      run only the prose cells (PROSE_CHARS or more, with sentence punctuation
                      or PROSE_WORDS words) and the rows of one cell stay, each as a line: pages
                      laid out in tables keep their text, and the rules below judge the rest.
    navigation runs   NAV_RUN or more consecutive short lines (at most NAV_WORDS words and
                      NAV_CHARS characters, no digit, no sentence punctuation): menus,
                      breadcrumbs, tag and share lists
    menu lines        MENU_ITEMS or more short items between separators ("Home | About | Contact")

Measured on labelled pages in bench/README.md, "Extraction quality".
"""

from __future__ import annotations

import re

DATA_TABLE_ROWS = 2
DATA_ROW_SHARE = 1 / 2
PROSE_CHARS = 60
PROSE_WORDS = 10
NAV_RUN = 4
NAV_WORDS = 3
NAV_CHARS = 40
MENU_ITEMS = 3

HEADER_RULE = re.compile(r"\|(?:-+\|)+")
SENTENCE_PUNCTUATION = re.compile(r"[.!?;:…。！？；：]")
DIGIT = re.compile(r"\d")
# Between menu items; `\|` is a pipe inside a trafilatura table cell.
MENU_SEPARATOR = re.compile(r"\s\\?[|•·»›]\s")
_ITEM = rf"[^\s|•·»›]+(?:\s+[^\s|•·»›]+){{0,{NAV_WORDS - 1}}}"
MENU_LINE = re.compile(rf"{_ITEM}(?:\s+\\?[|•·»›]\s+{_ITEM}){{{MENU_ITEMS - 1},}}")


def clean_text(text: str) -> str:
    """`text` without blank lines, layout tables, navigation runs and menu lines."""
    lines = [line.rstrip() for line in text.splitlines() if line.strip()]
    if "|" in text or "\t\t" in text:
        lines = _without_layout_tables(lines)
    lines = _without_navigation_runs(lines)
    if MENU_SEPARATOR.search(text):
        lines = [line for line in lines if not _is_menu(line)]
    return "\n".join(lines)


def table_cells(line: str) -> list[str] | None:
    """The cells of a table row, or None when the line is not one."""
    if line[:1] == "|" and (line == "|" or line[1] == " " and line[-1] == "|"):
        return [cell.strip() for cell in line[1:-1].split(" | ")]
    if "\t\t" in line:
        return [cell.strip() for cell in line.split("\t\t")]
    return None


def is_data_table(rows: list[list[str]], has_header: bool) -> bool:
    if any(_is_menu(cell) for row in rows for cell in row):
        return False
    if has_header:
        return True
    multi = sum(sum(1 for cell in row if cell) >= 2 for row in rows)
    return len(rows) >= DATA_TABLE_ROWS and multi >= DATA_ROW_SHARE * len(rows)


def _without_layout_tables(lines: list[str]) -> list[str]:
    out: list[str] = []
    run: list[tuple[str, list[str] | None]] = []  # (line, its cells; None for a header rule)
    for line in [*lines, ""]:
        if line.startswith("|-") and HEADER_RULE.fullmatch(line):
            run.append((line, None))
            continue
        cells = table_cells(line)
        if cells is not None:
            run.append((line, cells))
            continue
        if run:
            rows = [cells for _, cells in run if cells is not None]
            if is_data_table(rows, has_header=len(rows) < len(run)):
                out.extend(row for row, _ in run)
            else:
                out.extend(cell for row in rows for cell in row if cell and (len(row) == 1 or _is_prose(cell)))
            run = []
        if line:
            out.append(line)
    return out


def _without_navigation_runs(lines: list[str]) -> list[str]:
    out: list[str] = []
    run: list[str] = []
    for line in [*lines, None]:
        if line is not None and _is_nav_line(line):
            run.append(line)
            continue
        if len(run) < NAV_RUN:
            out.extend(run)
        run = []
        if line is not None:
            out.append(line)
    return out


def _is_nav_line(line: str) -> bool:
    return (
        len(line) <= NAV_CHARS
        and len(line.split(None, NAV_WORDS)) <= NAV_WORDS
        and not SENTENCE_PUNCTUATION.search(line)
        and not DIGIT.search(line)
        and table_cells(line) is None
    )


def _is_menu(text: str) -> bool:
    return MENU_LINE.fullmatch(text.strip()) is not None


def _is_prose(cell: str) -> bool:
    return len(cell) >= PROSE_CHARS and (
        SENTENCE_PUNCTUATION.search(cell) is not None or len(cell.split(None, PROSE_WORDS)) > PROSE_WORDS
    )
