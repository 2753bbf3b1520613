"""WARC to text: one WARC file in, one parquet shard of web documents out.

    records          WARC and ARC records to HTML pages; every other record and all damage counted
      fastwarc_reader  FastWARC over the healthy stretches of a file
      warcio_reader    warcio, one record (or gzip member) at a time, wherever FastWARC might read
                       differently; `members` a gzip member's bytes as a stream
      resync           the next record after damage (next gzip member, next record line)
      classify         a record to a page or the reason it is not one; http_head its HTTP headers
    charset          page bytes to text
    extractors       the main-text extractors (`stages.extract.extractor`)
    cleaning         what extraction leaves that no one wants in training text
    limits           the per-page CPU-time limit
    shard            the stage itself: read, decode, extract, clean, write
"""

from stages.extract.charset import decode_html
from stages.extract.extractors import EXTRACTORS, make_extractor
from stages.extract.records import Dropped, HtmlPage, read_html_pages, read_record_bytes
from stages.extract.shard import extract_warc, page_text

__all__ = [
    "EXTRACTORS", "Dropped", "HtmlPage", "decode_html", "extract_warc", "make_extractor", "page_text", "read_html_pages",
    "read_record_bytes",
]
