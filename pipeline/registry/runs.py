"""The stages' run functions: each runs one shard task, calling its stage in `stages/` (or `trainer/`)."""

from __future__ import annotations

import json
from collections import Counter

from pipeline.registry.plans import references_of
from pipeline.registry.spec import ShardTask
from stages.accounting import ShardStats
from stages.documents import atomic_path


def run_corpus(task: ShardTask, params: dict) -> ShardStats:
    from stages.corpus import write_corpus_shard

    return write_corpus_shard(task.inputs[0], task.output)


def run_extract(task: ShardTask, params: dict, progress=None) -> ShardStats:
    from stages.extract import extract_warc

    return extract_warc(task.inputs[0], task.output, progress=progress, **params)


def run_wikipedia(task: ShardTask, params: dict) -> ShardStats:
    from stages.wikipedia import extract_wikipedia

    return extract_wikipedia(task.inputs[0], task.output, references_of(task.output), dropped_path=task.dropped,
                             **params)


def run_arxiv(task: ShardTask, params: dict) -> ShardStats:
    from stages.arxiv import extract_arxiv

    return extract_arxiv(task.inputs[0], task.output, dropped_path=task.dropped, **params)


def run_stackexchange_sites(task: ShardTask, params: dict) -> ShardStats:
    from stages.stackexchange import count_posts

    posts = count_posts(task.inputs[0])
    with atomic_path(task.output) as tmp:
        tmp.write_text(json.dumps({"site": task.shard, "posts": posts}) + "\n")
    return ShardStats(docs_in=posts, docs_out=posts, counters=Counter(posts=posts))


def run_stackexchange(task: ShardTask, params: dict) -> ShardStats:
    from stages.stackexchange import extract_stackexchange

    settings = {k: v for k, v in params.items() if k != "sites"}
    return extract_stackexchange(task.inputs[0], task.output, dropped_path=task.dropped, **settings)


def run_github(task: ShardTask, params: dict) -> ShardStats:
    from stages.github import extract_github

    settings = {k: v for k, v in params.items() if k != "partitions"}
    return extract_github(task.inputs[0], task.output, dropped_path=task.dropped, **settings)


def run_github_hash(task: ShardTask, params: dict) -> ShardStats:
    from stages.github import hash_files

    return hash_files(task.inputs[0], task.output, shard_index=task.index, partitions=params["partitions"])


def run_github_find(task: ShardTask, params: dict) -> ShardStats:
    from stages.github import find_duplicate_files

    return find_duplicate_files(_without_metas(task.inputs), task.output, partition=task.index)


def run_github_dedup(task: ShardTask, params: dict) -> ShardStats:
    from stages.github import remove_duplicate_files

    documents, *duplicates = _without_metas(task.inputs)
    return remove_duplicate_files(documents, duplicates, task.output, dropped_path=task.dropped)


def run_books(task: ShardTask, params: dict) -> ShardStats:
    from stages.books import extract_books

    collection = task.shard.rsplit("-", 1)[0]
    settings = {k: v for k, v in params.items() if k not in ("files_per_shard", "dedup")}
    return extract_books(task.inputs, task.output, collection=collection, dropped_path=task.dropped, **settings)


def run_langid(task: ShardTask, params: dict) -> ShardStats:
    from stages.langid import identify_languages

    return identify_languages(task.inputs[0], task.output, dropped_path=task.dropped, **params)


def run_quality(task: ShardTask, params: dict) -> ShardStats:
    from stages.quality_filters import filter_quality

    return filter_quality(task.inputs[0], task.output, dropped_path=task.dropped, **params)


def run_perplexity_model(task: ShardTask, params: dict) -> ShardStats:
    from stages.perplexity import train_perplexity_model

    settings = {k: v for k, v in params.items() if k != "language"}
    return train_perplexity_model(task.inputs, task.output, language=params["language"], **settings)


def run_perplexity_score(task: ShardTask, params: dict) -> ShardStats:
    from stages.perplexity import score_perplexity

    documents, *files = task.inputs
    models = {lang: (files[2 * i], files[2 * i + 1]) for i, lang in enumerate(params["languages"])}
    return score_perplexity(documents, task.output, models=models)


def run_perplexity_cutoffs(task: ShardTask, params: dict) -> ShardStats:
    from stages.perplexity import compute_cutoffs

    return compute_cutoffs(task.inputs, task.output, languages=params["languages"],
                           percentiles=params["percentiles"], cutoffs=params["cutoffs"])


