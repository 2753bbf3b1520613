"""The stages of a run, in order: what each needs, how it splits into shards, what it calls.

Planning happens on the driver, from the config and the manifests of the stages it needs; the
processing itself is a plain function in `stages/` (or `trainer/`) that a Ray task calls per shard.
Order as CCNet, then FineWeb: line dedup before the heuristic filters, so that they judge a page
without the boilerplate it shares with other pages; MinHash last, on the fewest documents.
Corpus-wide deduplication takes several phases (hash, shuffle by hash partition, apply); each
phase is a stage of its own with its own manifest, and `STAGE_GROUPS` names them together.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from pipeline import storage
from pipeline.config import ConfigError, RunConfig
from pipeline.storage import location
from stages.accounting import ShardStats
from stages.documents import atomic_path

Upstream = dict[str, list[dict]]


@dataclass(frozen=True)
class ShardTask:
    shard: str
    inputs: list[str]
    output: str
    index: int = 0  # the shard's position in corpus order, for corpus-wide "first occurrence" rules
    dropped: str | None = None  # where to write the documents it drops, when auditing is on
    # Settings the planner derives for this task from its upstream outputs (a sampling rate, the
    # source of each input); passed to the run function with the section's settings.
    options: dict = field(default_factory=dict)


@dataclass(frozen=True)
class StageSpec:
    name: str
    section: str  # the config section under `stages:` that holds its parameters
    needs: tuple[str, ...]
    plan: Callable[[RunConfig, Upstream], list[ShardTask]]
    # Reads only `task.inputs` (files or folders) and writes only in the run directory (its output,
    # files beside it, `task.dropped`): what pipeline.storage stages and publishes for a remote one.
    run: Callable[[ShardTask, dict], ShardStats]
    resources: Callable[[dict], dict] = field(default=lambda params: {"num_cpus": 1})
    # The file whose presence means a shard's output is complete (the .idx of a .bin/.idx pair).
    completion_marker: Callable[[str], Path | storage.Location] = location
    # Files or folders a shard writes beside its output, other than its completion marker (the
    # wikipedia stage's reference URLs, the tokenizer's Hugging Face export).
    side_outputs: Callable[[str], list[str]] = lambda output: []
    # Whether the config asks for this stage at all (a source with inputs, a filter turned on). A
    # disabled stage is skipped and gives the stages that need it no rows.
    enabled: Callable[[RunConfig], bool] = lambda config: True
    # The settings of its section that determine its output (all when None): the others may change
    # without recomputing it (the quality threshold does not retrain the quality model).
    settings: tuple[str, ...] | None = None
    # Settings it is given that change how fast it works, never what it writes (concurrency,
    # retries, timeouts): left out of its config hash, so changing them recomputes nothing.
    unhashed: tuple[str, ...] = ()
    # Other config sections its output depends on (through its planner), hashed with its own.
    also: tuple[str, ...] = ()
    # One output shard per shard of the last of its enabled needs, which it reads document by
    # document (the others are the stages it reads when that one is disabled): when both run, each
    # shard goes through both in one task (runner.fused_steps).
    fuses_with_upstream: bool = False
    # Its run function takes `progress`, called with the shard's running (docs_in, docs_out,
    # bytes read of its input) as it goes.
    reports_progress: bool = False

    def params(self, config: RunConfig) -> dict:
        params = section_of(config, self.section).model_dump()
        return params if self.settings is None else {k: params[k] for k in self.settings}

    def written_paths(self, output: str) -> list[str]:
        """What a shard with this output writes, but for its dropped documents."""
        return [output, str(self.completion_marker(output)), *self.side_outputs(output)]


def section_of(config: RunConfig, section: str):
    """`stages.<section>` of the config; `section` may be dotted (`books.dedup`)."""
    node = config.stages
    for part in section.split("."):
        node = getattr(node, part)
    return node


def _named_inputs(config: RunConfig, source: str, suffixes: tuple[str, ...]) -> list[tuple[str, str]]:
    """(shard name, path) of a source's inputs; names are file names without `suffixes`."""
    files = config.input_files(source)
    names = []
    for path in files:
        name = Path(path).name
        for suffix in suffixes:
            name = name.removesuffix(suffix)
        names.append(name)
    clashes = sorted(name for name, count in Counter(names).items() if count > 1)
    if clashes:
        raise ConfigError(f"inputs.{source}: several files are named {clashes[0]!r}; shard names must be unique")
    return list(zip(names, files))


