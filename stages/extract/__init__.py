"""WARC to text: one WARC file in, one parquet shard of web documents out.

    records     WARC records to HTML pages; every other record and all damage counted
    charset     page bytes to text
    extractors  the main-text extractors (`stages.extract.extractor`)
    limits      the per-page CPU-time limit
    shard       the stage itself: read, decode, extract, write
"""

from stages.extract.charset import decode_html
from stages.extract.extractors import EXTRACTORS, make_extractor
from stages.extract.records import HtmlPage, read_html_pages
from stages.extract.shard import extract_warc

__all__ = ["EXTRACTORS", "HtmlPage", "decode_html", "extract_warc", "make_extractor", "read_html_pages"]
