"""Language identification: keep documents in the configured languages above a score threshold.

Adds `language` and `language_score`. Drop reasons: `low_language_score` (the best language scores
under the threshold, as CCNet's 0.5) and `language:<code>` (confidently another language).
"""

from __future__ import annotations

from collections.abc import Iterator

import pyarrow as pa

from classifiers.langid import load_identifier
from stages.accounting import ShardStats
from stages.documents import filter_shard


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

    def judge(batch: list[dict]) -> Iterator[tuple[dict, str | None]]:
        for doc, (language, score) in zip(batch, identifier.predict([d["text"] for d in batch])):
            labelled = {**doc, "language": language, "language_score": score}
            if score < threshold:
                yield labelled, "low_language_score"
            else:
                yield labelled, None if language in keep else f"language:{language}"

    fields = [pa.field("language", pa.string()), pa.field("language_score", pa.float32())]
    return filter_shard(input_path, output_path, fields, judge, dropped_path=dropped_path)
