"""The run configuration: one YAML file, validated in full before any work starts.

Every section forbids unknown keys, so a typo is an error that names the key rather than a
setting silently ignored. Relative paths are resolved against the current directory.
"""

from __future__ import annotations

import codecs
import glob
import gzip
import re
import zlib
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urlsplit

import yaml
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, field_validator, model_validator

from pipeline.model_files import FASTTEXT, KENLM, SENTENCEPIECE, check_model_file
from pipeline.storage import (
    Location,
    StorageSettings,
    configure as configure_storage,
    glob as storage_glob,
    is_remote,
    location,
    read_bytes,
)
from stages import books, github
from stages.quality_filters import DATATROVE_FILTERS, SETTINGS as QUALITY_SETTINGS
from stages.wikipedia import LLAMA_LANGUAGES

Fraction = Annotated[float, Field(ge=0.0, le=1.0)]
PositiveInt = Annotated[int, Field(gt=0)]
PositiveFloat = Annotated[float, Field(gt=0)]


class ConfigError(ValueError):
    """A configuration problem, reported before any work starts."""


LID_MODEL_ADVICE = ("use the bundled samples/models/lid.176.ftz or download lid.176.bin from "
                    "https://fasttext.cc/docs/en/language-identification.html")


def asset_path(path: str) -> str:
    """A model or word list, as the workers will open it: relative to the current directory when
    it lies inside it (under `ray job submit --working-dir` each node has its own copy of that
    directory, and each worker starts in it), absolute otherwise."""
    resolved = Path(path).resolve()
    return str(resolved.relative_to(Path.cwd())) if resolved.is_relative_to(Path.cwd()) else str(resolved)


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class StorageSection(Section):
    """How the workers reach a remote run directory or remote inputs (pipeline/storage)."""

    s3_endpoint_url: str | None = Field(
        default=None, description="an S3-compatible store (MinIO, Ceph, R2); null: AWS_ENDPOINT_URL, else AWS"
    )
    s3_region: str | None = Field(default=None, description="null: AWS_DEFAULT_REGION, else the bucket's")
    anonymous: bool = Field(default=False, description="read public buckets (s3://commoncrawl) without credentials")
    scratch_dir: str | None = Field(
        default=None, description="local folder where a worker stages a shard's remote files; null: the temp dir"
    )

    def settings(self) -> StorageSettings:
        return StorageSettings(**self.model_dump())


class RunSection(Section):
    output: str = Field(
        description="run directory: shards, manifests, models and checkpoints go here; a local path or a "
        "URI (s3://bucket/run, gs://...), which a run on a multi-node cluster needs"
    )
    storage: StorageSection = StorageSection()
    shared_filesystem: bool = Field(
        default=False,
        description="a local run directory and inputs are on a filesystem every node mounts at the same path "
        "(NFS, Lustre): allow them on a multi-node cluster",
    )
    ray_address: str | None = Field(
        default=None,
        description="Ray cluster to use; null means RAY_ADDRESS if set (as under `ray job submit`), "
        "else an embedded local Ray",
    )
    num_cpus: PositiveInt | None = Field(default=None, description="CPUs for the embedded local Ray")
    keep_dropped: bool = Field(
        default=False,
        description="write every dropped document with its reason under RUN_DIR/dropped/<stage>/ for auditing",
    )


class ExtractParams(Section):
    extractor: Literal["trafilatura", "resiliparse"] = Field(
        default="trafilatura", description="main-text extractor (stages.extract.extractors; bench/README.md)"
    )
    clean: bool = Field(default=True, description="remove what extraction leaves (stages.extract.cleaning)")
    min_text_chars: PositiveInt = 200
    max_html_bytes: PositiveInt = 5_000_000
    timeout_s: Annotated[float, Field(gt=0)] = Field(default=5.0, description="CPU seconds per page")


class WikipediaParams(Section):
    languages: list[str] = Field(default=LLAMA_LANGUAGES, min_length=1)
    min_text_chars: PositiveInt = 200


class LangidParams(Section):
    model: str = "samples/models/lid.176.ftz"
    languages: list[str] = Field(default=["en"], min_length=1)
    threshold: Fraction = 0.5

    @field_validator("model")
    @classmethod
    def _model_is_fasttext(cls, path: str) -> str:
        check_model_file(path, FASTTEXT, LID_MODEL_ADVICE)
        return asset_path(path)


class LineDedupParams(Section):
    partitions: PositiveInt = Field(default=16, description="hash partitions: one Ray task each; see README")
    min_text_chars: PositiveInt = 200


