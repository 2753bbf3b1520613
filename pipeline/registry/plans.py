"""The stages' planners: from the config and the rows of the stages it needs, each stage's shard tasks."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from pathlib import Path

from pipeline import storage
from pipeline.config import ConfigError, RunConfig
from pipeline.registry.spec import ShardTask, Upstream, dropped_path, per_document_shard
from pipeline.storage import location


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
                  dropped_path(config, "stackexchange", site))
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
                                   dropped_path(config, "books", shard)))
    return tasks


def references_of(articles: str) -> str:
    """Where the wikipedia stage writes the reference URLs of an articles shard."""
    articles = location(articles)
    return str(articles.parent / "references" / articles.name)


def plan_reference_pages(config: RunConfig, rows: Upstream) -> list[ShardTask]:
    """One task over every references shard: it paces its requests to the index as a whole."""
    references = [references_of(r["output"]) for r in rows["wikipedia"]]
    return [ShardTask("pages", references, str(config.output_dir / "reference_pages"),
                      dropped=dropped_path(config, "reference_pages", "pages"))]


def reference_pages_file(output: str) -> Path | storage.Location:
    from stages.references import PAGES_FILE

    return location(output) / PAGES_FILE


def plan_quality_model(config: RunConfig, rows: Upstream) -> list[ShardTask]:
    # Trained on line-deduplicated pages: cleaned as the pages it will score are, but not yet
    # filtered, so the negatives are random crawl pages as in LLaMA. Every file it reads is an
    # input, each with its role (options["input_roles"]).
    inputs = {
        "crawl": [r["output"] for r in rows["line_dedup"]],
        "articles": [r["output"] for r in rows["wikipedia"]],
        "references": [references_of(r["output"]) for r in rows["wikipedia"]],
        "reference_pages": [str(reference_pages_file(r["output"])) for r in rows["reference_pages"]],
    }
    return [ShardTask("model", [path for paths in inputs.values() for path in paths],
                      str(config.output_dir / "quality_model"),
                      options={"input_roles": [role for role, paths in inputs.items() for _ in paths]})]


def trained_languages(config: RunConfig) -> list[str]:
    perplexity = config.stages.perplexity
    return perplexity.trained_languages(config.stages.langid.languages) if perplexity.enabled else []


def plan_perplexity_model(config: RunConfig, rows: Upstream) -> list[ShardTask]:
    out = config.output_dir / "perplexity" / "models"
    articles = [r["output"] for r in rows["wikipedia"]]
    return [ShardTask(language, articles, str(out / language), i, options={"language": language})
            for i, language in enumerate(trained_languages(config))]


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


def histogram_file(scores: str) -> Path | storage.Location:
    from stages.perplexity import histogram_path

    scores = location(scores)
    return scores.parent / histogram_path(scores.name).name


def plan_perplexity_cutoffs(config: RunConfig, rows: Upstream) -> list[ShardTask]:
    from stages.perplexity import CUTOFFS_FILE

    histograms = [str(histogram_file(r["output"])) for r in rows["perplexity_score"]]
    languages = list(_perplexity_model_files(config, {"perplexity_model": []}))
    languages = sorted({*languages, *trained_languages(config)})
    return [ShardTask("cutoffs", histograms, str(config.output_dir / "perplexity" / CUTOFFS_FILE),
                      options={"languages": languages})]


def plan_perplexity(config: RunConfig, rows: Upstream) -> list[ShardTask]:
    scores = {r["shard"]: r["output"] for r in rows["perplexity_score"]}
    [cutoffs] = rows["perplexity_cutoffs"]
    out = config.output_dir / "perplexity"
    return [ShardTask(r["shard"], [r["output"], scores[r["shard"]], cutoffs["output"]],
                      str(out / f"{r['shard']}.parquet"), i, dropped_path(config, "perplexity", r["shard"]))
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
                  dropped_path(config, "quality_classifier", r["shard"]))
        for i, r in enumerate(rows["near_dedup"])
    ]


# Each source's last document stages, last first: the first the run has enabled gives its clean documents.
SOURCE_DOCUMENTS = {
    "common_crawl": ("quality_classifier", "near_dedup"),
    "wikipedia": ("wikipedia",),
    "arxiv": ("arxiv",),
    "stackexchange": ("stackexchange",),
    "github": ("github_dedup",),
    "books": ("books_dedup",),
}


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


def tokenizer_export(model: str) -> Path | storage.Location:
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


def dataset_file(suffix: str) -> Callable[[str], Path | storage.Location]:
    return lambda prefix: location(f"{prefix}{suffix}")


def part_files(prefix: str) -> list[str]:
    """What a token part writes besides its .idx: its tokens and its sidecar."""
    from stages.token_parts import SIDECAR

    return [str(dataset_file(suffix)(prefix)) for suffix in (".bin", SIDECAR)]


def plan_mixture(config: RunConfig, rows: Upstream) -> list[ShardTask]:
    from stages.token_parts import SIDECAR

    train = config.stages.train
    budget = config.stages.mixture.token_budget or train.steps * train.batch_size * train.seq_len
    # Each part's sidecar: all the mixture reads, without the token data itself.
    parts = [str(dataset_file(SIDECAR)(r["output"])) for r in sorted(rows["token_parts"], key=lambda r: r["shard"])]
    return [ShardTask("mixture", parts, str(config.output_dir / "mixture"), options={"token_budget": budget})]


def plan_train(config: RunConfig, rows: Upstream) -> list[ShardTask]:
    from stages.token_parts import SIDECAR

    [mixture], tokenizer = rows["mixture"], rows["tokenizer"][0]["output"]
    # The token parts the blend names (beside the mixture's sidecars), after the two files the run
    # function opens.
    prefixes = [sidecar.removesuffix(SIDECAR) for sidecar in mixture["inputs"]]
    parts = [f"{prefix}{suffix}" for prefix in prefixes for suffix in (".bin", ".idx")]
    return [ShardTask("train", [mixture["output"], tokenizer, *parts], str(config.output_dir / "train" / "checkpoint.pt"))]