def _dropped_path(config: RunConfig, stage: str, shard: str) -> str | None:
    return str(config.output_dir / "dropped" / stage / f"{shard}.parquet") if config.run.keep_dropped else None


def per_document_shard(stage: str, upstream: str) -> Callable[[RunConfig, Upstream], list[ShardTask]]:
    """One task per shard of `upstream`, writing `RUN_DIR/<stage>/<shard>.parquet`."""

    def plan(config: RunConfig, rows: Upstream) -> list[ShardTask]:
        out = config.output_dir / stage
        return [
            ShardTask(r["shard"], [r["output"]], str(out / f"{r['shard']}.parquet"), i,
                      _dropped_path(config, stage, r["shard"]))
            for i, r in enumerate(rows[upstream])
        ]

    return plan


def _one_shard_per_input(stage: str, source: str, suffixes: tuple[str, ...]):
    """A source stage with one task per input file (or directory): `RUN_DIR/<stage>/<name>.parquet`."""

    def plan(config: RunConfig, _: Upstream) -> list[ShardTask]:
        out = config.output_dir / stage
        return [
            ShardTask(name, [path], str(out / f"{name}.parquet"), i, _dropped_path(config, stage, name))
            for i, (name, path) in enumerate(_named_inputs(config, source, suffixes))
        ]

    return plan


def plan_stackexchange_sites(config: RunConfig, _: Upstream) -> list[ShardTask]:
    from stages.stackexchange import site_name

    out = config.output_dir / "stackexchange" / "sites"
    paths = config.input_files("stackexchange")
    sites = [site_name(path) for path in paths]
    clashes = sorted(site for site, count in Counter(sites).items() if count > 1)
    if clashes:
        raise ConfigError(f"inputs.stackexchange: site {clashes[0]!r} is given more than once")
    return [ShardTask(site, [path], str(out / f"{site}.json"), i) for i, (site, path) in enumerate(zip(sites, paths))]


def plan_stackexchange(config: RunConfig, rows: Upstream) -> list[ShardTask]:
    """The `sites` largest sites by post count, as LLaMA took StackExchange's 28 largest."""
    from stages.stackexchange import select_sites

    sites = {r["shard"]: r for r in rows["stackexchange_sites"]}
    selected = select_sites({site: r["counters"]["posts"] for site, r in sites.items()}, config.stages.stackexchange.sites)
    out = config.output_dir / "stackexchange"
    return [
        ShardTask(site, [sites[site]["inputs"][0]], str(out / f"{site}.parquet"), i,
                  _dropped_path(config, "stackexchange", site))
        for i, site in enumerate(sorted(selected))
    ]


def plan_books(config: RunConfig, _: Upstream) -> list[ShardTask]:
    """Each collection's files in groups of `files_per_shard`, named `<collection>-<n>`."""
    out = config.output_dir / "books"
    size = config.stages.books.files_per_shard
    tasks = []
    for collection in sorted(config.inputs.books or {}):
        files = config.input_files(f"books.{collection}")
        for k in range(0, len(files), size):
            shard = f"{collection}-{k // size:05d}"
            tasks.append(ShardTask(shard, files[k : k + size], str(out / f"{shard}.parquet"), len(tasks),
                                   _dropped_path(config, "books", shard)))
    return tasks


def _partitions(config: RunConfig, section: str) -> list[str]:
    return [f"part-{p:05d}" for p in range(section_of(config, section).partitions)]


def _references_of(articles: str) -> str:
    """Where the wikipedia stage writes the reference URLs of an articles shard."""
    articles = location(articles)
    return str(articles.parent / "references" / articles.name)


def plan_reference_pages(config: RunConfig, rows: Upstream) -> list[ShardTask]:
    """One task over every references shard: it paces its requests to the index as a whole."""
    references = [_references_of(r["output"]) for r in rows["wikipedia"]]
    return [ShardTask("pages", references, str(config.output_dir / "reference_pages"),
                      dropped=_dropped_path(config, "reference_pages", "pages"))]


