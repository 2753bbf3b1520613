"""One language's perplexity model, trained as CCNet trained it (classifiers/ngram_lm.py).

Reads the `wikipedia` stage's shards in order and takes the language's first `max_articles`
articles (CCNet: the first 1,000,000; its piece model saw the first 400,000, here the piece
trainer samples at most `PIECE_SENTENCES` paragraphs from the same articles). The paragraphs are
normalised once into a local text file; the piece model is trained on it, then every paragraph is
encoded into a second file that lmplz reads, so memory stays bounded whatever the Wikipedia size.

Output, a folder: `pieces.model`, `lm.binary` and `meta.json` (written last: the completion
marker) with the article, paragraph and piece counts. Accounting: docs_in = the language's articles
read, docs_out = those trained on, dropped `beyond_max_articles` for the rest; articles of other
languages are counted in `other_language_articles` only.
"""

from __future__ import annotations

import itertools
import json
import tempfile
from pathlib import Path

from classifiers.ngram_lm import PieceEncoder, estimate, paragraphs, train_piece_model
from stages.accounting import ShardStats
from stages.documents import atomic_dir, read_document_batches

PIECES_FILE = "pieces.model"
LM_FILE = "lm.binary"
META_FILE = "meta.json"
PIECE_SENTENCES = 2_000_000  # paragraphs the piece trainer keeps in memory, sampled from the file


def train_perplexity_model(
    wikipedia_shards: list[str],
    output_dir: str,
    *,
    language: str,
    vocab_size: int,
    max_articles: int,
    seed: int,
    train_memory: str,
    kenlm_bin: str | None,
    num_threads: int,
) -> ShardStats:
    stats = ShardStats()
    with atomic_dir(output_dir) as out, tempfile.TemporaryDirectory(prefix="perplexity-model-") as tmp:
        tmp = Path(tmp)
        text_path = tmp / "paragraphs.txt"
        with open(text_path, "w", encoding="utf-8") as text_file:
            lines = _write_paragraphs(wikipedia_shards, text_file, language, max_articles, stats)
        if not lines:
            raise ValueError(f"perplexity_model: the run's Wikipedia has no {language!r} article to train on; "
                             f"add its dump to inputs.wikipedia or give stages.perplexity.models.{language}")
        pieces_path = out / PIECES_FILE
        train_piece_model(_lines(text_path), pieces_path, vocab_size=vocab_size, seed=seed, num_threads=num_threads,
                          input_sentence_size=PIECE_SENTENCES)
        encoded_path = tmp / "pieces.txt"
        pieces = _encode(text_path, encoded_path, pieces_path)
        estimate(encoded_path, out / LM_FILE, memory=train_memory, vocab_size=vocab_size, kenlm_bin=kenlm_bin,
                 tmp_dir=tmp)
        meta = {"language": language, "articles": stats.docs_out, "paragraphs": lines, "pieces": pieces,
                "vocab_size": vocab_size, "order": 5}
        (out / META_FILE).write_text(json.dumps(meta, indent=1) + "\n")
    stats.bytes_out = sum(f.stat().st_size for f in Path(output_dir).iterdir())
    stats.counters.update(paragraphs=lines, pieces=pieces)
    return stats.check()


def _write_paragraphs(shards: list[str], out, language: str, max_articles: int, stats: ShardStats) -> int:
    lines = 0
    for shard in shards:
        for batch in read_document_batches(shard, columns=["text", "language"]):
            for doc in batch:
                if doc.get("language") != language:
                    stats.counters["other_language_articles"] += 1
                    continue
                stats.docs_in += 1
                if stats.docs_out >= max_articles:
                    stats.drop("beyond_max_articles")
                    continue
                stats.docs_out += 1
                for line in paragraphs(doc["text"]):
                    out.write(line + "\n")
                    lines += 1
    return lines


def _lines(path: Path):
    with open(path, encoding="utf-8") as f:
        for line in f:
            yield line.rstrip("\n")


def _encode(text_path: Path, encoded_path: Path, pieces_path: Path, batch: int = 4096) -> int:
    encoder = PieceEncoder(pieces_path)
    pieces = 0
    with open(encoded_path, "w", encoding="utf-8") as out:
        lines = _lines(text_path)
        while chunk := list(itertools.islice(lines, batch)):
            for sentence in encoder.encode(chunk):
                out.write(sentence + "\n")
                pieces += sentence.count(" ") + 1
    return pieces
