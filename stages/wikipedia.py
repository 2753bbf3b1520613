"""Wikipedia: stream a `pages-articles` XML dump into clean-text article documents plus a dataset
of the external URLs the articles cite.

Input: a MediaWiki XML export (export-0.10/0.11 or any other namespace; tags are matched on their
local name), bz2-compressed (by content: the `BZh` magic) or plain, in any encoding expat detects
from a BOM or the XML declaration (the Bulgarian sample is UTF-16 LE with a BOM and no declaration).
The dump is parsed with `xml.etree.ElementTree.iterparse`; each `<page>` is handled on its end event
and the tree is cleared after it, so memory stays flat however large the dump.

Language: from `<siteinfo><dbname>` (`enwiki` -> `en`, `zh_min_nanwiki` -> `zh-min-nan`), else the
host of `<base>`, else the root's `xml:lang`. When the language is not in `languages` (default: the
20 LLaMA languages, `LLAMA_LANGUAGES`) every page of the dump is still read and each is dropped as
`language_not_selected`, so docs_in is always the dump's page count and no wikitext is parsed.

Accounting: every `<page>` is one docs_in. Drop reasons, checked in this order:
- `language_not_selected`: the dump's language is not selected (see above).
- `redirect`: the page has a `<redirect>` element (or its text starts with `#REDIRECT`), in any
  namespace (checked first: the enwiki sample's 100 redirects include one in namespace 4).
- `namespace_<n>`: not an article (`<ns>` other than 0), e.g. `namespace_4` for Wikipedia: pages.
- `parse_error`: mwparserfromhell (or the cleaning of its tree) raised on the wikitext.
- `empty_text`: nothing left after cleaning.
- `text_too_short`: fewer than `min_text_chars` characters left after cleaning.
- `corrupt_xml`: the XML (or the bz2 stream) is damaged or truncated. Reading stops there; the
  damaged remainder counts as one more docs_in and one `corrupt_xml` drop, and every page completed
  before the damage is kept as usual. The stage never raises on a bad dump.

Cleaning rules (mwparserfromhell 0.7.2 tree, walked node by node; LLaMA-style plain text). The
wikitext is parsed with `skip_style_tags=True`: with style tags on, one unbalanced pair of quote
marks (common in citation templates) makes the tokenizer give up on the enclosing construct and
leaves `<ref>`, `{{` and `[[` in the text (seen in "Andre Agassi" in the enwiki sample); runs of
quote marks are removed from the text nodes instead (2, 3 and 5 go, 4 leave one apostrophe, and
three before a possessive s leave one: Iliad's).
- links: `[[A|b]]` -> `b`, `[[A]]` -> `A`, `[[:Category:X|y]]` -> `y`; links into the File/Image/
  Media and Category namespaces are removed with their captions (names from the dump's
  `<namespaces>` for keys 6, -2 and 14, the English canonical names, and common localized aliases
  such as `Bild`, `Картинка`); interlanguage links (`[[de:Foo]]`) are removed.
- external links: `[http://x text]` -> `text`; `[http://x]` and bare URLs are removed.
- removed with their contents: templates (`{{...}}`, infoboxes, citation templates), template
  arguments, `<ref>`, `<references>`, tables (`{| |}` and HTML `<table>`), comments, `<math>`,
  `<chem>`, `<gallery>`, `<timeline>`, `<imagemap>`, `<score>`, `<graph>`, `<mapframe>`,
  `<syntaxhighlight>`/`<source>`, `<templatestyles>`, `<noinclude>`/`<includeonly>` and the like.
- kept without their markup: bold/italic quote marks, formatting tags (`<b>`, `<i>`, `<sub>`,
  `<sup>`, `<span>`, `<small>`, `<blockquote>`, `<poem>`, `<nowiki>`, `<pre>`...), list markers
  (`*`, `#`, `:`, `;` are dropped, the item text stays), `<br>` becomes a line break, `----` goes.
- HTML entities are decoded; magic words (`__TOC__`, `__NOTOC__`...) are removed.
- headings become plain lines (the title only); a heading whose section is left empty (typically
  "References", "External links", "See also" lists of templates) is removed.
- empty brackets left by removed templates (`()`, `(; )`) are removed, `(; born` becomes `(born`; trailing spaces are
  stripped and runs of blank lines collapse into one blank line.
The result contains no `{{`, `[[`, `<ref` or `{|`.

Reference URLs (for the reference-page quality classifier): collected from the parsed tree BEFORE
cleaning, for every namespace-0 article of a selected dump that parses, including articles later
dropped as empty/too short (their `article_id` is then absent from the documents). Kinds:
`ref` (any URL inside a `<ref>`: bracketed, bare, or a template's URL parameter), `template` (a
URL parameter - any parameter whose name ends in `url`, e.g. `url=`, `archive-url=`,
`chapter-url=` - of a template outside a `<ref>`), `external_link` (a bracketed or bare external
link elsewhere, e.g. the "External links" section). Only http, https, ftp and protocol-relative
(`//host`, read as https) URLs are taken. Normalisation: lower-case scheme and host, `www.` removed,
user info and default ports (80/443/21) dropped, fragment dropped, trailing `/` stripped from the
path, query kept but for tracking parameters (`utm_*`, `fbclid`, `gclid`, ...). URLs are de-duplicated
per article on the normalised form (first occurrence and its kind win). Columns: url (as written),
normalized_url, article_id, article_title, language, kind.

Counters: `pages` (every `<page>`), `articles_parsed`, `references_extracted` (rows written),
`references_ref` / `references_template` / `references_external_link` (rows by kind),
`references_duplicate` (same normalised URL again in one article), `references_unsupported`
(mailto:, irc:, news: ... or a URL that does not parse), `wikitext_bytes` (UTF-8 bytes of the
wikitext of parsed articles).

Speed (bench/wikipedia_parse.py, CPU time pinned to one core of a shared 2-core machine,
mwparserfromhell 0.7.2 with its C tokenizer): on the 106 articles of the enwiki sample (5.75 MB of
UTF-8 wikitext, long articles averaging 54 KB), parse + reference extraction + cleaning runs at
about 21 articles/s, 1.1-1.2 MB/s of wikitext; parsing is ~95% of it. The whole stage on that
sample (bz2 + XML + cleaning + parquet) takes ~4 s. At ~1.1 MB/s a core, ~100 GB of wikitext for
the 20 LLaMA languages is roughly 25 core-hours.
"""

