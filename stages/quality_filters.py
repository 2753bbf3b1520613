"""Heuristic quality filtering: URL/domain blocklist, datatrove's Gopher and C4 rules, C4 bad words,
then PII redaction of the text kept.

Every document read is one `docs_in`; it is written out or dropped for the first rule it fails, in
this order (each filter is datatrove 0.10.1's own class, called as `filter(doc)` on a
`datatrove.data.Document`, one instance per shard; its reason string is kept, prefixed with the
config key of the filter):

    url_blocklist                       host (or URL prefix) on the local blocklist
    personal_info_site                  host on the list of sites known to hold much personal
                                        information (LLaMA-2's removal; same file format)
    empty_text                          text empty or whitespace only (datatrove's Gopher quality
                                        filter divides by the word count)
    gopher_repetition:<reason>          GopherRepetitionFilter: dup_para_frac, dup_para_char_frac,
                                        dup_line_frac, dup_line_char_frac, top_{2,3,4}_gram,
                                        duplicated_{5..10}_n_grams
    gopher_quality:<reason>             GopherQualityFilter: gopher_short_doc, gopher_long_doc,
                                        gopher_below_avg_threshold, gopher_above_avg_threshold,
                                        gopher_too_many_hashes, gopher_too_many_ellipsis,
                                        gopher_too_many_bullets, gopher_too_many_end_ellipsis,
                                        gopher_below_alpha_threshold, gopher_enough_stop_words
                                        (datatrove's name: it means "not enough stop words")
    c4:<reason>                         C4QualityFilter: lorem_ipsum, curly_bracket,
                                        too_few_sentences; c4:no_lines_kept (ours) when the line
                                        rules leave nothing, possible only with
                                        min_num_sentences <= 0; c4:most_text_removed (ours)
                                        when they delete more than `c4_max_removed_fraction` of
                                        the characters (a hard-wrapped page, whose kept lines
                                        would be the ends of its sentences)
    after_c4_lines:<gopher key>:<reason>
                                        the Gopher rules run again on what the line rules left
    c4_badwords:document_removed_with_badwords
                                        C4BadWordsFilter with a local word list

A filter given as None is skipped; a dict is its keyword arguments (`{}` = datatrove's defaults,
the Gopher paper's and C4's thresholds). A datatrove filter returns True to keep, or
`(False, reason)` (a bare False, which these filters never return, would count as
`<key>:filtered`).

C4's rules were LLaMA's for its separate C4 share; its CCNet share had none of them, so `c4` is off
by default and a config turns it on (for every source, or one through `per_source`).
C4QualityFilter is also a line filter, as in C4: in each kept document it deletes the lines that do
not end in terminal punctuation (. ! ? " ', and not "..."), lines of fewer than 3 words, lines
mentioning "javascript", cookie/terms-of-use lines and lines with a word over 1000 characters; it
strips Wikipedia-style citation marks ([1], [edit]) and rejoins the lines with "\\n". This is
datatrove's behaviour, kept as it is: `doc.text` is modified in place and the shard carries that
text. The removed lines are counted per rule in `counters` (`c4_lines_removed:no_terminal_punc`,
`...:too_few_words`, `...:javascript`, `...:policy`, `...:too_long_word`) together with
`c4_chars_removed`, for the documents kept. Dropped documents go to the side output with their
original text.

Word tokenizer: datatrove's Gopher and C4 filters split words and sentences with
`datatrove.utils.word_tokenizers.load_word_tokenizer(language)`; for "en" (the default `language`
keyword) that is `spacy.blank("en")` plus a rule-based sentencizer: no model download, no network.
It is checked when the filters are built, so a language whose tokenizer needs a missing package or
a download fails at once with a clear message. Note that spaCy makes punctuation marks words of
their own, which lowers Gopher's alphabetic-word ratio (`gopher_below_alpha_threshold`, 0.8) on
ordinary pages with many commas, brackets and numbers.

C4 bad words: datatrove's C4BadWordsFilter downloads the LDNOOBW lists from GitHub at run time;
here a subclass reads them from local files only (`c4_badwords`: the path of the English list, or
{language: path}). Documents are checked against the list of their `language` column ("en" when
there is none); a language without a list is not checked and counted as
`c4_badwords_unchecked:<lang>`. The word matching is datatrove's (lower-cased text, a word list
entry between non-word characters, no separators needed for ja/th/zh). samples/assets/ships the
LDNOOBW "en" list that C4 used.

URL blocklist (`url_blocklist`: one path or a list of paths): one entry a line, `#` starts a
comment. An entry is a domain (`example.com`: blocks it and every subdomain, not
`notexample.com`), a URL or host/path (`example.com/private/`: blocks URLs on that exact host whose
path starts with it at a `/` boundary), and hosts-file lines (`0.0.0.0 example.com`, as in the
Blocklist Project) and `||example.com^` lines are read as domains. Hosts are normalised on both
sides: lower case, IDNA (punycode), no port, no user info, no trailing dot, no leading `www.`.
UT1's `domains` and `urls` files (also bundled, 4.5M adult domains, as
datatrove/assets/url_filterblacklistsv0_3_0.tar.gz) load as they are. Documents without a URL are
not checked. A loaded blocklist is cached per process (keyed by path, size and mtime).

PII: see stages/pii.py. With `redact_pii` on, the counters `emails_redacted`, `ips_redacted` and
`phones_redacted` add up the replacements in the documents kept.

Per source: `per_source` maps a `source` value to overrides of the same settings, e.g.
`{"c4": {"c4": None}}` to skip the C4 rules on a source that has had them already.
"""