class QualityParams(Section):
    """datatrove's filters, each given as its keyword arguments ({} for its defaults, null to disable)."""

    url_blocklist: str | list[str] | None = Field(default=None, description="domain/URL list file(s)")
    personal_info_sites: str | list[str] | None = Field(
        default=None, description="sites known to hold much personal information (LLaMA-2): list file(s)")
    gopher_repetition: dict | None = {}
    gopher_quality: dict | None = {}
    # C4's rules were LLaMA's for its C4 share, not for CCNet's: off unless a config asks for them.
    c4: dict | None = None
    c4_max_removed_fraction: Fraction | None = Field(
        default=0.5, description="drop a page C4's line rules cut by more than this: what is left is fragments")
    c4_badwords: str | dict[str, str] | None = Field(default=None, description="bad-words list, or {language: list}")
    redact_pii: bool = True
    per_source: dict[str, dict] | None = Field(default=None, description="{source: overrides of the settings above}")

    @model_validator(mode="after")
    def _filters_take_their_options(self) -> "QualityParams":
        """What the quality stage's workers would otherwise find only once Ray has started. (Its check
        that datatrove's word tokenizer loads stays with them: loading spaCy takes seconds.)"""
        for key, filter_class in DATATROVE_FILTERS:
            _check_filter_options(key, filter_class, getattr(self, key))
        for source, overrides in (self.per_source or {}).items():
            unknown = sorted(set(overrides) - set(QUALITY_SETTINGS))
            if unknown:
                raise ValueError(
                    f"per_source.{source}: unknown settings {unknown}; known: {', '.join(QUALITY_SETTINGS)}")
            for key, filter_class in DATATROVE_FILTERS:
                if key in overrides:
                    _check_filter_options(f"per_source.{source}.{key}", filter_class, overrides[key])
        return self

    @field_validator("url_blocklist", "personal_info_sites", "c4_badwords")
    @classmethod
    def _assets_exist(cls, value):
        paths = [value] if isinstance(value, str) else list(value.values()) if isinstance(value, dict) else value or []
        for path in paths:
            if not Path(path).is_file():
                raise ValueError(f"file {path!r} not found")
        if isinstance(value, str):
            return asset_path(value)
        if isinstance(value, dict):
            return {k: asset_path(v) for k, v in value.items()}
        return [asset_path(p) for p in value] if value else value


def _check_filter_options(key: str, filter_class: type, options: dict | None) -> None:
    if options is None:
        return
    if "exclusion_writer" in options:
        raise ValueError(f"{key}: exclusion_writer is not used here; set run.keep_dropped to keep dropped documents")
    try:
        filter_class(**options)
    except TypeError as exc:
        raise ValueError(f"{key}: bad option for datatrove's {filter_class.__name__} ({exc}); give its keyword "
                         "arguments, {} for its defaults or null to turn it off") from None


class PerplexityModelFiles(Section):
    pieces: str = Field(description="SentencePiece model of the language (CCNet: <lang>.sp.model)")
    lm: str = Field(description="KenLM model over those pieces, ARPA or binary (CCNet: <lang>.arpa.bin)")

    @field_validator("pieces")
    @classmethod
    def _pieces_are_sentencepiece(cls, path: str) -> str:
        check_model_file(path, SENTENCEPIECE, "give the pieces.model of a trained model folder "
                         "(RUN_DIR/perplexity/models/LANG/), or leave the language out of `models` to train one")
        return asset_path(path)

    @field_validator("lm")
    @classmethod
    def _lm_is_kenlm(cls, path: str) -> str:
        check_model_file(path, KENLM, "give the lm.binary of a trained model folder "
                         "(RUN_DIR/perplexity/models/LANG/), or leave the language out of `models` to train one")
        return asset_path(path)


Bucket = Literal["head", "middle", "tail"]