from __future__ import annotations

import bz2
import html
import re
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from urllib.parse import quote, urlsplit, urlunsplit

import mwparserfromhell
import pyarrow as pa
from mwparserfromhell.nodes import (
    Argument,
    Comment,
    ExternalLink,
    Heading,
    HTMLEntity,
    Tag,
    Template,
    Text,
    Wikilink,
)

from stages.accounting import ShardStats
from stages.documents import WEB_DOCUMENT_SCHEMA, DroppedDocuments, ShardWriter, schema_with

LLAMA_LANGUAGES = ["bg", "ca", "cs", "da", "de", "en", "es", "fr", "hr", "hu", "it", "nl", "pl", "pt", "ro", "ru", "sl", "sr", "sv", "uk"]

WIKIPEDIA_SCHEMA = schema_with(
    WEB_DOCUMENT_SCHEMA,
    pa.field("title", pa.string()),
    pa.field("language", pa.string()),
)

REFERENCE_SCHEMA = pa.schema(
    [
        pa.field("url", pa.string(), nullable=False),
        pa.field("normalized_url", pa.string(), nullable=False),
        pa.field("article_id", pa.string(), nullable=False),
        pa.field("article_title", pa.string()),
        pa.field("language", pa.string()),
        pa.field("kind", pa.string(), nullable=False),
    ]
)

