"""Token parts: each source's tokenized shards merged into Megatron datasets of about
`max_part_bytes` of tokens, the datasets the blend names.

Megatron-LM splits every dataset of a `--data-path` blend by documents (`--split 969,30,1`: its
test share gets a document only from 501 documents on, `megatron_split_minimum`) and loops forever
building a share that has none (gpt_dataset.py, `_get_num_epochs`). One dataset per tokenized
shard, as a crawl of 90,000 shards would give, leaves many with a handful of documents; a part of
about a gigabyte holds hundreds of thousands.

A part is a run of whole consecutive shards of one source, in shard-name order (`group_shards`):
it takes the next shard while it holds less than half of `max_part_bytes` or the shard still fits,
and a last part under half is folded into the one before. So every part holds at least half of
`max_part_bytes` unless its whole source holds less, and passes `max_part_bytes` only by a shard
that alone does. Shards are never cut: a part is exactly the concatenation of its input shards, so
its inputs and their versions say all about it, which the runner's resume relies on. A part
changes only when its own shards do or the parts before it are regrouped; shards added after the
last ones change only the last part.

Written per part: `part-NNNNN.bin/.idx` (the .idx last, by temporary name and rename) and, first,
`part-NNNNN.json` with its documents, tokens, .bin bytes and shards, which the mixture reads
instead of the token data.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from stages.accounting import ShardStats
from stages.documents import atomic_path
from stages.tokenize import read_parts
from trainer.indexed_dataset import merge_datasets

SIDECAR = ".json"
# Megatron-LM's default --split.
MEGATRON_SPLIT = "969,30,1"


def group_shards(sizes: list[int], max_part_bytes: int) -> list[list[int]]:
    """The shards of one source (their sizes in order) as parts: lists of consecutive indices."""
    groups: list[list[int]] = []
    filled = 0
    for i, size in enumerate(sizes):
        if groups and filled >= max_part_bytes / 2 and filled + size > max_part_bytes:
            groups.append([])
            filled = 0
        if not groups:
            groups.append([])
        groups[-1].append(i)
        filled += size
    if len(groups) > 1 and filled < max_part_bytes / 2:
        groups[-2].extend(groups.pop())
    return groups


def merge_shards(shard_dirs: list[str], prefix: str) -> ShardStats:
    """Concatenate tokenized shard directories (stages.tokenize) into the dataset at `prefix`."""
    parts = [part for directory in shard_dirs for part in read_parts(directory)]
    documents, tokens = sum(p["documents"] for p in parts), sum(p["tokens"] for p in parts)
    bin_bytes = sum(Path(p["prefix"] + ".bin").stat().st_size for p in parts)
    sidecar = {"documents": documents, "tokens": tokens, "bin_bytes": bin_bytes,
               "shards": [Path(d).name for d in shard_dirs]}
    with atomic_path(prefix + SIDECAR) as tmp:
        tmp.write_text(json.dumps(sidecar, indent=1) + "\n")
    merged = merge_datasets([p["prefix"] for p in parts], prefix)
    if merged != (documents, tokens):
        raise ValueError(f"{prefix}: merged {merged} (documents, tokens), the shards' parts.json say "
                         f"{(documents, tokens)}")
    written = Path(prefix + ".bin").stat().st_size + Path(prefix + ".idx").stat().st_size
    return ShardStats(docs_in=documents, docs_out=documents, tokens=tokens, bytes_out=written,
                      counters={"shards": len(shard_dirs)})


def read_part(sidecar: str | Path) -> dict:
    """{"prefix", "documents", "tokens", "bin_bytes", "shards"} of the part whose `part-NNNNN.json`
    this is."""
    sidecar = str(sidecar)
    return {**json.loads(Path(sidecar).read_text()), "prefix": sidecar.removesuffix(SIDECAR)}


def megatron_split_minimum(split: str = MEGATRON_SPLIT) -> int:
    """The fewest documents a dataset needs for each share of Megatron's `--split` that is not zero
    to get one, by the builder's rounding (blended_megatron_dataset_builder.py: a share's documents
    are [round(begin x N), round(end x N)))."""
    weights = [float(w) for w in re.findall(r"[.0-9]+", split)]
    bounds = [0.0]
    for weight in weights:
        bounds.append(bounds[-1] + weight / sum(weights))
    documents = 1
    while any(round(b * documents) >= round(e * documents) for b, e in zip(bounds, bounds[1:]) if e > b):
        documents += 1
    return documents