from __future__ import annotations

import functools
import os
import re
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from urllib.parse import urlsplit

import pyarrow.parquet as pq
from datatrove.data import Document
from datatrove.pipeline.filters import C4BadWordsFilter, C4QualityFilter, GopherQualityFilter, GopherRepetitionFilter
from datatrove.pipeline.filters.base_filter import BaseFilter, get_filter_result
from datatrove.pipeline.filters.c4_filters import _BADWORDS_ALLOWLIST
from datatrove.utils.word_tokenizers import load_word_tokenizer

from stages.accounting import ShardStats
from stages.documents import DroppedDocuments, read_document_batches, write_documents
from stages.pii import redact_pii as redact_text

DATATROVE_DEFAULTS: Mapping = MappingProxyType({})

# Config key -> datatrove filter class, in the order they run.
DATATROVE_FILTERS: tuple[tuple[str, type[BaseFilter]], ...] = (
    ("gopher_repetition", GopherRepetitionFilter),
    ("gopher_quality", GopherQualityFilter),
    ("c4", C4QualityFilter),
)
SETTINGS = ("url_blocklist", "personal_info_sites", "gopher_repetition", "gopher_quality", "c4",
            "c4_max_removed_fraction", "c4_badwords", "redact_pii")


class QualityConfigError(ValueError):
    """A quality-stage setting is wrong (unknown option, missing asset, unavailable tokenizer)."""


# ---------------------------------------------------------------------------------------------
# URL / domain blocklist


def normalise_host(host: str) -> str:
    """Lower case, IDNA-encoded, without trailing dot or a leading `www.` label."""
    host = host.strip().rstrip(".").lower()
    if not host.isascii():
        try:
            host = host.encode("idna").decode("ascii")
        except UnicodeError:
            pass
    return host[4:] if host.startswith("www.") else host


def _split_url(url: str) -> tuple[str, str] | None:
    """(normalised host, path with query) of a URL or scheme-less host/path, or None."""
    url = url.strip()
    if "://" not in url:
        url = "//" + url
    try:
        parts = urlsplit(url)
        host = parts.hostname  # lower-cased, without port, user info and IPv6 brackets
    except ValueError:
        return None
    if not host:
        return None
    path = parts.path + (f"?{parts.query}" if parts.query else "")
    return normalise_host(host), path