# Localized aliases that are valid for the File (6) namespace but do not appear in <namespaces>.
FILE_ALIASES = {
    "file", "image", "media", "bild", "datei", "картинка", "файл", "изображение", "imagen", "archivo",
    "fichier", "immagine", "afbeelding", "grafika", "plik", "imagem", "ficheiro", "arquivo", "imagine",
    "fișier", "slika", "датотека", "kép", "fájl", "obrázek", "soubor", "billede", "fil", "fitxer",
    "imatge", "datoteka", "зображення",
}
CATEGORY_ALIASES = {"category"}

# Tags removed with everything inside them.
DROP_TAGS = {
    "ref", "references", "table", "math", "chem", "ce", "gallery", "timeline", "imagemap", "score",
    "graph", "mapframe", "maplink", "templatestyles", "templatedata", "indicator", "categorytree",
    "syntaxhighlight", "source", "noinclude", "includeonly", "inputbox", "hiero", "style", "script",
    "section", "charinsert", "dynamicpagelist", "rss", "hr",
}
URL_RE = re.compile(r"(?:(?:https?|ftp):)?//[^\s<>\[\]{}|\"]+", re.IGNORECASE)
INTERLANGUAGE_RE = re.compile(r"^[a-z]{2,3}(?:-[a-z]{2,8})*$")
MAGIC_WORD_RE = re.compile(r"__[A-Z]{3,}__")
LEADING_SEPARATOR_RE = re.compile(r"\(\s*[,;]\s+")
EMPTY_BRACKETS_RE = re.compile(r"\s?\(\s*[,;:]?\s*\)")
HEADING_MARK = "\x00"
Q, Q2 = "'", "''"
# `''Iliad'''s` renders as "Iliad's": a run of three quotes before a possessive s keeps one.
POSSESSIVE_QUOTE_RE = re.compile(r"(?<=\w)'{3}(?=s\b)")
QUOTE_RUN_RE = re.compile(r"'{2,}")
TRACKING_PARAMS = {"fbclid", "gclid", "dclid", "msclkid", "mc_cid", "mc_eid", "_ga", "yclid", "igshid"}
DEFAULT_PORTS = {"http": 80, "https": 443, "ftp": 21}
ARCHIVE_RE = re.compile(r"^(?:https?:)?//(?:www\.)?web\.archive\.org/web/[0-9a-z_*]+/(.+)$", re.IGNORECASE)
SCHEME_RE = re.compile(r"^[a-z][a-z0-9+.-]*:", re.IGNORECASE)


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _ns_key(name: str) -> str:
    return name.replace("_", " ").strip().lower()


def _open(path: str):
    with open(path, "rb") as f:
        magic = f.read(3)
    return bz2.open(path, "rb") if magic == b"BZh" else open(path, "rb")


def language_of(dbname: str | None, base: str | None, xml_lang: str | None) -> str | None:
    if dbname and dbname.endswith("wiki"):
        return dbname[: -len("wiki")].replace("_", "-")
    if base:
        host = urlsplit(base).hostname or ""
        if host.endswith(".wikipedia.org"):
            return host.split(".")[0]
    return xml_lang


def original_url(url: str) -> str:
    """The cited page's own URL: a Wayback Machine copy (`web.archive.org/web/<time>/<url>`, 14% of
    the references in the enwiki sample) gives the page it archived; a protocol-relative `//host/`
    URL gets `https:`."""
    url = url.strip()
    while (archived := ARCHIVE_RE.match(url)) is not None:
        url = archived.group(1)
        if not SCHEME_RE.match(url):
            url = "http://" + url.lstrip("/")
    return "https:" + url if url.startswith("//") else url


