"""Language identification: keep documents in the configured languages above a score threshold.

Adds `language` and `language_score`. Drop reasons: `low_language_score` (the best language scores
under the threshold, as CCNet's 0.5) and `language:<code>` (confidently another language).
"""

from __future__ import annotations

from collections.abc import Iterator

import pyarrow as pa
import pyarrow.parquet as pq

from classifiers.langid import load_identifier
from stages.accounting import ShardStats
from stages.documents import DroppedDocuments, read_document_batches, schema_with, write_documents


def identify_languages(
    input_path: str,
    output_path: str,
    *,
    model: str,
    languages: list[str],
    threshold: float,
    dropped_path: str | None = None,
) -> ShardStats:
    identifier = load_identifier(model)
    keep = set(languages)
    stats = ShardStats()
    in_schema = pq.read_schema(input_path)
    out_schema = schema_with(in_schema, pa.field("language", pa.string()), pa.field("language_score", pa.float32()))

    def kept(dropped: DroppedDocuments) -> Iterator[dict]:
        for batch in read_document_batches(input_path):
            stats.docs_in += len(batch)
            for doc, (language, score) in zip(batch, identifier.predict([d["text"] for d in batch])):
                labelled = {**doc, "language": language, "language_score": score}
                reason = "low_language_score" if score < threshold else None if language in keep else f"language:{language}"
                if reason:
                    stats.drop(reason)
                    dropped.add(labelled, reason)
                else:
                    stats.docs_out += 1
                    yield labelled

    with DroppedDocuments(dropped_path, out_schema) as dropped:
        stats.bytes_out = write_documents(output_path, kept(dropped), out_schema)
    return stats.check()
