"""The data mix: from the tokens each source has, the share of the training tokens it gets, in
the form LLaMA's Table 1 reports it, and the blend files the trainers take.

Each source is given a sampling proportion (`weight`) or a number of passes (`epochs`). Sources
given epochs take epochs x their tokens of the budget; the rest of the budget is split among the
weighted sources by their weights, renormalised over the sources the run has. A source's epochs are
then its tokens in the budget over the tokens it has (LLaMA: Wikipedia 2.45, Books 2.23).

Written to the output directory:
    mixture.json            the table and the blend: per source its token parts and weight
    megatron_data_path.txt  `w1 prefix1 w2 prefix2 ...` for Megatron-LM's --data-path, a weight
                            per token part (the source's share split over its parts by tokens)
    mixture.md              the table, as printed, and the sources too small for Megatron-LM's
                            default --split to give them validation and test documents

Part prefixes are relative to the run directory (the mixture directory's parent): the run
directory can be copied or synced from object storage and still be read where it lands. Run
Megatron-LM from inside it, or pass it the blend made absolute for where the run directory is now:

    python -m stages.mixture --absolute RUN_DIR > data_path.txt   # --data-args-path data_path.txt
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from stages.accounting import ShardStats
from stages.documents import atomic_dir
from stages.token_parts import MEGATRON_SPLIT, megatron_split_minimum, read_part

MIXTURE_FILE = "mixture.json"
MEGATRON_FILE = "megatron_data_path.txt"


def realise(tokens: dict[str, int], shares: dict[str, dict], budget: int) -> dict[str, dict]:
    """{source: {tokens, budget_tokens, share, epochs}} for the sources that have tokens."""
    missing = sorted(s for s in tokens if s not in shares)
    if missing:
        raise ValueError(f"no weight or epochs for source(s) {missing} in stages.mixture.sources")
    present = {s: shares[s] for s, n in tokens.items() if n > 0}
    fixed = {s: share["epochs"] * tokens[s] for s, share in present.items() if share["epochs"] is not None}
    weighted = {s: share["weight"] for s, share in present.items() if share["weight"] is not None}
    rest = budget - sum(fixed.values())
    if rest < 0 or (rest > 0 and not weighted):
        raise ValueError(
            f"the sources given epochs need {sum(fixed.values()):,.0f} tokens of a {budget:,} token budget "
            f"and {len(weighted)} sources are weighted: give a budget that fits, or weights"
        )
    total_weight = sum(weighted.values())
    planned = {**fixed, **{s: rest * w / total_weight for s, w in weighted.items()}}
    return {
        s: {"tokens": tokens[s], "budget_tokens": planned[s], "share": planned[s] / budget,
            "epochs": planned[s] / tokens[s]}
        for s in sorted(planned, key=lambda s: -planned[s])
    }


def format_table(table: dict[str, dict], disk_bytes: dict[str, int], budget: int) -> str:
    lines = [
        f"Data mix for a budget of {budget:,} tokens",
        "",
        "| source | tokens | sampling prop. | epochs | disk size |",
        "|---|---:|---:|---:|---:|",
    ]
    for source, row in table.items():
        lines.append(
            f"| {source} | {row['tokens']:,} | {row['share']:.1%} | {row['epochs']:.2f} | "
            f"{disk_bytes[source] / 1e6:,.2f} MB |"
        )
    return "\n".join(lines) + "\n"


def split_note(documents: dict[str, int], split: str = MEGATRON_SPLIT) -> str:
    """Which sources' parts are too small for Megatron-LM's `--split` to give every share a
    document (its builder then never finishes); empty when none is."""
    minimum = megatron_split_minimum(split)
    short = {s: n for s, n in documents.items() if n < minimum}
    if not short:
        return ""
    names = ", ".join(f"{s} ({n:,})" for s, n in sorted(short.items()))
    return (f"\nMegatron-LM's --split {split} needs {minimum:,} documents a part for each share to get one; "
            f"parts with fewer: {names}. Give Megatron-LM a split these fit, or more of these sources.\n")


def write_mixture(
    part_files: list[str], output_dir: str, *, sources: dict[str, dict], token_budget: int
) -> ShardStats:
    """From the token_parts stage's `<...>/<source>/part-NNNNN.json` files, write the mixture
    files to `output_dir`."""
    parts_of: dict[str, list[dict]] = {}
    for path in part_files:
        parts_of.setdefault(Path(path).parent.name, []).append(read_part(path))
    tokens = {s: sum(p["tokens"] for p in parts) for s, parts in parts_of.items()}
    table = realise(tokens, sources, token_budget)

    run_dir = Path(output_dir).parent
    blend, megatron, smallest = [], [], {}
    for source, row in table.items():
        parts = [p for p in parts_of[source] if p["tokens"]]
        prefixes = [_relative(p["prefix"], run_dir) for p in parts]
        blend.append({"source": source, "weight": row["share"], "prefixes": prefixes})
        megatron += [f"{row['share'] * p['tokens'] / row['tokens']:.10g} {prefix}" for p, prefix in zip(parts, prefixes)]
        smallest[source] = min(p["documents"] for p in parts)
    documents = sum(p["documents"] for parts in parts_of.values() for p in parts)
    disk = {s: sum(p["bin_bytes"] for p in parts) for s, parts in parts_of.items()}
    with atomic_dir(output_dir) as tmp:
        payload = {"token_budget": token_budget, "table": table, "blend": blend}
        (tmp / MIXTURE_FILE).write_text(json.dumps(payload, indent=1) + "\n")
        (tmp / MEGATRON_FILE).write_text(" ".join(megatron) + "\n")
        (tmp / "mixture.md").write_text(format_table(table, disk, token_budget) + split_note(smallest))
    stats = ShardStats(docs_in=documents, docs_out=documents, tokens=sum(tokens.values()))
    stats.counters.update({f"tokens_{s}": n for s, n in tokens.items()})
    stats.counters.update({f"parts_{s}": len(parts) for s, parts in parts_of.items()})
    return stats


def _relative(prefix: str, run_dir: Path) -> str:
    path = Path(prefix)
    return str(path.relative_to(run_dir)) if path.is_relative_to(run_dir) else str(path)


def read_blend(output_dir: str | Path) -> list[dict]:
    """[{source, weight, prefixes}] from a mixture directory, the prefixes as paths to open."""
    run_dir = Path(output_dir).parent
    blend = json.loads((Path(output_dir) / MIXTURE_FILE).read_text())["blend"]
    return [{**source, "prefixes": [str(run_dir / p) for p in source["prefixes"]]} for source in blend]


def absolute_data_path(run_dir: str | Path) -> str:
    """The run's Megatron-LM blend with its prefixes made absolute for where `run_dir` is now."""
    root = Path(run_dir).resolve()
    words = (root / "mixture" / MEGATRON_FILE).read_text().split()
    return " ".join(word if i % 2 == 0 else str(root / word) for i, word in enumerate(words))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--absolute", metavar="RUN_DIR", required=True,
                        help="print RUN_DIR's mixture/megatron_data_path.txt with absolute prefixes")
    print(absolute_data_path(parser.parse_args(argv).absolute))


if __name__ == "__main__":
    main()