def normalize_url(url: str) -> str | None:
    """The normalised form of an http(s)/ftp URL, or None for anything else: the archived page's
    URL for a Wayback Machine copy, http and https alike (a page is served under both; the editor
    cited whichever they saw), host lower-cased without `www.` or a default port, no trailing slash,
    fragment or tracking parameters."""
    url = original_url(url)
    try:
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        host = (parts.hostname or "").rstrip(".")
        port = parts.port
    except ValueError:
        return None
    if scheme not in DEFAULT_PORTS or not host:
        return None
    if host.startswith("www."):
        host = host[4:]
    netloc = host if port is None or port == DEFAULT_PORTS[scheme] else f"{host}:{port}"
    scheme = "https" if scheme == "http" else scheme
    path = parts.path.rstrip("/")
    query = "&".join(
        p for p in parts.query.split("&")
        if p and not (k := p.split("=", 1)[0].lower()).startswith("utm_") and k not in TRACKING_PARAMS
    )
    return urlunsplit((scheme, netloc, path, query, ""))


class _Cleaner:
    """Walks a parsed page once for its references and once for its text."""

    def __init__(self, drop_prefixes: set[str]):
        self.drop_prefixes = drop_prefixes

    # -- references ----------------------------------------------------------------------------
    def references(self, code) -> list[tuple[str, str]]:
        found: list[tuple[str, str]] = []
        self._refs(code, False, found)
        return found

    def _refs(self, code, in_ref: bool, found: list) -> None:
        for node in code.nodes:
            if isinstance(node, ExternalLink):
                url = str(node.url).strip()
                if "{{" not in url:
                    found.append((url, "ref" if in_ref else "external_link"))
                if node.title is not None:
                    self._refs(node.title, in_ref, found)
            elif isinstance(node, Tag):
                inner = in_ref or str(node.tag).strip().lower() == "ref"
                if node.contents is not None:
                    self._refs(node.contents, inner, found)
            elif isinstance(node, Template):
                for param in node.params:
                    if str(param.name).strip().lower().endswith("url"):
                        m = URL_RE.search(str(param.value).strip())
                        if m:
                            found.append((m.group(0), "ref" if in_ref else "template"))
                    else:
                        self._refs(param.value, in_ref, found)
            elif isinstance(node, Wikilink):
                if node.text is not None:
                    self._refs(node.text, in_ref, found)
            elif isinstance(node, Heading):
                self._refs(node.title, in_ref, found)

    # -- text ----------------------------------------------------------------------------------
    def text(self, code) -> str:
        out: list[str] = []
        self._text(code, out)
        return _finish("".join(out))

    def _text(self, code, out: list) -> None:
        for node in code.nodes:
            if isinstance(node, Text):
                out.append(_unquote(node.value))
            elif isinstance(node, Wikilink):
                self._link(node, out)
            elif isinstance(node, Tag):
                self._tag(node, out)
            elif isinstance(node, ExternalLink):
                if node.brackets and node.title is not None:
                    self._text(node.title, out)
            elif isinstance(node, HTMLEntity):
                out.append(node.normalize())
            elif isinstance(node, Heading):
                title: list[str] = []
                self._text(node.title, title)
                line = " ".join("".join(title).split())
                if line:
                    out.append(f"\n{HEADING_MARK}{node.level}{HEADING_MARK}{line}\n")
            elif isinstance(node, (Template, Comment, Argument)):
                pass
            # anything else (unknown node types) is dropped

    def _link(self, node: Wikilink, out: list) -> None:
        title = str(node.title).strip()
        visible = title.startswith(":")
        if visible:
            title = title[1:].strip()
        elif ":" in title:
            prefix = _ns_key(title.split(":", 1)[0])
            if prefix in self.drop_prefixes:
                return
            if node.text is None and INTERLANGUAGE_RE.match(prefix):
                return
        if node.text is not None:
            self._text(node.text, out)
        else:
            out.append(html.unescape(title))

    def _tag(self, node: Tag, out: list) -> None:
        name = str(node.tag).strip().lower()
        if name in DROP_TAGS or node.wiki_markup == "{|":
            return
        if name == "br":
            out.append("\n")
            return
        if node.contents is not None:
            self._text(node.contents, out)