def _reference_pages_file(output: str) -> Path | storage.Location:
    from stages.references import PAGES_FILE

    return location(output) / PAGES_FILE


def plan_quality_model(config: RunConfig, rows: Upstream) -> list[ShardTask]:
    # Trained on line-deduplicated pages: cleaned as the pages it will score are, but not yet
    # filtered, so the negatives are random crawl pages as in LLaMA. Every file it reads is an
    # input, each with its role (options["input_roles"]).
    inputs = {
        "crawl": [r["output"] for r in rows["line_dedup"]],
        "articles": [r["output"] for r in rows["wikipedia"]],
        "references": [_references_of(r["output"]) for r in rows["wikipedia"]],
        "reference_pages": [str(_reference_pages_file(r["output"])) for r in rows["reference_pages"]],
    }
    return [ShardTask("model", [path for paths in inputs.values() for path in paths],
                      str(config.output_dir / "quality_model"),
                      options={"input_roles": [role for role, paths in inputs.items() for _ in paths]})]


def _trained_languages(config: RunConfig) -> list[str]:
    perplexity = config.stages.perplexity
    return perplexity.trained_languages(config.stages.langid.languages) if perplexity.enabled else []


def plan_perplexity_model(config: RunConfig, rows: Upstream) -> list[ShardTask]:
    out = config.output_dir / "perplexity" / "models"
    articles = [r["output"] for r in rows["wikipedia"]]
    return [ShardTask(language, articles, str(out / language), i, options={"language": language})
            for i, language in enumerate(_trained_languages(config))]


def _perplexity_model_files(config: RunConfig, rows: Upstream) -> dict[str, tuple[str, str]]:
    from stages.perplexity import LM_FILE, PIECES_FILE

    models = {lang: (files.pieces, files.lm) for lang, files in config.stages.perplexity.models.items()}
    for row in rows["perplexity_model"]:
        folder = location(row["output"])
        models[row["shard"]] = (str(folder / PIECES_FILE), str(folder / LM_FILE))
    return dict(sorted(models.items()))


def plan_perplexity_score(config: RunConfig, rows: Upstream) -> list[ShardTask]:
    models = _perplexity_model_files(config, rows)
    model_files = [path for files in models.values() for path in files]
    out = config.output_dir / "perplexity" / "scores"
    return [ShardTask(r["shard"], [r["output"], *model_files], str(out / f"{r['shard']}.parquet"), i,
                      options={"languages": list(models)})
            for i, r in enumerate(rows["line_dedup"])]


def _histogram_file(scores: str) -> Path | storage.Location:
    from stages.perplexity import histogram_path

    scores = location(scores)
    return scores.parent / histogram_path(scores.name).name


def plan_perplexity_cutoffs(config: RunConfig, rows: Upstream) -> list[ShardTask]:
    from stages.perplexity import CUTOFFS_FILE

    histograms = [str(_histogram_file(r["output"])) for r in rows["perplexity_score"]]
    languages = list(_perplexity_model_files(config, {"perplexity_model": []}))
    languages = sorted({*languages, *_trained_languages(config)})
    return [ShardTask("cutoffs", histograms, str(config.output_dir / "perplexity" / CUTOFFS_FILE),
                      options={"languages": languages})]


def plan_perplexity(config: RunConfig, rows: Upstream) -> list[ShardTask]:
    scores = {r["shard"]: r["output"] for r in rows["perplexity_score"]}
    [cutoffs] = rows["perplexity_cutoffs"]
    out = config.output_dir / "perplexity"
    return [ShardTask(r["shard"], [r["output"], scores[r["shard"]], cutoffs["output"]],
                      str(out / f"{r['shard']}.parquet"), i, _dropped_path(config, "perplexity", r["shard"]))
            for i, r in enumerate(rows["line_dedup"])]


def plan_quality(config: RunConfig, rows: Upstream) -> list[ShardTask]:
    """The heuristic filters, on the perplexity filter's output when it runs, else line dedup's."""
    upstream = "perplexity" if rows.get("perplexity") or "line_dedup" not in rows else "line_dedup"
    return per_document_shard("quality", upstream)(config, rows)


