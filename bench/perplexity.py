"""How well the CCNet perplexity model separates Wikipedia-like text from what the crawl filters drop.

    .venv/bin/python bench/perplexity.py [--held-out-every 10] [--vocab-size 8000]

Model: trained by the `perplexity_model` stage's own function on the English sample Wikipedia
(samples/wikipedia/enwiki-*.bz2, ~110 articles), every `--held-out-every`-th article held out.
Scored with the `perplexity_score` stage's model class:
  wikipedia held out   the held-out articles (never seen in training)
  crawl kept           sample WARC pages (samples/warc, extracted and language-identified as the
                       stages do, English only) that the demo's heuristic filters keep
  crawl dropped        those pages the heuristic filters drop (Gopher rules, and C4's rules as a
                       C4-style share would apply them), with the rule that dropped each
  ccnet head           samples/ccnet: 20 real CCNet documents CCNet put in its head bucket
Figures: the median perplexity of each group, and the ROC AUC of perplexity as a separator (the
share of (wikipedia, other) pairs where the Wikipedia article scores lower; 1.0 separates fully,
0.5 is chance); for CCNet's documents, the Spearman rank correlation of our scores with CCNet's.
The samples are small: a real model trains on 1M articles. The figures measure the direction and
rough strength of the separation, which is what the filter relies on.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402

from classifiers.ngram_lm import PerplexityModel  # noqa: E402
from stages.documents import read_documents, write_documents  # noqa: E402
from stages.extract import extract_warc  # noqa: E402
from stages.langid import identify_languages  # noqa: E402
from stages.perplexity import LM_FILE, PIECES_FILE, train_perplexity_model  # noqa: E402
from stages.quality_filters import filter_quality  # noqa: E402
from stages.wikipedia import extract_wikipedia  # noqa: E402

SAMPLES = ROOT / "samples"
CCNET = ROOT / "samples" / "ccnet"
LID_MODEL = SAMPLES / "models" / "lid.176.ftz"


def auc(low: list[float], high: list[float]) -> float:
    """P(a `low` item scores below a `high` one), ties counting half."""
    pairs = [(a < b) + 0.5 * (a == b) for a in low for b in high]
    return sum(pairs) / len(pairs)


def spearman(x: list[float], y: list[float]) -> float:
    rank = lambda v: np.argsort(np.argsort(v))  # noqa: E731
    return float(np.corrcoef(rank(x), rank(y))[0, 1])


def wikipedia_split(tmp: Path, every: int) -> tuple[Path, list[dict]]:
    articles = []
    for dump in sorted((SAMPLES / "wikipedia").glob("enwiki-*.bz2")):
        out = tmp / f"{dump.name}.parquet"
        extract_wikipedia(str(dump), str(out), str(tmp / f"{dump.name}.refs.parquet"), languages=["en"])
        articles += list(read_documents(out))
    schema = pq.read_schema(out)
    train = tmp / "train.parquet"
    write_documents(train, [a for i, a in enumerate(articles) if i % every], schema)
    return train, [a for i, a in enumerate(articles) if not i % every]


def crawl_pages(tmp: Path) -> tuple[list[dict], list[dict]]:
    """(kept, dropped) English sample pages under the demo's Gopher rules plus C4's."""
    kept, dropped = [], []
    for warc in sorted((SAMPLES / "warc").glob("*.warc.gz")):
        name = warc.name.removesuffix(".warc.gz")
        extract_warc(str(warc), str(tmp / f"{name}.all.parquet"))
        identify_languages(str(tmp / f"{name}.all.parquet"), str(tmp / f"{name}.en.parquet"), model=str(LID_MODEL),
                           languages=["en"], threshold=0.5)
        filter_quality(str(tmp / f"{name}.en.parquet"), str(tmp / f"{name}.kept.parquet"),
                       gopher_quality={"max_non_alpha_words_ratio": 0.7}, c4={}, redact_pii=False,
                       dropped_path=str(tmp / f"{name}.dropped.parquet"))
        kept += list(read_documents(tmp / f"{name}.kept.parquet"))
        if (tmp / f"{name}.dropped.parquet").exists():
            dropped += list(read_documents(tmp / f"{name}.dropped.parquet"))
    return kept, dropped


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--held-out-every", type=int, default=10)
    parser.add_argument("--vocab-size", type=int, default=8000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-perplexity-") as tmp:
        tmp = Path(tmp)
        train, held_out = wikipedia_split(tmp, args.held_out_every)
        stats = train_perplexity_model([str(train)], str(tmp / "model"), language="en", vocab_size=args.vocab_size,
                                       max_articles=1_000_000, seed=0, train_memory="1G", kenlm_bin=None,
                                       num_threads=2)
        model = PerplexityModel(tmp / "model" / PIECES_FILE, tmp / "model" / LM_FILE)
        kept, dropped = crawl_pages(tmp)

    score = lambda docs: [p for p in (model.score(d["text"])[0] for d in docs) if p is not None]  # noqa: E731
    ccnet = [json.loads(line) for f in sorted(CCNET.glob("*.jsonl")) for line in f.open()]
    groups = {
        "wikipedia held out": score(held_out),
        "crawl kept": score(kept),
        "crawl dropped": score(dropped),
        "ccnet head": score(ccnet),
    }
    by_rule: dict[str, list[dict]] = defaultdict(list)
    for doc in dropped:
        by_rule[doc["drop_reason"].split(":")[0]].append(doc)
    groups |= {f"  dropped by {rule}": score(docs) for rule, docs in sorted(by_rule.items())}

    wiki = groups["wikipedia held out"]
    print(f"model: {stats.docs_out} training articles, {stats.counters['pieces']:,} pieces, "
          f"{len(held_out)} held out")
    print("\n| group | documents | median perplexity | AUC vs held-out Wikipedia |")
    print("|---|---:|---:|---:|")
    for name, values in groups.items():
        separation = "-" if name == "wikipedia held out" else f"{auc(wiki, values):.2f}"
        print(f"| {name} | {len(values)} | {statistics.median(values):,.0f} | {separation} |")
    ours = [model.score(d["text"])[0] for d in ccnet]
    theirs = [d["metadata"]["perplexity"] for d in ccnet]
    print(f"\nCCNet's head documents: Spearman correlation of our perplexity with CCNet's: "
          f"{spearman(ours, theirs):.2f} (CCNet's median {statistics.median(theirs):.0f}, "
          f"trained on 1M articles; ours {statistics.median(ours):.0f})")


if __name__ == "__main__":
    main()