def _unquote(text: str) -> str:
    """Remove bold/italic quote marks (parsed with skip_style_tags, see the docstring)."""
    if Q2 not in text:
        return text
    text = POSSESSIVE_QUOTE_RE.sub(Q, text)
    return QUOTE_RUN_RE.sub(lambda m: Q if len(m.group(0)) == 4 else "", text)


def _finish(text: str) -> str:
    text = MAGIC_WORD_RE.sub("", text)
    text = EMPTY_BRACKETS_RE.sub("", text)
    text = LEADING_SEPARATOR_RE.sub("(", text)
    lines = [line.strip() for line in text.split("\n")]
    levels = [int(line.split(HEADING_MARK)[1]) if line.startswith(HEADING_MARK) else 0 for line in lines]
    out: list[str] = []
    for i, line in enumerate(lines):
        if levels[i]:
            # Keep a heading only if body text follows before the next heading of its level or higher.
            for j in range(i + 1, len(lines)):
                if levels[j] and levels[j] <= levels[i]:
                    break
                if not levels[j] and lines[j]:
                    out.append(line.split(HEADING_MARK, 2)[2])
                    break
        elif line:
            out.append(line)
        elif out and out[-1]:
            out.append("")
    return "\n".join(out).strip()


def _article_url(base_url: str, title: str) -> str:
    return f"{base_url}/wiki/" + quote(title.replace(" ", "_"), safe="/:()!,'*@$;-._~")


def _pages(stream) -> Iterator[tuple[str, object]]:
    """Yield ("siteinfo", dict) and ("page", dict) items; ET.ParseError / EOFError propagate."""
    context = ET.iterparse(stream, events=("start", "end"))
    root = None
    for event, elem in context:
        if event == "start":
            if root is None:
                root = elem
                yield "root", {"xml_lang": elem.get("{http://www.w3.org/XML/1998/namespace}lang")}
            continue
        name = _local(elem.tag)
        if name == "siteinfo":
            info = {"namespaces": {}}
            for child in elem:
                cname = _local(child.tag)
                if cname in ("dbname", "base", "sitename"):
                    info[cname] = (child.text or "").strip()
                elif cname == "namespaces":
                    for ns in child:
                        info["namespaces"][int(ns.get("key"))] = (ns.text or "").strip()
            yield "siteinfo", info
            root.clear()
        elif name == "page":
            page = {"title": "", "ns": "0", "id": "", "redirect": False, "text": "", "timestamp": None}
            for child in elem:
                cname = _local(child.tag)
                if cname in ("title", "ns", "id"):
                    page[cname] = (child.text or "").strip()
                elif cname == "redirect":
                    page["redirect"] = True
                elif cname == "revision":
                    for rchild in child:
                        rname = _local(rchild.tag)
                        if rname == "timestamp":
                            page["timestamp"] = (rchild.text or "").strip()
                        elif rname == "text":
                            page["text"] = rchild.text or ""
            yield "page", page
            root.clear()


def _safe(items: Iterator[tuple[str, object]]) -> Iterator[tuple[str, object]]:
    """Pass items through; a damaged or truncated dump ends the stream with one ("corrupt", None)."""
    try:
        yield from items
    except (ET.ParseError, EOFError, OSError, ValueError, UnicodeError) as error:
        yield "corrupt", error


def _open_pages(path: str) -> Iterator[tuple[str, object]]:
    with _open(path) as stream:
        yield from _pages(stream)