_INLINE_COMMENT = re.compile(r"\s+#")
_PLAIN_DOMAIN = re.compile(r"[A-Za-z0-9_-]+(?:\.[A-Za-z0-9_-]+)+\.?")
_HOSTS_FILE_ADDRESSES = {"0.0.0.0", "127.0.0.1", "::", "::1"}


class UrlBlocklist:
    def __init__(self, entries: Iterable[str] = ()):
        self.domains: set[str] = set()
        self.url_prefixes: dict[str, list[str]] = {}
        for entry in entries:
            self.add(entry)

    def add(self, line: str) -> None:
        line = _INLINE_COMMENT.split(line.strip(), 1)[0]
        if not line or line.startswith("#"):
            return
        if _PLAIN_DOMAIN.fullmatch(line):  # fast path: most lines of UT1's 4.5M-domain list
            self.domains.add(normalise_host(line))
            return
        fields = line.split()
        if len(fields) >= 2 and fields[0] in _HOSTS_FILE_ADDRESSES:  # hosts-file format
            line = fields[1]
        if line.startswith("||"):  # adblock domain rule
            line = line[2:].split("^", 1)[0]
        split = _split_url(line)
        if split is None:
            return
        host, path = split
        if path in ("", "/"):
            self.domains.add(host)
        else:
            self.url_prefixes.setdefault(host, []).append(path)

    def __len__(self) -> int:
        return len(self.domains) + sum(map(len, self.url_prefixes.values()))

    def blocks(self, url: str | None) -> bool:
        if not url:
            return False
        split = _split_url(url)
        if split is None:
            return False
        host, path = split
        labels = host.split(".")
        if any(".".join(labels[i:]) in self.domains for i in range(len(labels))):
            return True
        for prefix in self.url_prefixes.get(host, ()):
            if path.startswith(prefix) and (
                len(path) == len(prefix) or prefix.endswith("/") or path[len(prefix)] in "/?#"
            ):
                return True
        return False

    @classmethod
    def load(cls, paths: str | Iterable[str]) -> "UrlBlocklist":
        paths = [paths] if isinstance(paths, (str, os.PathLike)) else list(paths)
        keys = []
        for path in paths:
            if not Path(path).is_file():
                raise QualityConfigError(f"url_blocklist: no such file: {path}")
            stat = os.stat(path)
            keys.append((str(Path(path).resolve()), stat.st_size, stat.st_mtime_ns))
        return _load_blocklist(tuple(keys))


@functools.lru_cache(maxsize=4)
def _load_blocklist(keys: tuple[tuple[str, int, int], ...]) -> UrlBlocklist:
    blocklist = UrlBlocklist()
    for path, _, _ in keys:
        with open(path, encoding="utf-8", errors="replace") as f:
            for line in f:
                blocklist.add(line)
    return blocklist


# ---------------------------------------------------------------------------------------------
# datatrove filters, offline


class LocalC4BadWordsFilter(C4BadWordsFilter):
    """datatrove's C4 bad-words filter reading its word lists from local files, never downloading.

    `word_lists` maps a language code to a file with one word or phrase a line (the LDNOOBW
    format); blank lines are skipped (datatrove would put an empty alternative in its regex and
    match every document). Languages without a list are not checked.
    """

    def __init__(self, word_lists: Mapping[str, str], **kwargs):
        kwargs.setdefault("fail_on_missing_language", False)
        super().__init__(**kwargs)
        self.word_lists = dict(word_lists)
        for lang, path in self.word_lists.items():
            if not Path(path).is_file():
                raise QualityConfigError(f"c4_badwords: no such file for {lang!r}: {path}")

    def has_list(self, lang: str) -> bool:
        return lang in self.word_lists

    def _get_badwords(self, lang: str):
        if lang not in self._badwords_regex:
            path = self.word_lists.get(lang)
            if path is None:
                return None
            with open(path, encoding="utf-8") as f:
                badwords = {line.strip() for line in f if line.strip()}
            for allowlist in _BADWORDS_ALLOWLIST.values():  # as datatrove does: all languages' allowlists
                badwords -= allowlist
            words = "|".join(re.escape(w) for w in sorted(badwords))
            self._badwords_regex[lang] = (
                re.compile(words) if lang in ("ja", "th", "zh") else re.compile(rf"(?:\W|^)({words})(?:\W|$)")
            )
        return self._badwords_regex[lang]