class PerplexityParams(Section):
    """CCNet's perplexity filter (stages/perplexity): a 5-gram per language, trained on the run's
    Wikipedia unless `models` gives one, buckets at percentiles of the run's scores."""

    enabled: bool = True
    languages: list[str] | None = Field(default=None, description="null: stages.langid.languages")
    models: dict[str, PerplexityModelFiles] = Field(default={}, description="{language: trained models}: not trained")
    vocab_size: PositiveInt = Field(default=65536, description="pieces of the per-language SentencePiece model")
    max_articles: PositiveInt = Field(default=1_000_000, description="Wikipedia articles a model is trained on")
    seed: int = 0
    train_memory: str = Field(default="20%", description="lmplz -S: memory for its sorts, bytes (8G) or % of RAM")
    kenlm_bin: str | None = Field(default=None, description="folder with lmplz and build_binary; null: .venv/bin")
    num_threads: PositiveInt = 2
    percentiles: tuple[Annotated[float, Field(gt=0, lt=100)], Annotated[float, Field(gt=0, lt=100)]] = Field(
        default=(30, 60), description="head below the first, tail above the second (CCNet)")
    cutoffs: dict[str, tuple[PositiveFloat, PositiveFloat]] = Field(
        default={}, description="{language: [head below, tail above]}: instead of the run's percentiles")
    keep_buckets: list[Bucket] = Field(default=["head", "middle"], min_length=1,
                                       description="RedPajama's LLaMA reproduction kept head and middle")
    drop_unscored: bool = Field(default=False, description="drop documents in a language without a model")

    @model_validator(mode="after")
    def _ordered(self) -> "PerplexityParams":
        low, high = self.percentiles
        if low >= high:
            raise ValueError(f"percentiles: {low} must be below {high}")
        for language, (head, tail) in self.cutoffs.items():
            if head >= tail:
                raise ValueError(f"cutoffs.{language}: {head} must be below {tail}")
        return self

    def model_languages(self, langid_languages: list[str]) -> list[str]:
        return sorted(self.languages if self.languages is not None else langid_languages)

    def trained_languages(self, langid_languages: list[str]) -> list[str]:
        return [lang for lang in self.model_languages(langid_languages) if lang not in self.models]


class ReferencePagesParams(Section):
    """The pages Wikipedia cites, fetched from a crawl's CDX index (stages/references): the quality
    classifier's positives. Off unless `index` is set."""

    index: str | None = Field(
        default=None,
        description="CDX index endpoint, e.g. https://index.commoncrawl.org/CC-MAIN-2024-10-index (or a pywb "
        "collection's http://HOST/COLLECTION/cdx); null: off, quality_model uses cited crawl pages or Wikipedia",
    )
    warc_prefix: str = Field(
        default="https://data.commoncrawl.org/", description="joined to a capture's filename to fetch its record"
    )
    max_urls: PositiveInt = Field(default=10_000, description="cited URLs looked up: a seeded sample of them all")
    seed: int = 0
    concurrency: PositiveInt = Field(default=4, description="requests in flight")
    retries: Annotated[int, Field(ge=0)] = Field(default=3, description="on connection errors, timeouts, 5xx, 429")
    backoff_s: Annotated[float, Field(ge=0)] = Field(default=1.0, description="first retry's wait, doubling")
    per_host_interval_s: Annotated[float, Field(ge=0)] = Field(
        default=0.5, description="at most one request per this many seconds to any one host"
    )
    timeout_s: Annotated[float, Field(gt=0)] = Field(default=30.0, description="per request (socket operation)")
    min_text_chars: PositiveInt = 200
    extractor: Literal["trafilatura", "resiliparse"] = "trafilatura"
    clean: bool = True
    max_html_bytes: PositiveInt = 5_000_000
    cpu_timeout_s: Annotated[float, Field(gt=0)] = Field(default=5.0, description="CPU seconds per page's extraction")

    @field_validator("index", "warc_prefix")
    @classmethod
    def _http_url(cls, url: str | None) -> str | None:
        if url is None:
            return url
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.netloc or parts.fragment:
            raise ValueError(f"{url!r} is not an http(s) URL")
        return url

    @field_validator("warc_prefix")
    @classmethod
    def _ends_with_slash(cls, url: str) -> str:
        if not url.endswith("/"):
            raise ValueError(f"{url!r} must end with / (capture filenames are joined to it)")
        return url


class QualityClassifierParams(Section):
    """The Wikipedia-reference classifier: trained by `quality_model`, applied by `quality_classifier`."""

    enabled: bool = True
    model: str | None = Field(
        default=None,
        description="a trained model (with its card beside it) to apply; null trains one from the run's "
        "crawl and inputs.wikipedia",
    )
    threshold: Fraction = Field(default=0.25, description="keep p(reference) >= threshold (RedPajama's 0.25)")
    languages: list[str] = Field(
        default=["en"], min_length=1, description="Wikipedia languages whose articles may serve as fallback positives"
    )
    min_chars: PositiveInt = Field(default=1000, description="training pages shorter than this are not used")
    max_examples: PositiveInt = Field(default=300_000, description="per class")
    min_positives: PositiveInt = Field(
        default=50, description="fewer cited crawl pages than this: fall back to Wikipedia articles as positives"
    )
    seed: int = 0
    epoch: PositiveInt = 5
    lr: Annotated[float, Field(gt=0)] = 0.1
    word_ngrams: PositiveInt = 2
    dim: PositiveInt = 64
    bucket: PositiveInt = 200_000
    min_count: PositiveInt = 1
    holdout_fraction: Annotated[float, Field(ge=0.0, lt=1.0)] = 0.2
    quantize: bool = True
    cutoff: PositiveInt = 100_000

    @field_validator("model")
    @classmethod
    def _model_is_fasttext(cls, path: str | None) -> str | None:
        if path is None:
            return None
        check_model_file(path, FASTTEXT, "give the quality.ftz a run trained (RUN_DIR/quality_model/quality.ftz), "
                         "or null to train one in the run")
        return asset_path(path)

    @property
    def trains(self) -> bool:
        return self.enabled and self.model is None