def extract_wikipedia(
    dump_path: str,
    output_path: str,
    references_path: str,
    *,
    languages: list[str] = LLAMA_LANGUAGES,
    min_text_chars: int = 200,
    dropped_path: str | None = None,
) -> ShardStats:
    stats = ShardStats()
    selected = set(languages)
    state = {"xml_lang": None, "language": None, "dbname": None, "base_url": None, "cleaner": None}

    def resolve(info: dict | None) -> None:
        info = info or {}
        language = language_of(info.get("dbname"), info.get("base"), state["xml_lang"]) or "unknown"
        state["language"] = language
        state["dbname"] = info.get("dbname") or f"{language.replace('-', '_')}wiki"
        base = info.get("base")
        host = urlsplit(base).netloc if base else ""
        state["base_url"] = f"https://{host}" if host else f"https://{language}.wikipedia.org"
        names = info.get("namespaces", {})
        prefixes = {_ns_key(names[k]) for k in (-2, 6, 14) if names.get(k)} | FILE_ALIASES | CATEGORY_ALIASES
        state["cleaner"] = _Cleaner(prefixes)

    def document(page: dict, text: str) -> dict:
        return {
            "id": f"wikipedia/{state['dbname']}/{page['id']}",
            "source": "wikipedia",
            "url": _article_url(state["base_url"], page["title"]),
            "warc_record_id": None,
            "date": page["timestamp"],
            "text": text,
            "title": page["title"],
            "language": state["language"],
        }

    def drop(dropped: DroppedDocuments, doc: dict, reason: str) -> None:
        stats.drop(reason)
        dropped.add(doc, reason)

    with ShardWriter(output_path, WIKIPEDIA_SCHEMA) as writer, ShardWriter(
        references_path, REFERENCE_SCHEMA
    ) as refs, DroppedDocuments(dropped_path, WIKIPEDIA_SCHEMA) as dropped:
        for kind, item in _safe(_open_pages(dump_path)):
            if kind == "corrupt":
                # Damaged or truncated dump: the remainder counts as one corrupt document.
                stats.docs_in += 1
                stats.drop("corrupt_xml")
                dbname = state["dbname"] or "unknown"
                dropped.add(
                    {"id": f"wikipedia/{dbname}/corrupt", "source": "wikipedia", "url": None, "warc_record_id": None,
                     "date": None, "text": "", "title": None, "language": state["language"]},
                    "corrupt_xml",
                )
                break
            if kind == "root":
                state["xml_lang"] = item["xml_lang"]
                continue
            if kind == "siteinfo":
                resolve(item)
                continue
            if state["cleaner"] is None:  # a dump without <siteinfo>
                resolve(None)
            page = item
            stats.docs_in += 1
            stats.counters["pages"] += 1
            raw = page["text"]
            if state["language"] not in selected:
                drop(dropped, document(page, raw), "language_not_selected")
                continue
            if page["redirect"] or raw.lstrip()[:9].upper() == "#REDIRECT":
                drop(dropped, document(page, raw), "redirect")
                continue
            if page["ns"] != "0":
                drop(dropped, document(page, raw), f"namespace_{page['ns']}")
                continue
            try:
                code = mwparserfromhell.parse(raw, skip_style_tags=True)
                urls = state["cleaner"].references(code)
                text = state["cleaner"].text(code)
            except Exception:
                drop(dropped, document(page, raw), "parse_error")
                continue
            stats.counters["articles_parsed"] += 1
            stats.counters["wikitext_bytes"] += len(raw.encode("utf-8"))
            doc = document(page, text)
            seen: set[str] = set()
            for url, ref_kind in urls:
                normalized = normalize_url(url)
                if normalized is None:
                    stats.counters["references_unsupported"] += 1
                    continue
                if normalized in seen:
                    stats.counters["references_duplicate"] += 1
                    continue
                seen.add(normalized)
                stats.counters["references_extracted"] += 1
                stats.counters[f"references_{ref_kind}"] += 1
                refs.write({
                    "url": url,
                    "normalized_url": normalized,
                    "article_id": doc["id"],
                    "article_title": page["title"],
                    "language": state["language"],
                    "kind": ref_kind,
                })
            if not text:
                drop(dropped, doc, "empty_text")
            elif len(text) < min_text_chars:
                drop(dropped, doc, "text_too_short")
            else:
                stats.docs_out += 1
                writer.write(doc)
    stats.bytes_out = writer.bytes_written
    return stats.check()
