"""What each Common Crawl filter keeps and drops, on real pages: alone and as the pipeline's funnel.

    .venv/bin/python -m bench.crawl_filters [--out bench/out/filters] [--seed 0] [--config configs/demo.yaml]

Documents: (a) the labelled pages of samples/extraction_eval/pages.warc.gz (625 records; the same
files as ../shared/data/extraction_eval/), corpus `eval`, and (b) the HTML pages of
samples/warc/*.warc.gz, corpus `warc`; both extracted by the extract stage itself
(`stages.extract.extract_warc`, the config's extractor, cleaning and min_text_chars), so the 28
`hard::` records of the eval set and every page under min_text_chars are not documents. Every
setting is the config's (configs/demo.yaml by default), read through `pipeline.config` and the
stage specs of `pipeline.registry`, and each filter runs as the pipeline runs it: the stage
function itself on a parquet shard, with the dropped side output (no reimplementation).

Steps (build_steps, in funnel order; a step is a function from documents to (kept, [(doc, reason)])):

    langid              stages.langid: lid.176, keep `languages` with score >= threshold
    line_dedup          stages.line_dedup's three phases over the documents in corpus order
                        (WARC shards in the run's order, then the eval pages): a line already seen
                        earlier goes; a document left under min_text_chars is dropped
    perplexity          stages.perplexity: a model per language trained on the config's Wikipedia
                        dumps as the perplexity_model stage trains it, then the score, cutoffs and
                        bucket functions on the step's documents (its percentiles are of the
                        documents it is given: all pages alone, the line-deduplicated ones in the funnel)
    quality             stages.quality_filters.filter_quality with the config's settings: every rule
                        it turns on, in the stage's order, and PII redaction: the funnel's step
    url_blocklist, personal_info_sites, gopher_repetition, gopher_quality, c4, c4_badwords, ...
                        (each filter setting of the stage) the same stage with only that filter on,
                        no PII redaction: the "alone" rows. C4 and the bad-words list, when the
                        config turns them off, are still shown alone (datatrove's C4 defaults, with
                        the config's c4_max_removed_fraction; samples/assets/ldnoobw_en.txt)
    quality_classifier  stages.quality_classifier.score_documents with a model trained as the
                        quality_model stage trains it on this run: the WARC pages after langid and
                        line dedup (negatives) against the Wikipedia sample articles (positives,
                        the fallback when no cited pages are fetched), the config's hyperparameters

Two ways: "alone": each step on every document (what the filter would drop by itself, on raw
extracted pages); "funnel": the steps in order, each on what the one before kept, as a run does
(near-dedup, which sits between the quality rules and the classifier in a run, is not a filter
here: bench/near_dup_eval.py measures it). On the WARC pages the funnel is the demo's CC branch,
so its counts are the demo's (runs/demo manifests) but for near-dedup.

Figures: per step and per rule (the stages' reason strings): docs in (for the rules of a
multi-filter step, the documents that reached that filter), kept, dropped, % dropped, and per
corpus; chars in/out of each step (line dedup, C4's line deletion and PII redaction shorten texts
that are kept). C4: the characters and lines its line rules remove from the documents it keeps, and
every document that loses more than half its text. Classifier: the model card's held-out figures;
on the samples its negatives ARE the WARC pages (>= min_chars after line dedup), so its scores on
them are in-sample; the eval pages are not in its training data and are the fair test.

Outputs under --out: filters.md (the tables, the C4 list, notes), filters.json (the numbers) and
drops/<rule>.md: up to 20 documents per rule chosen at random (seeded by --seed and the rule name)
from the rule's drops when applied alone, each with URL, corpus, reason, what happens to it in the
funnel, and its first 600 characters (for C4, also the text its line rules leave; for line dedup,
the removed lines and where each was seen first), for a person to judge whether each drop is right.
The counts are deterministic; runtime ~2-3 minutes on 2 cores (extraction is most of it).

Modules: corpus (the documents and their corpus), steps (the steps and the Context that trains
their models), run (alone and funnel over forked workers, the counts), report (the tables and
drops/*.md), __main__ (the command line; run it from the repository root).
"""