class NearDedupParams(Section):
    num_perm: PositiveInt = 112
    bands: PositiveInt = 14
    rows: PositiveInt = 8
    ngram: PositiveInt = 5
    seed: int = 1
    partitions: PositiveInt = 16
    batch_size: PositiveInt = Field(default=1024, description="documents hashed at once (memory: their shingles)")
    verify: bool = Field(default=True, description="drop candidate pairs whose estimated Jaccard is under threshold")
    threshold: Fraction | None = Field(default=None, description="Jaccard threshold; null: the bands/rows S-curve's")

    @model_validator(mode="after")
    def _bands_fit(self) -> "NearDedupParams":
        if self.bands * self.rows > self.num_perm:
            raise ValueError(f"bands x rows ({self.bands} x {self.rows}) exceeds num_perm ({self.num_perm})")
        return self


class ArxivParams(Section):
    """stages.arxiv.extract_arxiv's options."""

    min_text_chars: PositiveInt = 500


class StackExchangeParams(Section):
    """stages.stackexchange.extract_stackexchange's options, and the site selection."""

    sites: PositiveInt = Field(default=28, description="keep the N largest sites by post count (LLaMA: 28)")


class GithubParams(Section):
    """stages.github.extract_github's options (GUIDE thresholds), and the corpus-wide exact dedup."""

    licenses: list[str] = Field(default=list(github.ALLOWED_LICENSES), min_length=1, description="SPDX ids kept")
    extensions: list[str] = Field(default=list(github.EXTENSIONS), min_length=1, description="file suffixes kept")
    max_line_length: PositiveInt = 1000
    max_mean_line_length: PositiveInt = 100
    min_alnum_fraction: Fraction = 0.25
    min_alpha_per_token: Annotated[float, Field(ge=0.0)] = 1.5
    max_file_bytes: PositiveInt = 1_000_000
    max_repo_bytes: PositiveInt = 1 << 30
    strip_headers: bool = Field(default=True, description="remove licence/copyright header comments")
    partitions: PositiveInt = Field(default=16, description="hash partitions of the file dedup: one Ray task each")


class BookDedupParams(NearDedupParams):
    """MinHash settings for whole books, measured in stages.books (BOOK_NEAR_DEDUP): books sharing
    more than 90% of their text are clustered, those sharing 70% or less are not."""

    num_perm: PositiveInt = books.BOOK_NEAR_DEDUP["num_perm"]
    bands: PositiveInt = books.BOOK_NEAR_DEDUP["bands"]
    rows: PositiveInt = books.BOOK_NEAR_DEDUP["rows"]
    ngram: PositiveInt = books.BOOK_NEAR_DEDUP["ngram"]
    seed: int = books.BOOK_NEAR_DEDUP["seed"]
    batch_size: PositiveInt = books.BOOK_NEAR_DEDUP["batch_size"]
    verify: bool = books.BOOK_NEAR_DEDUP["verify"]
    threshold: Fraction | None = books.BOOK_NEAR_DEDUP["threshold"]
    partitions: PositiveInt = 4


class BooksParams(Section):
    """stages.books.extract_books's options, the sharding of the files, and the book-level dedup."""

    files_per_shard: PositiveInt = Field(default=64, description="input files (books, or jsonl files) per Ray task")
    min_text_chars: PositiveInt = books.DEFAULT_MIN_TEXT_CHARS
    max_book_bytes: PositiveInt = books.DEFAULT_MAX_BOOK_BYTES
    language_model: str | None = Field(
        default="samples/models/lid.176.ftz",
        description="fastText lid.176 model for the books' language ID (stages.books); null: no detection")
    languages: list[str] | None = Field(
        default=None, min_length=1,
        description="keep only books in these languages (ISO 639-1 codes); null keeps every language")
    language_threshold: Fraction = books.DEFAULT_LANGUAGE_THRESHOLD
    dedup: BookDedupParams = BookDedupParams()

    @field_validator("language_model")
    @classmethod
    def _language_model_is_fasttext(cls, path: str | None) -> str | None:
        if path is None:
            return None
        check_model_file(path, FASTTEXT, f"{LID_MODEL_ADVICE}, or null for no language detection")
        return asset_path(path)