def plan_quality_classifier(config: RunConfig, rows: Upstream) -> list[ShardTask]:
    from stages.quality_classifier import MODEL_FILE

    model = config.stages.quality_classifier.model or f"{rows['quality_model'][0]['output']}/{MODEL_FILE}"
    out = config.output_dir / "quality_classifier"
    return [
        ShardTask(r["shard"], [r["output"], model], str(out / f"{r['shard']}.parquet"), i,
                  _dropped_path(config, "quality_classifier", r["shard"]))
        for i, r in enumerate(rows["near_dedup"])
    ]


def source_documents(rows: Upstream) -> dict[str, list[dict]]:
    """Each source's clean document shards: the rows of its last document stage the run has."""
    documents = {}
    for source, stages in SOURCE_DOCUMENTS.items():
        stage = next((s for s in stages if rows.get(s)), None)
        if stage:
            documents[source] = rows[stage]
    return documents


def plan_corpus(config: RunConfig, rows: Upstream) -> list[ShardTask]:
    """One task per clean shard of every source: `RUN_DIR/corpus/<source>/<shard>.parquet`."""
    out = config.output_dir / "corpus"
    tasks = []
    for source, shards in source_documents(rows).items():
        for r in shards:
            tasks.append(ShardTask(f"{source}/{r['shard']}", [r["output"]],
                                   str(out / source / f"{r['shard']}.parquet"), len(tasks)))
    return tasks


def run_corpus(task: ShardTask, params: dict) -> ShardStats:
    from stages.corpus import write_corpus_shard

    return write_corpus_shard(task.inputs[0], task.output)


def plan_tokenizer(config: RunConfig, rows: Upstream) -> list[ShardTask]:
    """One task over every source's documents, each shard sampled at its source's rate."""
    from stages.tokenizer import sampling_rates

    documents = source_documents(rows)
    # Every source has a share: the config's validation checks it.
    weights = {s: share.weight or 0.0 for s, share in config.stages.mixture.sources.items()}
    # A source given epochs rather than a weight samples in proportion to its size.
    sizes = {s: sum(_text_bytes(r["output"]) for r in shards) for s, shards in documents.items()}
    total = sum(sizes.values())
    weights = {s: weights[s] or sizes[s] / max(1, total) for s in documents}
    rates = sampling_rates(sizes, weights, config.stages.tokenizer.sample_bytes)
    inputs = [(r["output"], rates[s]) for s, shards in documents.items() for r in shards]
    model = config.output_dir / "tokenizer" / "tokenizer.model"
    return [ShardTask("tokenizer", [path for path, _ in inputs], str(model),
                      options={"sample_rates": [rate for _, rate in inputs]})]


def _tokenizer_export(model: str) -> Path | storage.Location:
    """Where the tokenizer stage puts the Hugging Face export of its model (stages.tokenizer.hf_export_dir)."""
    return location(model).parent / "hf"


def _text_bytes(shard: str) -> int:
    from stages.tokenizer import text_bytes

    with storage.open_input_file(shard) as file:
        return text_bytes(file)


def plan_tokenize(config: RunConfig, rows: Upstream) -> list[ShardTask]:
    tokenizer = rows["tokenizer"][0]["output"]
    tasks = []
    for source, shards in source_documents(rows).items():
        out = config.output_dir / "tokens" / source
        tasks += [ShardTask(f"{source}/{r['shard']}", [r["output"], tokenizer], str(out / r["shard"]), len(tasks))
                  for r in shards]
    return tasks


def plan_token_parts(config: RunConfig, rows: Upstream) -> list[ShardTask]:
    """Per source, its non-empty token shards in name order, grouped into parts (stages.token_parts)."""
    from stages.token_parts import group_shards
    from trainer.indexed_dataset import best_dtype

    token_bytes = best_dtype(config.stages.tokenizer.vocab_size).itemsize
    shards_of: dict[str, list[dict]] = {}
    for row in sorted(rows["tokenize"], key=lambda r: r["shard"]):
        if row["tokens"]:
            shards_of.setdefault(row["shard"].split("/")[0], []).append(row)
    tasks = []
    for source, shards in shards_of.items():
        groups = group_shards([r["tokens"] * token_bytes for r in shards], config.stages.token_parts.max_part_bytes)
        for k, group in enumerate(groups):
            tasks.append(ShardTask(f"{source}/part-{k:05d}", [shards[i]["output"] for i in group],
                                   str(config.output_dir / "token_parts" / source / f"part-{k:05d}"), len(tasks)))
    return tasks


