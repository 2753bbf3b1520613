"""The clean corpus in one shape for every source, as Hugging Face datasets (and any parquet
reader) loads it whole: `load_dataset("parquet", data_files="RUN_DIR/corpus/*/*.parquet")`.

Each source's clean documents keep the columns its stages gave them (a page's language and
perplexity, a file's repository and license, a book's title); here they become one shape:

| column   | type           | meaning                                                          |
|----------|----------------|------------------------------------------------------------------|
| id       | string         | unique across the run, as in every stage                        |
| source   | string         | common_crawl, wikipedia, arxiv, stackexchange, github, books    |
| text     | string         | the document                                                     |
| url      | string, null   | where the source has one (crawl pages, Wikipedia, StackExchange) |
| metadata | string         | the source's other columns as a JSON object, keys sorted         |

A JSON string rather than a struct: each source's columns differ, and one struct type across all
of them is what lets them load as one dataset (RedPajama's `meta` and Dolma's `metadata` do the same).
"""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa

from stages.accounting import ShardStats
from stages.documents import ShardWriter, read_document_batches

CORPUS_SCHEMA = pa.schema(
    [
        pa.field("id", pa.string(), nullable=False),
        pa.field("source", pa.string(), nullable=False),
        pa.field("text", pa.string(), nullable=False),
        pa.field("url", pa.string()),
        pa.field("metadata", pa.string(), nullable=False),
    ]
)
CORE = ("id", "source", "text", "url")


def corpus_document(document: dict) -> dict:
    """A document of any source's clean shard in CORPUS_SCHEMA's shape."""
    metadata = {key: value for key, value in document.items() if key not in CORE}
    return {
        **{key: document.get(key) for key in CORE},
        "metadata": json.dumps(metadata, sort_keys=True, ensure_ascii=False, default=str),
    }


def write_corpus_shard(input_path: str | Path, output_path: str | Path) -> ShardStats:
    """Rewrite one clean shard in CORPUS_SCHEMA; every document is kept."""
    stats = ShardStats()
    with ShardWriter(output_path, CORPUS_SCHEMA) as writer:
        for batch in read_document_batches(input_path):
            stats.docs_in += len(batch)
            for document in batch:
                writer.write(corpus_document(document))
            stats.docs_out += len(batch)
    stats.bytes_out = writer.bytes_written
    return stats.check()