Source = Literal["common_crawl", "wikipedia", "arxiv", "stackexchange", "github", "books"]
SOURCES: tuple[str, ...] = Source.__args__


class SourceShare(Section):
    """A source's place in the training mix: a sampling proportion, or a number of passes over it."""

    weight: Annotated[float, Field(gt=0.0)] | None = None
    epochs: Annotated[float, Field(gt=0.0)] | None = None

    @model_validator(mode="after")
    def _one_of(self) -> "SourceShare":
        if (self.weight is None) == (self.epochs is None):
            raise ValueError("give exactly one of weight (sampling proportion) or epochs (passes over the source)")
        return self


# LLaMA-1 Table 1 sampling proportions. The pipeline has no separate C4: its Common Crawl branch
# applies C4's rules among its filters, so Common Crawl takes CommonCrawl's 67% and C4's 15%.
LLAMA_MIXTURE = {
    "common_crawl": SourceShare(weight=0.82),
    "github": SourceShare(weight=0.045),
    "wikipedia": SourceShare(weight=0.045),
    "books": SourceShare(weight=0.045),
    "arxiv": SourceShare(weight=0.025),
    "stackexchange": SourceShare(weight=0.02),
}


class MixtureParams(Section):
    """The data mix: each source's share of the training tokens (weights are renormalised over the
    sources the run has), and the token budget the epochs are counted against."""

    sources: dict[Source, SourceShare] = LLAMA_MIXTURE
    token_budget: PositiveInt | None = Field(
        default=None, description="planned training tokens; null: the train stage's steps x batch_size x seq_len"
    )


class CorpusParams(Section):
    """Every source's clean documents in one shape (stages/corpus.py), under RUN_DIR/corpus/: as
    large as the clean text again, so turn it off where only the token shards are wanted."""

    enabled: bool = True


class TokenizerParams(Section):
    vocab_size: Annotated[int, Field(ge=300, le=1_000_000)] = 32000
    sample_bytes: PositiveInt = 200_000_000
    character_coverage: Annotated[float, Field(gt=0.9, le=1.0)] = 0.99995
    num_threads: PositiveInt = 2
    seed: int = 0


class TokenizeParams(Section):
    batch_docs: PositiveInt = 256
    num_threads: PositiveInt = 2


class TokenPartsParams(Section):
    """Each source's token shards merged into the parts the blend names (stages/token_parts.py)."""

    max_part_bytes: PositiveInt = Field(
        default=1 << 30, description="a part's .bin holds about this (at least half unless its source has less)"
    )


# The names of trainer.model.PRESETS, listed here so validating a config does not import torch.
ModelPreset = Literal["tiny", "125M", "350M", "1B", "7B"]


class TrainParams(Section):
    """trainer.train.TrainConfig's settings, as the train stage passes them (one process; for
    several GPUs run `torchrun -m trainer.train --mixture RUN_DIR/mixture ...`, README)."""

    preset: ModelPreset = "tiny"
    steps: PositiveInt = 60
    seq_len: PositiveInt = 256
    batch_size: PositiveInt = Field(default=8, description="sequences per micro-batch")
    global_batch_tokens: PositiveInt | None = Field(
        default=None, description="tokens per optimizer step (gradient accumulation); null: one micro-batch"
    )
    lr: Annotated[float, Field(gt=0)] = 3e-3
    warmup_steps: Annotated[int, Field(ge=0)] = 10
    seed: int = 0
    threads: PositiveInt = 2
    device: Literal["cpu", "cuda"] = "cpu"
    precision: Literal["auto", "bf16", "fp32"] = Field(
        default="auto", description="auto: bf16 autocast on a GPU, fp32 on the CPU"
    )
    checkpoint_every: PositiveInt = 1000
    resume: bool = Field(default=False, description="continue from the newest checkpoint in RUN_DIR/train")
    holdout: Annotated[float, Field(ge=0.0, lt=1.0)] = Field(default=0.01, description="documents held out for validation")
    eval_every: PositiveInt = 1000
    spike_window: Annotated[int, Field(ge=0)] = 50
    spike_skip_batches: Annotated[int, Field(ge=0)] = 200
    tensorboard: bool = True
    compile: bool = False
    recompute: Literal["none", "attention", "block"] = "none"