def run_perplexity(task: ShardTask, params: dict) -> ShardStats:
    from stages.perplexity import bucket_documents

    documents, scores, cutoffs = task.inputs
    return bucket_documents(documents, scores, cutoffs, task.output, dropped_path=task.dropped, **params)


def run_line_hash(task: ShardTask, params: dict) -> ShardStats:
    from stages.line_dedup import hash_lines

    return hash_lines(task.inputs[0], task.output, shard_index=task.index, partitions=params["partitions"])


def run_line_find(task: ShardTask, params: dict) -> ShardStats:
    from stages.line_dedup import find_duplicate_lines

    return find_duplicate_lines(_without_metas(task.inputs), task.output, partition=task.index)


def run_line_dedup(task: ShardTask, params: dict) -> ShardStats:
    from stages.line_dedup import remove_duplicate_lines

    documents, *duplicates = _without_metas(task.inputs)
    return remove_duplicate_lines(
        documents, duplicates, task.output, min_text_chars=params["min_text_chars"], dropped_path=task.dropped
    )


def run_minhash(task: ShardTask, params: dict) -> ShardStats:
    from stages.near_dedup import minhash_signatures

    signature_params = {k: params[k] for k in ("num_perm", "bands", "rows", "ngram", "seed", "batch_size")}
    return minhash_signatures(task.inputs[0], task.output, shard_index=task.index, **signature_params)


def run_minhash_pairs(task: ShardTask, params: dict) -> ShardStats:
    from stages.near_dedup import find_candidate_pairs

    return find_candidate_pairs(
        task.inputs,
        task.output,
        partition=task.index,
        partitions=params["partitions"],
        verify=params["verify"],
        threshold=params["threshold"],
    )


def run_minhash_clusters(task: ShardTask, params: dict) -> ShardStats:
    from stages.near_dedup import cluster_duplicates

    return cluster_duplicates(task.inputs, task.output)


def run_near_dedup(task: ShardTask, params: dict) -> ShardStats:
    from stages.near_dedup import remove_near_duplicates

    documents, clusters = task.inputs
    return remove_near_duplicates(documents, clusters, task.output, dropped_path=task.dropped)


def _without_metas(paths: list[str]) -> list[str]:
    from stages.line_dedup import META

    return [p for p in paths if not p.endswith(f"/{META}")]


def run_reference_pages(task: ShardTask, params: dict, progress=None) -> ShardStats:
    from stages.references import fetch_reference_pages

    return fetch_reference_pages(task.inputs, task.output, dropped_path=task.dropped, progress=progress, **params)


def run_quality_model(task: ShardTask, params: dict) -> ShardStats:
    from stages.quality_classifier import train_quality_classifier

    settings = {k: v for k, v in params.items() if k != "input_roles"}
    paths: dict[str, list[str]] = {"crawl": [], "articles": [], "references": [], "reference_pages": []}
    for path, role in zip(task.inputs, params["input_roles"], strict=True):
        paths[role].append(path)
    return train_quality_classifier(paths["crawl"], paths["references"], paths["articles"], task.output,
                                    reference_pages_paths=paths["reference_pages"], **settings)


def run_quality_classifier(task: ShardTask, params: dict) -> ShardStats:
    from stages.quality_classifier import score_documents

    documents, model = task.inputs
    return score_documents(documents, task.output, model=model, threshold=params["threshold"],
                           dropped_path=task.dropped)


def run_tokenizer(task: ShardTask, params: dict) -> ShardStats:
    from stages.tokenizer import train_tokenizer

    settings = {k: v for k, v in params.items() if k != "sample_bytes"}  # the planner made it sample_rates
    return train_tokenizer(task.inputs, task.output, **settings)


def run_tokenize(task: ShardTask, params: dict) -> ShardStats:
    from stages.tokenize import tokenize_shard

    data, tokenizer = task.inputs
    return tokenize_shard(data, tokenizer, task.output, **params)


def run_token_parts(task: ShardTask, params: dict) -> ShardStats:
    from stages.token_parts import merge_shards

    return merge_shards(task.inputs, task.output)


def run_mixture(task: ShardTask, params: dict) -> ShardStats:
    from stages.mixture import write_mixture

    return write_mixture(task.inputs, task.output, sources=params["sources"], token_budget=params["token_budget"])


def run_train(task: ShardTask, params: dict) -> ShardStats:
    from stages.train import train_on_mixture

    mixture, tokenizer, *_ = task.inputs
    return train_on_mixture(mixture, tokenizer, task.output, **params)
