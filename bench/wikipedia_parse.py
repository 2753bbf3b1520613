"""Speed of the Wikipedia cleaning (mwparserfromhell parse + reference extraction + text cleaning).

    .venv/bin/python bench/wikipedia_parse.py [DUMP]

CPU time, one core, over the namespace-0 non-redirect pages of the dump, after a warm-up.
"""

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import mwparserfromhell  # noqa: E402

from stages.wikipedia import _Cleaner, _open, _pages, FILE_ALIASES, CATEGORY_ALIASES  # noqa: E402

DEFAULT = "samples/wikipedia/enwiki-latest-pages-articles1.xml-p000000010p000030302-shortened.bz2"


def main() -> None:
    path = sys.argv[1] if len(sys.argv) > 1 else DEFAULT
    with _open(path) as stream:
        texts = [p["text"] for k, p in _pages(stream) if k == "page" and p["ns"] == "0" and not p["redirect"]]
    cleaner = _Cleaner(FILE_ALIASES | CATEGORY_ALIASES)
    mb = sum(len(t.encode("utf-8")) for t in texts) / 1e6
    for t in texts[:5]:
        cleaner.text(mwparserfromhell.parse(t, skip_style_tags=True))
    start = time.process_time()
    parsed = [mwparserfromhell.parse(t, skip_style_tags=True) for t in texts]
    parse_s = time.process_time() - start
    for code in parsed:
        cleaner.references(code)
        cleaner.text(code)
    total = time.process_time() - start
    print(f"mwparserfromhell {mwparserfromhell.__version__}, {len(texts)} articles, {mb:.2f} MB wikitext")
    print(f"parse only: {len(texts) / parse_s:.1f} articles/s, {mb / parse_s:.2f} MB/s")
    print(f"parse + references + clean: {len(texts) / total:.1f} articles/s, {mb / total:.2f} MB/s")


if __name__ == "__main__":
    main()