def _dataset_file(suffix: str) -> Callable[[str], Path | storage.Location]:
    return lambda prefix: location(f"{prefix}{suffix}")


def _part_files(prefix: str) -> list[str]:
    """What a token part writes besides its .idx: its tokens and its sidecar."""
    from stages.token_parts import SIDECAR

    return [str(_dataset_file(suffix)(prefix)) for suffix in (".bin", SIDECAR)]


def plan_mixture(config: RunConfig, rows: Upstream) -> list[ShardTask]:
    from stages.token_parts import SIDECAR

    train = config.stages.train
    budget = config.stages.mixture.token_budget or train.steps * train.batch_size * train.seq_len
    # Each part's sidecar: all the mixture reads, without the token data itself.
    parts = [str(_dataset_file(SIDECAR)(r["output"])) for r in sorted(rows["token_parts"], key=lambda r: r["shard"])]
    return [ShardTask("mixture", parts, str(config.output_dir / "mixture"), options={"token_budget": budget})]


def plan_train(config: RunConfig, rows: Upstream) -> list[ShardTask]:
    from stages.token_parts import SIDECAR

    [mixture], tokenizer = rows["mixture"], rows["tokenizer"][0]["output"]
    # The token parts the blend names (beside the mixture's sidecars), after the two files the run
    # function opens.
    prefixes = [sidecar.removesuffix(SIDECAR) for sidecar in mixture["inputs"]]
    parts = [f"{prefix}{suffix}" for prefix in prefixes for suffix in (".bin", ".idx")]
    return [ShardTask("train", [mixture["output"], tokenizer, *parts], str(config.output_dir / "train" / "checkpoint.pt"))]


def run_extract(task: ShardTask, params: dict, progress=None) -> ShardStats:
    from stages.extract import extract_warc

    return extract_warc(task.inputs[0], task.output, progress=progress, **params)


