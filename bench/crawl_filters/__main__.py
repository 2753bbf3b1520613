"""The command line: `.venv/bin/python -m bench.crawl_filters` from the repository root (the
package's docstring says what it measures). Extracts the documents, trains the models, runs the
steps and writes the report."""

from __future__ import annotations

import argparse
import json
import logging
import os
import tempfile
import time
from collections import Counter
from pathlib import Path

from bench import crawl_filters
from bench.crawl_filters.corpus import CORPORA, CORPUS, ROOT, by_corpus, extract_documents
from bench.crawl_filters.report import (
    SAMPLES_PER_RULE, SHRINK, c4_report, shrunk_table, step_table, write_drop_samples, write_shrunk_samples,
)
from bench.crawl_filters.run import Outcome, run_all
from bench.crawl_filters.steps import Context, build_steps, chain_settings
from pipeline.config import load_config
from stages.quality_filters import QualityChain


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.crawl_filters", description=crawl_filters.__doc__.splitlines()[0])
    parser.add_argument("--out", default="bench/out/filters")
    parser.add_argument("--seed", type=int, default=0, help="seeds the choice of drop samples (not the filters)")
    parser.add_argument("--config", default="configs/demo.yaml")
    parser.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1),
                        help="processes for the steps (each step is one process's job)")
    args = parser.parse_args()
    started = time.perf_counter()
    os.chdir(ROOT)  # the config's paths are relative to the repository root
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    logging.disable(logging.WARNING)
    config = load_config(args.config)

    with tempfile.TemporaryDirectory(prefix="bench-filters-") as tmp:
        ctx = Context(config, Path(tmp))
        docs, accounting, copies = extract_documents(ctx)
        extract_s = time.perf_counter() - started
        card = ctx.train_classifier([d for d in docs if CORPUS[d["id"]] == "warc"])
        ctx.train_perplexity()
        training_ids = set(card["bench_training_ids"])
        QualityChain.build(**chain_settings(**ctx.params["quality"]))  # the word tokenizer, loaded before the fork
        steps = build_steps(ctx)
        alone, funnel = run_all(steps, docs, args.workers)

    # ---- Report
    report: list[str] = []
    n_by = by_corpus(docs)
    report += [f"# Crawl filters on real pages ({args.config})", "",
               f"{len(docs):,} documents: " + "; ".join(
                   f"{c} {n_by[c]:,} ({a['records']:,} records of {a['files']} WARC file{'s' * (a['files'] > 1)} gave "
                   f"{a['documents']:,} documents; the extract stage dropped " + ", ".join(
                       f"{r} {n}" for r, n in a["dropped"].most_common()) + ")"
                   for c, a in accounting.items()) + ".",
               "",
               f"eval = samples/extraction_eval (../shared/data/extraction_eval), warc = samples/warc/*.warc.gz. "
               f"{len(copies)} eval pages have the text of a warc page (both sets took pages from trafilatura's "
               "tests/cache/; listed at the end of filters.md) and are left out: kept, they would lose every line to "
               "line dedup and be scored by a classifier trained on their twin.",
               "Cells under eval/warc: documents in → kept for a step, −dropped for a rule. For the rules of "
               "`quality`, docs in = the documents that reached that rule's filter.", ""]
    report += ["## Funnel (each step on what the one before kept, as a run)", ""] + step_table(funnel, True) + [""]
    report += ["## Each filter alone (on every document)", ""] + step_table(alone, False) + [""]

    c4_alone = next((o for o in alone if o.step.name == "c4"), None)
    quality_funnel = next((o for o in funnel if o.step.name == "quality"), None)
    c4_numbers, shrunk_alone, shrunk_funnel = {}, [], []
    report += ["## C4 line deletion", ""]
    if c4_alone is not None:
        text, c4_numbers["alone"], shrunk_alone = c4_report(c4_alone, "C4 alone")
        report += text
    if quality_funnel is not None and quality_funnel.result.counters.get("c4_chars_removed") is not None:
        text, c4_numbers["funnel"], shrunk_funnel = c4_report(quality_funnel, "in the funnel (quality step; the "
                                                              "text out also has PII redacted)")
        report += text
    report.append("")

    m = card["heldout_metrics"]
    src = card["data"]["sources"]
    scored_warc = [o for o in alone if o.step.name == "quality_classifier"][0]
    warc_scored = {d["id"] for d in scored_warc.inputs if CORPUS[d["id"]] == "warc"}
    report += [
        "## Quality classifier", "",
        f"- Trained as the quality_model stage trains it on this run: positives `{src['positive_source']}` "
        f"({card['data']['positives']}), negatives the WARC pages of >= {src['min_chars']} chars after langid and "
        f"line dedup ({card['data']['negatives']}); {card['data']['heldout_positives']}+"
        f"{card['data']['heldout_negatives']} held out: precision {m['precision']:.3f}, recall {m['recall']:.3f}, "
        f"ROC AUC {m['roc_auc']:.3f} at p >= {m['threshold']}. Model sha1 {card['bench_model_sha1'][:12]}.",
        f"- **Overlap:** {len(training_ids & warc_scored)} of the {len(warc_scored)} WARC documents scored here are "
        "among its training pages (train or held-out split): its WARC figures are in-sample. The eval pages are "
        "not in its training data: their drop rate is the fair figure (alone: all languages; funnel: English pages "
        "that passed the rules).",
        "",
    ]
    scored_funnel = next(o for o in funnel if o.step.name == "quality_classifier")
    for label, o in (("alone", scored_warc), ("funnel", scored_funnel)):
        hist = {c: Counter() for c in CORPORA}
        for doc in o.result.kept + [d for d, _ in o.result.dropped]:
            hist[CORPUS[doc["id"]]][min(int(doc["quality_score"] * 10), 9)] += 1
        report.append(f"- p(reference) by tenth, {label}: " + "; ".join(
            f"{c} [" + " ".join(str(hist[c][i]) for i in range(10)) + "]" for c in CORPORA))
    report.append("")

    stdout_report = list(report)
    index = write_drop_samples(out, alone, funnel, args.seed, training_ids)
    shrunk_file = write_shrunk_samples(out, shrunk_funnel, shrunk_alone, args.seed) if shrunk_alone else None
    report += ["## Drop samples (for a person to judge)", "",
               f"Per rule, up to {SAMPLES_PER_RULE} random drops of the funnel, then up to {SAMPLES_PER_RULE} of the "
               f"rule alone that the funnel does not make by it (seed {args.seed}):", ""]
    report += [f"- [`{r['rule']}`]({r['file']}): funnel {r['funnel_shown']} of {r['funnel']}, alone "
               f"{r['alone_shown']} (it drops {r['alone']} alone)" for r in index]
    if shrunk_file:
        report.append(f"- [C4 line deletion, documents shortened by > {SHRINK:.0%}]({shrunk_file})")
    report += ["", f"## Documents whose text C4's line rules (alone) cut by more than {SHRINK:.0%} "
               f"({len(shrunk_alone)})", ""]
    report += shrunk_table(shrunk_alone) + [""]
    if shrunk_funnel:
        report += [f"## ... and in the funnel ({len(shrunk_funnel)})", ""] + shrunk_table(shrunk_funnel) + [""]
    report += [f"## Eval pages left out: the text of a warc page ({len(copies)})", "",
               "| eval URL | warc URL |", "|---|---|", *(f"| {e} | {w} |" for e, w in sorted(copies)), ""]
    runtime = time.perf_counter() - started
    footer = f"Runtime {runtime:.0f} s (extraction {extract_s:.0f} s), {os.cpu_count()} cores."
    report.append(footer)
    (out / "filters.md").write_text("\n".join(report) + "\n", encoding="utf-8")

    def numbers(o: Outcome) -> dict:
        return {"step": o.step.name, **o.summary, "rules": o.rules}

    card_out = {k: v for k, v in card.items() if k != "bench_training_ids"}
    (out / "filters.json").write_text(json.dumps({
        "config": args.config, "seed": args.seed,
        "settings": ctx.params,
        "documents": {c: {**a, "dropped": dict(a["dropped"])} for c, a in accounting.items()},
        "eval_copies_of_warc_pages": [{"eval_url": e, "warc_url": w} for e, w in sorted(copies)],
        "funnel": [numbers(o) for o in funnel],
        "alone": [numbers(o) for o in alone],
        "c4_line_deletion": {**c4_numbers,
                             "shrunk_over_half_alone": [
                                 {k: r[k] for k in ("url", "corpus", "chars_before", "chars_after", "outcome")}
                                 for r in shrunk_alone]},
        "classifier": {"card": card_out, "warc_documents_in_training": len(training_ids & warc_scored),
                       "warc_documents_scored_alone": len(warc_scored)},
        "drop_samples": index,
        "runtime_s": round(runtime, 1),
    }, indent=1, default=str) + "\n", encoding="utf-8")

    print("\n".join(stdout_report))
    print(f"{footer} Wrote {out}/filters.md, {out}/filters.json and {len(index) + bool(shrunk_file)} files in "
          f"{out}/drops/")


if __name__ == "__main__":
    main()