class StagesSection(Section):
    extract: ExtractParams = ExtractParams()
    wikipedia: WikipediaParams = WikipediaParams()
    langid: LangidParams = LangidParams()
    line_dedup: LineDedupParams = LineDedupParams()
    perplexity: PerplexityParams = PerplexityParams()
    quality: QualityParams = QualityParams()
    near_dedup: NearDedupParams = NearDedupParams()
    reference_pages: ReferencePagesParams = ReferencePagesParams()
    quality_classifier: QualityClassifierParams = QualityClassifierParams()
    arxiv: ArxivParams = ArxivParams()
    stackexchange: StackExchangeParams = StackExchangeParams()
    github: GithubParams = GithubParams()
    books: BooksParams = BooksParams()
    corpus: CorpusParams = CorpusParams()
    tokenizer: TokenizerParams = TokenizerParams()
    tokenize: TokenizeParams = TokenizeParams()
    token_parts: TokenPartsParams = TokenPartsParams()
    mixture: MixtureParams = MixtureParams()
    train: TrainParams = TrainParams()


def _check_patterns(patterns: list[str]) -> list[str]:
    """Local patterns must match now; remote ones are listed when the run plans (`check_inputs`)."""
    for pattern in patterns:
        if not is_remote(pattern) and not glob.glob(pattern, recursive=True):
            raise ValueError(f"no file matches {pattern!r}")
    return patterns


def _glob(pattern: str, directories: bool) -> list[str]:
    if is_remote(pattern):
        return storage_glob(pattern, directories=directories)
    found = (Path(p).resolve() for p in glob.glob(pattern, recursive=True))
    return [str(p) for p in found if p.is_file() or (directories and p.is_dir())]


class WarcPathsFile(Section):
    """A Common Crawl file list (`warc.paths.gz`): one path a line, relative to `prefix`. `every`
    and `first` take a slice of it, as users run a few segments before a whole dump."""

    paths: str = Field(description="a warc.paths(.gz) file, local or remote")
    prefix: str = Field(
        default="https://data.commoncrawl.org/",
        description="joined to each line: https://data.commoncrawl.org/, s3://commoncrawl/ or a mirror",
    )
    every: PositiveInt = Field(default=1, description="keep every k-th path, from the first")
    first: PositiveInt | None = Field(default=None, description="then keep the first N")

    @field_validator("paths")
    @classmethod
    def _local_list_exists(cls, path: str) -> str:
        if not is_remote(path) and not Path(path).is_file():
            raise ValueError(f"paths file {path!r} not found")
        return path if is_remote(path) else str(Path(path).resolve())

    def files(self) -> list[str]:
        try:
            data = read_bytes(self.paths)
        except OSError as exc:
            raise ConfigError(
                f"inputs.common_crawl: cannot read the paths file {self.paths}: {exc}; check the URL and "
                "run.storage (or give local WARC files)"
            ) from None
        try:
            text = (gzip.decompress(data) if data[:2] == b"\x1f\x8b" else data).decode("utf-8")
        except (OSError, EOFError, zlib.error, UnicodeDecodeError) as exc:
            raise ConfigError(
                f"inputs.common_crawl: the paths file {self.paths} is not a list of WARC paths ({exc}); give a "
                "warc.paths.gz of a crawl (https://data.commoncrawl.org/crawl-data/CC-MAIN-.../warc.paths.gz)"
            ) from None
        lines = [line.strip() for line in text.splitlines() if line.strip()]
        chosen = lines[:: self.every][: self.first]
        prefix = self.prefix if self.prefix.endswith("/") or not self.prefix else self.prefix + "/"
        return [line if is_remote(line) else prefix + line.lstrip("/") for line in chosen]


class InputsSection(Section):
    """Each source's inputs, as paths or globs (`**` recurses). Only Common Crawl is required."""

    common_crawl: list[str | WarcPathsFile] = Field(
        min_length=1, description="WARC files, gzipped or plain (paths, globs, URIs), or Common Crawl paths files"
    )
    wikipedia: list[str] | None = Field(default=None, description="pages-articles XML dumps, bz2 or plain")
    arxiv: list[str] | None = Field(
        default=None, description="paper source directories, gzipped .tex, .tar(.gz) of a paper, or arXiv bulk source tars"
    )
    stackexchange: list[str] | None = Field(
        default=None, description="per-site dump archives (.7z), site directories, or Posts.xml files"
    )
    github: list[str] | None = Field(
        default=None, description="repository directories or archives (.zip, .tar.gz), or tables (.parquet, .jsonl)"
    )
    books: dict[str, list[str]] | None = Field(
        default=None, description="{collection: files}: Project Gutenberg .txt, one book per .txt, or .jsonl"
    )

    @field_validator("common_crawl")
    @classmethod
    def _warcs_match(cls, inputs: list) -> list:
        _check_patterns([p for p in inputs if isinstance(p, str)])
        return inputs

    @field_validator("wikipedia", "arxiv", "stackexchange", "github")
    @classmethod
    def _patterns_match(cls, patterns: list[str] | None) -> list[str] | None:
        return _check_patterns(patterns) if patterns else patterns

    @field_validator("books")
    @classmethod
    def _collections_match(cls, collections: dict[str, list[str]] | None) -> dict[str, list[str]] | None:
        for name, patterns in (collections or {}).items():
            if not re.fullmatch(r"[a-z0-9][a-z0-9_-]*", name):
                raise ValueError(f"collection name {name!r}: use lower-case letters, digits, - and _ (it is part of ids)")
            _check_patterns(patterns)
        return collections