class LineCountingC4QualityFilter(C4QualityFilter):
    """C4QualityFilter that also keeps the line-rule counts of the last document it filtered."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.last_counts: Counter = Counter()

    def filter(self, doc: Document):
        self.last_counts = Counter()
        return super().filter(doc)

    def stat_update(self, *labels, value: int = 1, unit: str | None = None) -> None:
        super().stat_update(*labels, value=value, unit=unit)
        for label in labels:
            if label.startswith("line-filter-"):
                self.last_counts[label.removeprefix("line-filter-")] += value


_FILTER_CLASSES = {"c4": LineCountingC4QualityFilter}


def _build_filter(key: str, cls: type[BaseFilter], kwargs: Mapping) -> BaseFilter:
    kwargs = dict(kwargs)
    if "exclusion_writer" in kwargs:
        raise QualityConfigError(f"{key}: exclusion_writer is not used here; dropped documents go to dropped_path")
    try:
        built = _FILTER_CLASSES.get(key, cls)(**kwargs)
    except TypeError as e:
        raise QualityConfigError(f"{key}: bad option for datatrove's {cls.__name__}: {e}") from e
    _check_tokenizer(key, getattr(built, "language", None))
    return built


@functools.lru_cache(maxsize=None)
def _check_tokenizer(key: str, language: str | None) -> None:
    if language is None:
        return
    try:
        load_word_tokenizer(language).word_tokenize("Tokenizer check.")
    except Exception as e:  # ImportError, ValueError, OSError from a download attempt...
        raise QualityConfigError(
            f"{key}: datatrove's word tokenizer for language {language!r} cannot be loaded here "
            f"({type(e).__name__}: {e}). It must load without network; English uses spacy.blank('en'), "
            "which needs only the spacy package."
        ) from e


# ---------------------------------------------------------------------------------------------
# The chain of rules for one configuration


@dataclass
class QualityChain:
    blocklist: UrlBlocklist | None
    personal_info_sites: UrlBlocklist | None
    filters: list[tuple[str, BaseFilter]]
    c4_max_removed_fraction: float | None
    badwords: LocalC4BadWordsFilter | None
    redact_pii: bool
    counters: Counter = field(default_factory=Counter)

    @classmethod
    def build(
        cls,
        *,
        url_blocklist: str | list[str] | None,
        personal_info_sites: str | list[str] | None,
        gopher_repetition: Mapping | None,
        gopher_quality: Mapping | None,
        c4: Mapping | None,
        c4_max_removed_fraction: float | None,
        c4_badwords: str | Mapping[str, str] | None,
        redact_pii: bool,
    ) -> "QualityChain":
        settings = {"gopher_repetition": gopher_repetition, "gopher_quality": gopher_quality, "c4": c4}
        filters = [
            (key, _build_filter(key, filter_cls, settings[key]))
            for key, filter_cls in DATATROVE_FILTERS
            if settings[key] is not None
        ]
        badwords = None
        if c4_badwords is not None:
            lists = {"en": c4_badwords} if isinstance(c4_badwords, (str, os.PathLike)) else c4_badwords
            badwords = LocalC4BadWordsFilter(lists)
        blocklist = UrlBlocklist.load(url_blocklist) if url_blocklist else None
        personal = UrlBlocklist.load(personal_info_sites) if personal_info_sites else None
        return cls(blocklist, personal, filters, c4_max_removed_fraction, badwords, redact_pii)

    def _recheck(self, dt_doc: Document) -> str | None:
        """The Gopher rules again, on what C4's line deletions left: a page must still read as a page."""
        for key, filt in self.filters:
            if key.startswith("gopher"):
                keep, reason = get_filter_result(filt.filter(dt_doc))
                if not keep:
                    return f"after_c4_lines:{key}:{reason or 'filtered'}"
        return None

    def apply(self, doc: dict) -> tuple[str | None, str]:
        """(drop reason or None, text to write)."""
        if self.blocklist is not None and self.blocklist.blocks(doc.get("url")):
            return "url_blocklist", doc["text"]
        if self.personal_info_sites is not None and self.personal_info_sites.blocks(doc.get("url")):
            return "personal_info_site", doc["text"]
        text = doc.get("text") or ""
        if not text.strip():
            return "empty_text", text
        language = doc.get("language") or "en"
        dt_doc = Document(text=text, id=str(doc.get("id")), metadata={"language": language})
        line_counts: dict[str, int] = {}
        for key, filt in self.filters:
            before = dt_doc.text
            keep, reason = get_filter_result(filt.filter(dt_doc))
            if not keep:
                return f"{key}:{reason or 'filtered'}", text
            if isinstance(filt, LineCountingC4QualityFilter):
                if not dt_doc.text.strip():
                    return "c4:no_lines_kept", text
                removed = len(before) - len(dt_doc.text)
                if self.c4_max_removed_fraction is not None and removed > self.c4_max_removed_fraction * len(before):
                    return "c4:most_text_removed", text
                reason = self._recheck(dt_doc)
                if reason:
                    return reason, text
                line_counts = {f"c4_lines_removed:{rule}": n for rule, n in filt.last_counts.items()}
                line_counts["c4_chars_removed"] = removed
        if self.badwords is not None:
            if self.badwords.has_list(language):
                keep, reason = get_filter_result(self.badwords.filter(dt_doc))
                if not keep:
                    return f"c4_badwords:{reason or 'filtered'}", text
            else:
                self.counters[f"c4_badwords_unchecked:{language}"] += 1
        self.counters.update(line_counts)
        text = dt_doc.text
        if self.redact_pii:
            text, found = redact_text(text)
            self.counters.update(found)
        return None, text