def run_wikipedia(task: ShardTask, params: dict) -> ShardStats:
    from stages.wikipedia import extract_wikipedia

    return extract_wikipedia(task.inputs[0], task.output, _references_of(task.output), dropped_path=task.dropped,
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


def hash_dedup(
    name: str,
    documents: str,
    section: str,
    runs: tuple[Callable, Callable, Callable],
    *,
    enabled: Callable[[RunConfig], bool] = lambda config: True,
    settings: tuple[str, ...] | None = None,
) -> list[StageSpec]:
    """The three phases of corpus-wide exact dedup by hash over the shards of stage `documents`:
    `<name>_hash` (per shard: hashes split by partition), `<name>_find` (per partition: the
    duplicates of each shard) and `<name>` (per shard: the deduplicated documents), under
    `RUN_DIR/<name>/`. `runs` are the three phases' run functions."""

    def plan_hash(config: RunConfig, rows: Upstream) -> list[ShardTask]:
        out = config.output_dir / name / "hashes"
        return [ShardTask(r["shard"], [r["output"]], str(out / r["shard"]), i) for i, r in enumerate(rows[documents])]

    def plan_find(config: RunConfig, rows: Upstream) -> list[ShardTask]:
        out = config.output_dir / name / "duplicates"
        hashes = [r["output"] for r in rows[f"{name}_hash"]]
        return [ShardTask(part, [*(f"{h}/{part}.npy" for h in hashes), *_metas(hashes)], str(out / part), p)
                for p, part in enumerate(_partitions(config, section))]

    def plan_removal(config: RunConfig, rows: Upstream) -> list[ShardTask]:
        out = config.output_dir / name
        duplicates = [r["output"] for r in rows[f"{name}_find"]]
        return [
            ShardTask(r["shard"], [r["output"], *(f"{d}/shard-{i:05d}.npy" for d in duplicates), *_metas(duplicates)],
                      str(out / f"{r['shard']}.parquet"), i, _dropped_path(config, name, r["shard"]))
            for i, r in enumerate(rows[documents])
        ]

    run_hash, run_find, run_remove = runs
    return [
        StageSpec(f"{name}_hash", section, (documents,), plan_hash, run_hash, enabled=enabled, settings=settings),
        StageSpec(f"{name}_find", section, (f"{name}_hash",), plan_find, run_find, enabled=enabled, settings=settings),
        StageSpec(name, section, (documents, f"{name}_find"), plan_removal, run_remove, enabled=enabled,
                  settings=settings),
    ]


def _metas(directories: list[str]) -> list[str]:
    """The meta.json each hash or duplicates file is checked against, read from beside it: listed
    as inputs, as everything a run function reads must be, so a remote shard is staged whole."""
    from stages.line_dedup import META

    return [f"{d}/{META}" for d in directories]


def _without_metas(paths: list[str]) -> list[str]:
    from stages.line_dedup import META

    return [p for p in paths if not p.endswith(f"/{META}")]


def minhash_dedup(name: str, documents: str, section: str, enabled: Callable[[RunConfig], bool]) -> list[StageSpec]:
    """The four phases of MinHash near-duplicate removal over the shards of stage `documents`, with
    the settings of `stages.<section>`: `<name>_signatures` (per shard), `<name>_pairs` (per band-key
    partition), `<name>_clusters` (one task) and `<name>` (per shard: the deduplicated documents),
    writing under `RUN_DIR/<name>/`."""

    def plan_signatures(config: RunConfig, rows: Upstream) -> list[ShardTask]:
        out = config.output_dir / name / "signatures"
        return [ShardTask(r["shard"], [r["output"]], str(out / f"{r['shard']}.npy"), i)
                for i, r in enumerate(rows[documents])]

    def plan_pairs(config: RunConfig, rows: Upstream) -> list[ShardTask]:
        out = config.output_dir / name / "pairs"
        signatures = [r["output"] for r in rows[f"{name}_signatures"]]
        return [ShardTask(part, signatures, str(out / f"{part}.npy"), p)
                for p, part in enumerate(_partitions(config, section))]

    def plan_clusters(config: RunConfig, rows: Upstream) -> list[ShardTask]:
        pairs = [r["output"] for r in rows[f"{name}_pairs"]]
        return [ShardTask("clusters", pairs, str(config.output_dir / name / "clusters"))]

    def plan_removal(config: RunConfig, rows: Upstream) -> list[ShardTask]:
        out = config.output_dir / name
        clusters = rows[f"{name}_clusters"][0]["output"]
        return [
            ShardTask(r["shard"], [r["output"], f"{clusters}/shard-{i:05d}.npy"], str(out / f"{r['shard']}.parquet"), i,
                      _dropped_path(config, name, r["shard"]))
            for i, r in enumerate(rows[documents])
        ]

    # How many documents are hashed at once: each document's signature is its own.
    unhashed = ("batch_size",)
    return [
        StageSpec(f"{name}_signatures", section, (documents,), plan_signatures, run_minhash, enabled=enabled,
                  unhashed=unhashed),
        StageSpec(f"{name}_pairs", section, (f"{name}_signatures",), plan_pairs, run_minhash_pairs, enabled=enabled,
                  unhashed=unhashed),
        StageSpec(f"{name}_clusters", section, (f"{name}_pairs",), plan_clusters, run_minhash_clusters, enabled=enabled,
                  unhashed=unhashed),
        StageSpec(name, section, (documents, f"{name}_clusters"), plan_removal, run_near_dedup, enabled=enabled,
                  unhashed=unhashed),
    ]


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


def _threads(key: str) -> Callable[[dict], dict]:
    return lambda params: {"num_cpus": params[key]}


# Each source's last document stages, last first: the first the run has enabled gives its clean documents.
SOURCE_DOCUMENTS = {
    "common_crawl": ("quality_classifier", "near_dedup"),
    "wikipedia": ("wikipedia",),
    "arxiv": ("arxiv",),
    "stackexchange": ("stackexchange",),
    "github": ("github_dedup",),
    "books": ("books_dedup",),
}
CLEAN_DOCUMENT_STAGES = tuple(stage for stages in SOURCE_DOCUMENTS.values() for stage in stages)

QUALITY_MODEL_SETTINGS = ("languages", "min_chars", "max_examples", "min_positives", "seed", "epoch", "lr",
                          "word_ngrams", "dim", "bucket", "min_count", "holdout_fraction", "quantize", "cutoff")

GITHUB_SUFFIXES = (".zip", ".tar.gz", ".tgz", ".tar.bz2", ".tbz2", ".tar.xz", ".txz", ".tar", ".parquet", ".jsonl.gz",
                   ".jsonl")


def _has_inputs(source: str) -> Callable[[RunConfig], bool]:
    return lambda config: bool(getattr(config.inputs, source))


# The multi-phase steps, each a list of stages.
LINE_DEDUP = hash_dedup("line_dedup", "langid", "line_dedup", (run_line_hash, run_line_find, run_line_dedup))
PERPLEXITY = [
    StageSpec("perplexity_model", "perplexity", ("wikipedia",), plan_perplexity_model, run_perplexity_model,
              _threads("num_threads"), lambda output: location(output) / "meta.json",
              enabled=lambda config: bool(_trained_languages(config)),
              settings=("vocab_size", "max_articles", "seed", "train_memory", "kenlm_bin", "num_threads"),
              # Not num_threads: SentencePiece's unigram training gives another model on another count.
              unhashed=("train_memory", "kenlm_bin")),
    StageSpec("perplexity_score", "perplexity", ("line_dedup", "perplexity_model"), plan_perplexity_score,
              run_perplexity_score, completion_marker=_histogram_file,
              enabled=lambda config: config.stages.perplexity.enabled, settings=("models",)),
    StageSpec("perplexity_cutoffs", "perplexity", ("perplexity_score",), plan_perplexity_cutoffs,
              run_perplexity_cutoffs, enabled=lambda config: config.stages.perplexity.enabled,
              settings=("percentiles", "cutoffs")),
    StageSpec("perplexity", "perplexity", ("line_dedup", "perplexity_score", "perplexity_cutoffs"), plan_perplexity,
              run_perplexity, enabled=lambda config: config.stages.perplexity.enabled,
              settings=("keep_buckets", "drop_unscored")),
]
NEAR_DEDUP = minhash_dedup("near_dedup", "quality", "near_dedup", enabled=lambda config: True)
GITHUB_DEDUP = hash_dedup("github_dedup", "github", "github", (run_github_hash, run_github_find, run_github_dedup),
                          enabled=_has_inputs("github"), settings=("partitions",))
BOOKS_DEDUP = minhash_dedup("books_dedup", "books", "books.dedup", enabled=_has_inputs("books"))

SPECS = [
    # Common Crawl
    StageSpec("extract", "extract", (), _one_shard_per_input("extract", "common_crawl", (".gz", ".warc")), run_extract,
              reports_progress=True),
    StageSpec("langid", "langid", ("extract",), per_document_shard("langid", "extract"), run_langid,
              fuses_with_upstream=True),
    *LINE_DEDUP,
    # Wikipedia, and the perplexity models it trains
    StageSpec("wikipedia", "wikipedia", (), _one_shard_per_input("wikipedia", "wikipedia", (".bz2", ".xml")),
              run_wikipedia, side_outputs=lambda output: [_references_of(output)], enabled=_has_inputs("wikipedia")),
    *PERPLEXITY,
    StageSpec("quality", "quality", ("line_dedup", "perplexity"), plan_quality, run_quality,
              fuses_with_upstream=True),
    *NEAR_DEDUP,
    # The quality classifier Wikipedia trains
    StageSpec("reference_pages", "reference_pages", ("wikipedia",), plan_reference_pages, run_reference_pages,
              completion_marker=_reference_pages_file, reports_progress=True,
              unhashed=("concurrency", "retries", "backoff_s", "per_host_interval_s", "timeout_s"),
              enabled=lambda config: bool(config.stages.reference_pages.index and config.inputs.wikipedia)),
    StageSpec("quality_model", "quality_classifier", ("line_dedup", "wikipedia", "reference_pages"),
              plan_quality_model, run_quality_model, enabled=lambda config: config.stages.quality_classifier.trains,
              settings=QUALITY_MODEL_SETTINGS),
    StageSpec("quality_classifier", "quality_classifier", ("near_dedup", "quality_model"),
              plan_quality_classifier, run_quality_classifier,
              enabled=lambda config: config.stages.quality_classifier.enabled, settings=("threshold", "model")),
    # The other sources
    StageSpec("arxiv", "arxiv", (), _one_shard_per_input("arxiv", "arxiv", (".gz", ".tgz", ".tar", ".tex")),
              run_arxiv, enabled=_has_inputs("arxiv")),
    StageSpec("stackexchange_sites", "stackexchange", (), plan_stackexchange_sites, run_stackexchange_sites,
              enabled=_has_inputs("stackexchange"), settings=()),
    StageSpec("stackexchange", "stackexchange", ("stackexchange_sites",), plan_stackexchange, run_stackexchange,
              enabled=_has_inputs("stackexchange")),
    StageSpec("github", "github", (), _one_shard_per_input("github", "github", GITHUB_SUFFIXES),
              run_github, enabled=_has_inputs("github")),
    *GITHUB_DEDUP,
    StageSpec("books", "books", (), plan_books, run_books, enabled=_has_inputs("books")),
    *BOOKS_DEDUP,
    # The clean corpus in one shape, and then tokenizer, token shards, training
    StageSpec("corpus", "corpus", CLEAN_DOCUMENT_STAGES, plan_corpus, run_corpus,
              enabled=lambda config: config.stages.corpus.enabled, settings=()),
    # Its num_threads is hashed: SentencePiece's BPE training gives another model on another count.
    StageSpec("tokenizer", "tokenizer", CLEAN_DOCUMENT_STAGES, plan_tokenizer, run_tokenizer, _threads("num_threads"),
              lambda model: _tokenizer_export(model) / "tokenizer.json",
              side_outputs=lambda model: [str(_tokenizer_export(model))], also=("mixture",)),
    # Encoding a document gives the same ids whatever the threads and the batches.
    StageSpec("tokenize", "tokenize", (*CLEAN_DOCUMENT_STAGES, "tokenizer"), plan_tokenize, run_tokenize,
              _threads("num_threads"), unhashed=("num_threads", "batch_docs")),
    StageSpec("token_parts", "token_parts", ("tokenize",), plan_token_parts, run_token_parts,
              completion_marker=_dataset_file(".idx"), side_outputs=_part_files),
    StageSpec("mixture", "mixture", ("token_parts",), plan_mixture, run_mixture, also=("train",)),
    # It reads the token parts the mixture names: their rows are what they hold.
    StageSpec("train", "train", ("mixture", "tokenizer", "token_parts"), plan_train, run_train,
              lambda p: {"num_cpus": p["threads"], "num_gpus": 1 if p["device"] == "cuda" else 0}),
]
STAGES: dict[str, StageSpec] = {spec.name: spec for spec in SPECS}
# The stages that read a source's inputs (`books` covers every `books.<collection>`).
INPUT_STAGES = {"extract": "common_crawl", "wikipedia": "wikipedia", "arxiv": "arxiv",
                "stackexchange_sites": "stackexchange", "github": "github", "books": "books"}
STAGE_ORDER = list(STAGES)
# {phase: its stage}: the steps of a multi-phase stage before the one that writes its documents.
PHASES = {phase.name: group[-1].name for group in (LINE_DEDUP, PERPLEXITY, NEAR_DEDUP, GITHUB_DEDUP, BOOKS_DEDUP)
          for phase in group[:-1]} | {"stackexchange_sites": "stackexchange"}
# `--stages line_dedup` (and `make line_dedup`) runs every phase of a multi-phase step; a source's
# name runs all of that source's stages.
STAGE_GROUPS = {
    "line_dedup": [spec.name for spec in LINE_DEDUP],
    "perplexity": [spec.name for spec in PERPLEXITY],
    "near_dedup": [spec.name for spec in NEAR_DEDUP],
    "stackexchange": ["stackexchange_sites", "stackexchange"],
    "github": ["github", *(spec.name for spec in GITHUB_DEDUP)],
    "books": ["books", *(spec.name for spec in BOOKS_DEDUP)],
}


def expand_stages(names: list[str]) -> list[str]:
    """Stage names with groups expanded, in pipeline order; unknown names are a ConfigError."""
    expanded = set()
    for name in names:
        if name in STAGE_GROUPS:
            expanded.update(STAGE_GROUPS[name])
        elif name in STAGES:
            expanded.add(name)
        else:
            raise ConfigError(
                f"unknown stage {name!r}; stages are {', '.join(STAGE_ORDER)} and the groups {', '.join(STAGE_GROUPS)}"
            )
    return sorted(expanded, key=STAGE_ORDER.index)