# Sources whose inputs may be folders (a paper's sources, a site's dump, a repository).
FOLDER_SOURCES = ("arxiv", "stackexchange", "github")


class RunConfig(Section):
    run: RunSection
    inputs: InputsSection
    stages: StagesSection = StagesSection()
    # Listing a bucket of 90,000 WARCs, or reading a paths file, once a run rather than per use.
    _listed: dict = PrivateAttr(default_factory=dict)

    @model_validator(mode="after")
    def _classifier_has_training_data(self) -> "RunConfig":
        if self.stages.quality_classifier.trains and not self.inputs.wikipedia:
            raise ValueError(
                "stages.quality_classifier: training the classifier needs inputs.wikipedia (its reference URLs "
                "and fallback positives); add a pages-articles dump, give a trained `model`, or set `enabled: false`"
            )
        return self

    @model_validator(mode="after")
    def _perplexity_models_can_be_trained(self) -> "RunConfig":
        perplexity = self.stages.perplexity
        untrained = perplexity.trained_languages(self.stages.langid.languages) if perplexity.enabled else []
        if not untrained:
            return self
        if not self.inputs.wikipedia:
            raise ValueError(
                f"stages.perplexity: no model is given for {untrained} and there is no inputs.wikipedia to train "
                "one on; add a pages-articles dump, give `models: {LANG: {pieces: ..., lm: ...}}`, or set `enabled: false`"
            )
        missing = sorted(set(untrained) - set(self.stages.wikipedia.languages))
        if missing:
            raise ValueError(f"stages.perplexity: models for {missing} are trained on Wikipedia, "
                             "but stages.wikipedia.languages leaves them out")
        from classifiers.ngram_lm import KenLMError, kenlm_tool

        bin_dir = Path(perplexity.kenlm_bin) if perplexity.kenlm_bin else None
        for tool in ("lmplz", "build_binary"):
            try:
                kenlm_tool(tool, str(bin_dir / tool) if bin_dir else None)
            except KenLMError as e:
                raise ValueError(f"stages.perplexity: {e}") from None
        return self

    @model_validator(mode="after")
    def _every_source_has_a_share(self) -> "RunConfig":
        sources = [s for s in SOURCES if s == "common_crawl" or getattr(self.inputs, s)]
        missing = [s for s in sources if s not in self.stages.mixture.sources]
        if missing:
            raise ValueError(f"stages.mixture.sources: the run has source(s) {missing} but no share of the mix for "
                             "them; give each `{weight: W}` or `{epochs: E}`")
        return self

    def input_files(self, source: str) -> list[str]:
        """The source's files (and folders, for FOLDER_SOURCES), absolute, sorted and de-duplicated
        so shard numbering is stable. `source` may be `books.<collection>`."""
        if source not in self._listed:
            self._listed[source] = self._list_inputs(source, directories=source in FOLDER_SOURCES)
        return self._listed[source]

    def _list_inputs(self, source: str, *, directories: bool) -> list[str]:
        if source.startswith("books."):
            patterns = (self.inputs.books or {}).get(source.removeprefix("books."), [])
        else:
            patterns = getattr(self.inputs, source) or []
        found: set[str] = set()
        for pattern in patterns:
            matches = pattern.files() if isinstance(pattern, WarcPathsFile) else _glob(pattern, directories)
            if not matches:
                described = pattern.paths if isinstance(pattern, WarcPathsFile) else pattern
                raise ConfigError(f"inputs.{source}: nothing matches {described!r}")
            found.update(matches)
        return sorted(found)

    def check_inputs(self) -> None:
        """What `validate` and `run` both check before Ray starts, beyond what loading checked: every
        source's inputs listed (a remote pattern matching nothing is an error now, not when its
        stage is reached) and split into shards by the stages that read them, whose shard names
        must not clash (two WARCs of the same name in different folders)."""
        from pipeline.registry import INPUT_STAGES, STAGES  # it imports this module

        configure_storage(self.run.storage.settings())
        self.input_sources()
        for stage in INPUT_STAGES:
            if STAGES[stage].enabled(self):
                STAGES[stage].plan(self, {})

    def input_sources(self) -> dict[str, list[str]]:
        """{source (or books.<collection>): its inputs} for every source the config gives."""
        sources = [s for s in ("common_crawl", "wikipedia", "arxiv", "stackexchange", "github") if getattr(self.inputs, s)]
        sources += [f"books.{collection}" for collection in self.inputs.books or {}]
        return {source: self.input_files(source) for source in sources}

    @property
    def output_dir(self) -> Path | Location:
        """The run directory: an absolute local Path, or a remote Location (joins with `/` alike)."""
        return location(self.run.output)