def filter_quality(
    input_path: str,
    output_path: str,
    *,
    url_blocklist: str | list[str] | None = None,
    personal_info_sites: str | list[str] | None = None,
    gopher_repetition: Mapping | None = DATATROVE_DEFAULTS,
    gopher_quality: Mapping | None = DATATROVE_DEFAULTS,
    c4: Mapping | None = None,
    c4_max_removed_fraction: float | None = 0.5,
    c4_badwords: str | Mapping[str, str] | None = None,
    redact_pii: bool = True,
    per_source: Mapping[str, Mapping] | None = None,
    dropped_path: str | None = None,
) -> ShardStats:
    base = {
        "url_blocklist": url_blocklist,
        "personal_info_sites": personal_info_sites,
        "gopher_repetition": gopher_repetition,
        "gopher_quality": gopher_quality,
        "c4": c4,
        "c4_max_removed_fraction": c4_max_removed_fraction,
        "c4_badwords": c4_badwords,
        "redact_pii": redact_pii,
    }
    for source, overrides in (per_source or {}).items():
        unknown = set(overrides) - set(SETTINGS)
        if unknown:
            raise QualityConfigError(f"per_source[{source!r}]: unknown settings {sorted(unknown)}; known: {SETTINGS}")
    default_chain = QualityChain.build(**base)
    chains = {
        source: QualityChain.build(**{**base, **overrides}) for source, overrides in (per_source or {}).items()
    }
    stats = ShardStats()
    schema = pq.read_schema(input_path)

    def kept(dropped: DroppedDocuments) -> Iterator[dict]:
        for batch in read_document_batches(input_path):
            stats.docs_in += len(batch)
            for doc in batch:
                reason, text = chains.get(doc.get("source"), default_chain).apply(doc)
                if reason:
                    stats.drop(reason)
                    dropped.add(doc, reason)
                else:
                    stats.docs_out += 1
                    yield {**doc, "text": text}

    with DroppedDocuments(dropped_path, schema) as dropped:
        stats.bytes_out = write_documents(output_path, kept(dropped), schema)
    for chain in (default_chain, *chains.values()):
        stats.counters.update(chain.counters)
    return stats.check()