def _format_errors(error: ValidationError, path: str) -> str:
    lines = [f"invalid configuration {path}:"]
    for err in error.errors():
        key = ".".join(str(part) for part in err["loc"]) or "(top level)"
        message = "unknown key" if err["type"] == "extra_forbidden" else err["msg"].removeprefix("Value error, ")
        lines.append(f"  {key}: {message}")
    return "\n".join(lines)


def _read_mapping(path: str | Path) -> dict:
    """The config file's top-level mapping; a ConfigError saying what the file is instead."""
    if Path(path).is_dir():
        raise ConfigError(f"config file {path} is a directory; give a run config YAML file (e.g. configs/demo.yaml)")
    try:
        with open(path, "rb") as file:
            head = file.read(8192)
            _check_not_binary(head, path)
            data = head + file.read()
    except FileNotFoundError:
        raise ConfigError(f"config file {path} not found") from None
    except OSError as exc:
        raise ConfigError(f"config file {path} cannot be read ({exc.strerror}); check its permissions") from None
    try:
        raw = yaml.safe_load(_utf8_text(data, path))
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {path} is not valid YAML: {exc}") from None
    if raw is None:
        raise ConfigError(f"config file {path} is empty; it needs run and inputs sections (see configs/demo.yaml)")
    if not isinstance(raw, dict):
        kind = "a list" if isinstance(raw, list) else "a single value"
        raise ConfigError(f"config file {path} holds {kind}, not a mapping of run, inputs and stages "
                          "(see configs/demo.yaml)")
    return raw


def _check_not_binary(head: bytes, path: str | Path) -> None:
    # A NUL byte: an executable, an archive, a model... (UTF-16 text has them too, after its byte
    # order mark: that is left to the UTF-8 check.)
    if b"\0" in head and not head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        raise ConfigError(f"config file {path} is a binary file, not YAML text; give a run config YAML file "
                          "(e.g. configs/demo.yaml)")


def _utf8_text(data: bytes, path: str | Path) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"config file {path} is not UTF-8 text (byte {data[exc.start]:#04x} at offset "
                          f"{exc.start}); save it as UTF-8") from None


def _merged(mapping: dict, key: str, overrides: dict) -> dict:
    """`mapping` with `overrides` merged into its `key` section; unchanged where that section is not
    a mapping, which validation then reports."""
    section = mapping.get(key) or {}
    if not overrides or not isinstance(section, dict):
        return mapping
    return {**mapping, key: {**section, **overrides}}


def _with_input_overrides(raw: dict, inputs: dict[str, list[str]]) -> dict:
    """`raw` with `inputs` replacing sources' patterns (`books.<collection>`: a collection's)."""
    section = raw.get("inputs") or {}
    if not inputs or not isinstance(section, dict):
        return raw
    sources = {s: p for s, p in inputs.items() if not s.startswith("books.")}
    collections = {s.removeprefix("books."): p for s, p in inputs.items() if s.startswith("books.")}
    return {**raw, "inputs": _merged({**section, **sources}, "books", collections)}


def load_config(
    path: str | Path,
    *,
    output: str | None = None,
    inputs: dict[str, list[str]] | None = None,
    ray_address: str | None = None,
) -> RunConfig:
    """Read and validate a run config; command-line overrides replace the file's values (`inputs`
    keys are sources, or `books.<collection>`)."""
    raw = _read_mapping(path)
    raw = _merged(raw, "run", {key: value for key, value in (("output", output), ("ray_address", ray_address))
                               if value is not None})
    raw = _with_input_overrides(raw, inputs or {})
    try:
        return RunConfig.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(_format_errors(exc, str(path))) from None
