"""arXiv: LaTeX sources to documents, one shard of papers in, one parquet shard of documents out.

Input (`input_path`), detected by content, not by name:
- a directory holding one paper's source files; the paper id is the directory name up to the
  first `_` (`1703.09824_PracticalLombScargle` -> `1703.09824`);
- a gzip file: a gzipped single `.tex` (how arXiv serves single-file papers, `1703.09824.gz`) or
  a gzipped tar of one paper's sources (`.tar.gz`, `.tgz`); the id is the file name less its
  extensions and anything from the first `_`;
- an uncompressed tar: one paper's sources, unless its first file is named like `<id>.gz` or
  `<id>.pdf`, which makes it an arXiv bulk source tar (`arXiv_src_YYMM_NNN.tar`) whose every file
  member is one paper: a gzipped single `.tex` or a gzipped tar (told apart by content), or a PDF.
  Old-style ids are rewritten to their canonical form (`hep-th9901001.gz` -> `hep-th/9901001`).
  The document id is `arxiv/<paper id>`.

Safety: nothing is ever written to disk; archives are read in memory. Gzip is decompressed with a
running cap (`max_paper_bytes`; the header is never trusted), a `.tex` file over `max_file_bytes`
is not read, and a paper stops taking files after `max_members`. Refused members are counters:
`members_refused_traversal` (absolute path or a `..` component), `members_refused_link` (symlink or
hard link, in a tar or in a directory: never followed), `members_refused_special` (device, fifo,
anything not a regular file or directory), `members_refused_too_large` (a `.tex` over
`max_file_bytes`), `members_refused_too_many` (files past `max_members` in one paper).

Accounting: every paper found is one docs_in, written or dropped for one of these reasons:
    corrupt_gzip        a gzip stream (the input or a bulk member) truncated or not gzip at all
                        (a bulk member named `.gz` without the gzip magic counts here)
    corrupt_tar         a tar (the input, a paper's tar, a bulk member) that cannot be read, is
                        truncated or has bytes after its last member that are not zero padding
                        (a `.tar`/`.tgz`/`.tar.gz` file whose content is not a tar counts here);
                        in a bulk tar the papers before the damage are kept and the damage after
                        the last readable member counts as one more paper, `<file name>/corrupt`
    corrupt_empty       an empty file or member
    paper_too_large     the paper's decompressed bytes (or its `.tex` files together) exceed
                        max_paper_bytes, or a single-file paper exceeds max_file_bytes
    pdf_only            a PDF instead of sources (a bulk `.pdf` member, or `%PDF` content)
    postscript_only     PostScript instead of sources (`%!PS` content)
    not_text            a single-file paper with NUL bytes (binary, not LaTeX)
    duplicate_paper     a paper id already seen in this shard (the first one is kept)
    no_tex_files        no readable `.tex` file
    no_main_file        no `.tex` file with an uncommented `\\documentclass` or `\\documentstyle`
                        (plain TeX, HTML and other non-LaTeX submissions)
    no_document_body    neither a sectioning command nor `\\begin{document}` in the main file
    empty_text          nothing left after cleaning
    text_too_short      fewer than `min_text_chars` characters left after cleaning
    processing_error    the LaTeX processing raised (a bug to report: none is known)

Main file: among the `.tex` files with an uncommented `\\documentclass`/`\\documentstyle`, the
first by (1) has `\\begin{document}`, (2) is not `\\input`/`\\include`d by another such file,
(3) is named `main.tex` or `ms.tex`, (4) larger file, (5) path in code-point order. (The HoTT book
has seven files with `\\documentclass`; `main.tex` is `\\input` by wrappers that have none.)

Processing (LLaMA's arXiv recipe), per paper:
1. Decode each `.tex` as UTF-8 (a BOM dropped), else latin-1; line ends normalised to `\\n`.
2. Remove comments: `%` to the end of the line unless escaped (`\\%`; `\\\\%` is a line break then a
   comment). A line that is only a comment goes with its line break; a comment after a space
   leaves the line break; a comment glued to the text before it (`word%`, `{%`) also takes the
   line break and the next line's indentation, as TeX does (authors write it for that), unless
   a blank line follows. `%` inside `\\verb`, verbatim/lstlisting/minted environments and
   `\\url{}`/`\\href{}` is kept. `comment` environments and `\\iffalse`/`\\if0` ... `\\fi` blocks
   are removed (nested conditionals counted; an `\\else` branch is kept).
3. Resolve `\\input{f}`, `\\input f`, `\\include{f}` recursively (with or without `.tex`, relative
   to the main file's folder, then to the including file's), with a cycle guard, a depth limit
   and a size cap; an unresolved one is removed.
4. Cut everything after `\\end{document}`.
5. Expand user macros in one left-to-right pass, as TeX does: a definition applies from where it
   stands to the end of its group (braces, `\\begin`..`\\end`, `\\bgroup`/`\\begingroup`), unless
   global (`\\gdef`, `\\xdef`, `\\global`); a later `\\renewcommand` replaces it. Handled:
   `\\newcommand`, `\\renewcommand`, `\\providecommand`, `\\DeclareRobustCommand` (starred too;
   `[n]` arguments and a default for the first), `\\def`/`\\gdef`/`\\edef`/`\\xdef` (undelimited
   and delimited parameter text such as `#1.#2\\par`, with `\\global`/`\\long`/`\\outer`/
   `\\protected` prefixes), `\\let` (a copy of a user macro, else an alias),
   `\\DeclareMathOperator` (to `\\operatorname{..}`). The definitions are removed from the text.
   An expansion is read again, so nested macros expand, and it may take its arguments from the
   text after it (`\\def\\pizero{\\trunc0}`). Not expanded (the definition is still removed):
   macros whose body is TeX programming (an `@` name, `\\if..`/`\\else`/`\\fi`, `\\expandafter`,
   `\\csname`, a definition inside), and the structural commands (sectioning, `\\begin`, `\\end`,
   `\\appendix`, bibliography, `\\input`, `\\include`, `\\item`) even when the paper redefines
   them. Verbatim text is not expanded. Bounds, past which a macro is left as written:
   `max_macro_depth` nested expansions, `max_macro_expansions` per paper, the text growing to
   4x + 1 MB, and 10x + 1 M characters read for arguments (unclosed braces read again and again).
   No PyPI library does this while keeping LaTeX: pylatexenc and TexSoup parse, plasTeX renders,
   arxiv-latex-cleaner and Data-Juicer's expand_macro_mapper (RedPajama's) take no arguments.
6. Keep from the first sectioning command after `\\begin{document}` (`\\part`, `\\chapter`,
   `\\section`, `\\subsection`, `\\subsubsection`, `\\paragraph`, `\\subparagraph`, starred or not,
   followed by `[` or `{`). A paper without one keeps its whole body after `\\begin{document}`
   (counter `no_section_command`).
7. Remove the bibliography: a `thebibliography` environment, `\\bibliography{..}` or
   `\\printbibliography`, and what follows it, except that the text from the next `\\appendix`,
   appendix environment or sectioning command on is kept: appendices and supplementary sections
   placed after the references are the paper's own text. `\\bibliographystyle{..}` is removed.
8. Trailing spaces stripped, runs of blank lines collapsed into one.
LaTeX is otherwise kept, as LLaMA did.

Counters (tallies that are not documents): `tex_files_read`, `tex_files_binary` (a `.tex` with NUL
bytes, skipped), `latin1_fallbacks`, `comments_removed`, `comment_environments_removed`,
`iffalse_blocks_removed`, `files_included` (files inlined into documents, the main file not
counted), `inputs_missing`, `inputs_not_tex` (the file exists but is not `.tex`: figures, `.bbl`,
`.tikz`), `inputs_cyclic`, `inputs_too_deep` (past `max_include_depth`), `inputs_over_limit` (the
flattened text would pass max_paper_bytes), `macros_defined`, `macros_expanded`,
`macros_not_expanded` (programming or structural definitions removed but not applied),
`definitions_unparsed` (a definition command whose syntax was not understood: left in the text),
`macro_args_missing` (a use whose arguments were not found: left as written),
`macro_depth_limit`, `macro_budget_exhausted` (papers that hit a bound of step 5 other than the
depth), `no_section_command`, `bibliographies_removed`, `sections_after_bibliography_kept`, plus
the `members_refused_*` counters above.

Document fields: `paper_id`, `main_file` (path inside the paper's sources), `files_included`
(`.tex` files in the document, the main file included), `tex_files` (`.tex` files in the sources).

Speed (bench/arxiv.py, CPU time on one core of the shared 2-core machine): 4.8-7.9 MB/s of LaTeX
(every `.tex` byte in the sources); the HoTT book (1.7 MB, 19,000 macro expansions) takes 0.36 s,
the two papers 4-17 ms; a bulk tar of the samples gzipped, 30 papers, 18.7 MB of LaTeX: 8.5
papers/s, 5.3 MB/s. Macro expansion is about half of the time, comments and `\\input`s a third.
"""

from __future__ import annotations

import gzip
import io
import os
import posixpath
import re
import tarfile
import zlib
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import lru_cache, partial
from pathlib import Path

import pyarrow as pa

from stages.accounting import ShardStats
from stages.documents import DOCUMENT_SCHEMA, DroppedDocuments, ShardWriter, schema_with

SOURCE = "arxiv"
ARXIV_SCHEMA = schema_with(
    DOCUMENT_SCHEMA,
    pa.field("paper_id", pa.string(), nullable=False),
    pa.field("main_file", pa.string()),
    pa.field("files_included", pa.int32()),
    pa.field("tex_files", pa.int32()),
)

GZIP_MAGIC = b"\x1f\x8b"
NEW_ID = r"\d{4}\.\d{4,5}(?:v\d+)?"
OLD_ID = r"[a-z][a-z-]*(?:\.[A-Z]{2})?\d{7}(?:v\d+)?"
BULK_MEMBER_RE = re.compile(rf"(?:^|/)(?:{NEW_ID}|{OLD_ID})\.(?:gz|pdf)$")
OLD_ID_RE = re.compile(r"([a-z][a-z-]*(?:\.[A-Z]{2})?)(\d{7}(?:v\d+)?)")
TAR_DAMAGE = (tarfile.TarError, EOFError, OSError, zlib.error)

# Comment removal: the first alternatives are copied through, the last three are comments.
COMMENT_RE = re.compile(
    r"(?P<keep>\\begin\{(?P<env>verbatim\*?|Verbatim|lstlisting|minted)\}.*?\\end\{(?P=env)\}"
    r"|\\verb\*?(?P<delim>[^A-Za-z\s*])[^\n]*?(?P=delim)"
    r"|\\(?:url|href)\{[^{}\n]*\}"
    r"|\\[\\%])"
    r"|(?P<env_comment>\\begin\{comment\}.*?\\end\{comment\}[ \t]*\n?)"
    r"|(?P<line>^[ \t]*%[^\n]*\n?)"
    r"|(?P<glue>(?<=[^ \t\n])%[^\n]*\n(?![ \t]*\n)[ \t]*)"
    r"|(?P<trail>[ \t]*%[^\n]*)",
    re.S | re.M,
)
IFFALSE_RE = re.compile(r"\\if(?:false(?![A-Za-z@])|0(?!0))")
CONDITIONAL_RE = re.compile(r"\\(if[A-Za-z@]*|else|fi)(?![A-Za-z@])")
DOCCLASS_LINE_RE = re.compile(r"^[^%\n]*\\document(?:class|style)(?![A-Za-z@])", re.M)
BEGIN_DOCUMENT_RE = re.compile(r"\\begin\s*\{document\}")
END_DOCUMENT_RE = re.compile(r"\\end\s*\{document\}")
INPUT_RE = re.compile(r"\\(input|include)(?![A-Za-z@])\s*(?:\{\s*([^{}]*?)\s*\}|([^\s{}\\%]+))")
SECTION = r"\\(?:part|chapter|section|subsection|subsubsection|paragraph|subparagraph)\*?\s*[\[{]"
SECTION_RE = re.compile(SECTION)
BIBLIOGRAPHY_RE = re.compile(
    r"\\begin\s*\{thebibliography\}|\\bibliography\s*\{|\\printbibliography(?![A-Za-z@])"
)
END_BIBLIOGRAPHY_RE = re.compile(r"\\end\s*\{thebibliography\}")
BIBLIOGRAPHY_STYLE_RE = re.compile(r"\\bibliographystyle\s*\{[^{}]*\}[ \t]*\n?")
AFTER_BIBLIOGRAPHY_RE = re.compile(
    rf"\\appendix(?![A-Za-z@])|\\begin\s*\{{(?:appendix|appendices)\}}|{SECTION}"
)
BLANK_LINES_RE = re.compile(r"\n{3,}")
TRAILING_SPACE_RE = re.compile(r"[ \t]+$", re.M)


class Dropped(Exception):
    """A paper leaves the shard for a named reason; `fields` are what is known of it."""

    def __init__(self, reason: str, **fields):
        super().__init__(reason)
        self.reason = reason
        self.fields = fields


@dataclass(frozen=True)
class Limits:
    max_file_bytes: int
    max_paper_bytes: int
    max_members: int
    max_include_depth: int
    max_macro_depth: int
    max_macro_expansions: int


@dataclass
class Paper:
    """One paper's sources: the raw `.tex` files and the path of every regular file."""

    paper_id: str
    tex: dict[str, bytes] = field(default_factory=dict)
    names: set[str] = field(default_factory=set)


@dataclass(frozen=True)
class Broken:
    """A paper found in the input that cannot be read at all."""

    paper_id: str
    reason: str


def extract_arxiv(
    input_path: str,
    output_path: str,
    *,
    dropped_path: str | None = None,
    min_text_chars: int = 500,
    max_file_bytes: int = 16 << 20,
    max_paper_bytes: int = 256 << 20,
    max_members: int = 10_000,
    max_include_depth: int = 16,
    max_macro_depth: int = 32,
    max_macro_expansions: int = 250_000,
) -> ShardStats:
    """Turn the papers in `input_path` (a paper's folder, a gzip, a tar or a bulk tar) into
    documents in a parquet shard at `output_path`; dropped papers go to `dropped_path`."""
    stats = ShardStats()
    limits = Limits(
        max_file_bytes, max_paper_bytes, max_members, max_include_depth, max_macro_depth, max_macro_expansions
    )
    seen: set[str] = set()
    with ShardWriter(output_path, ARXIV_SCHEMA) as writer, DroppedDocuments(dropped_path, ARXIV_SCHEMA) as dropped:
        for paper in read_papers(input_path, limits, stats.counters):
            stats.docs_in += 1
            doc = {"id": f"{SOURCE}/{paper.paper_id}", "source": SOURCE, "text": "", "paper_id": paper.paper_id,
                   "main_file": None, "files_included": 0, "tex_files": 0}
            try:
                if isinstance(paper, Broken):
                    raise Dropped(paper.reason)
                if paper.paper_id in seen:
                    raise Dropped("duplicate_paper")
                seen.add(paper.paper_id)
                doc |= paper_document(paper, limits, stats.counters, min_text_chars)
            except Dropped as drop:
                reason, fields = drop.reason, drop.fields
            except Exception:  # LaTeX this code does not survive costs one paper, not the shard
                reason, fields = "processing_error", {}
            else:
                stats.docs_out += 1
                writer.write(doc)
                continue
            stats.drop(reason)
            dropped.add(doc | fields, reason)
    stats.bytes_out = writer.bytes_written
    return stats.check()


# -- reading papers -------------------------------------------------------------------------------


def paper_id_from_name(name: str) -> str:
    """`1703.09824.gz` -> `1703.09824`; `hep-th9901001.gz` -> `hep-th/9901001`;
    `1703.09824_PracticalLombScargle` -> `1703.09824`."""
    base = posixpath.basename(name.rstrip("/"))
    for suffix in (".tar.gz", ".tgz", ".tar", ".gz", ".pdf", ".tex"):
        if base.lower().endswith(suffix):
            base = base[: -len(suffix)]
            break
    base = base.split("_", 1)[0] or base
    old = OLD_ID_RE.fullmatch(base)
    return f"{old.group(1)}/{old.group(2)}" if old else base


def read_papers(input_path: str, limits: Limits, counters: Counter) -> Iterator[Paper | Broken]:
    """Yield every paper of the input, readable (Paper) or not (Broken)."""
    path = Path(input_path)
    paper_id = paper_id_from_name(path.name)
    if path.is_dir():
        yield _read_directory(path, paper_id, limits, counters)
        return
    with open(path, "rb") as stream:
        head = stream.read(tarfile.BLOCKSIZE)
    if _is_tar(head):
        yield from _read_tar_file(path, limits, counters)
    elif path.stat().st_size > limits.max_paper_bytes:
        yield Broken(paper_id, "paper_too_large")
    else:
        yield _paper_from_blob(paper_id, path.read_bytes(), path.name, limits, counters)


def _is_tar(head: bytes) -> bool:
    """Whether `head` starts with a valid tar header block (ustar, GNU or old v7: the checksum)."""
    try:
        tarfile.TarInfo.frombuf(head[: tarfile.BLOCKSIZE], "utf-8", "surrogateescape")
    except tarfile.HeaderError:
        return False
    return True


def _read_tar_file(path: Path, limits: Limits, counters: Counter) -> Iterator[Paper | Broken]:
    """One paper's tar, or a bulk tar (its first file named like `<arXiv id>.gz`/`.pdf`)."""
    size = path.stat().st_size
    with open(path, "rb") as stream:
        try:
            tar = tarfile.open(fileobj=stream, mode="r:")
            first = next((m for m in tar if not m.isdir()), None)
        except TAR_DAMAGE:
            yield Broken(paper_id_from_name(path.name), "corrupt_tar")
            return
        if first is None or not BULK_MEMBER_RE.search(first.name):
            paper_id = paper_id_from_name(path.name)
            try:
                paper = _paper_from_tar(paper_id, tar, limits, counters)
                damaged = _damaged_after(tar, stream, size)
            except TAR_DAMAGE:
                damaged = True
            yield Broken(paper_id, "corrupt_tar") if damaged else paper
            return
        try:
            yield from _bulk_papers(tar, limits, counters)
            damaged = _damaged_after(tar, stream, size)
        except TAR_DAMAGE:  # a cut or unreadable member, or a header tarfile rejects
            damaged = True
        if damaged:
            yield Broken(f"{path.name}/corrupt", "corrupt_tar")


def _bulk_papers(tar: tarfile.TarFile, limits: Limits, counters: Counter) -> Iterator[Paper | Broken]:
    """The papers of an arXiv bulk source tar, each file member one paper."""
    for member in tar:
        if member.isdir():
            continue
        refusal = _refusal(member.name, member.issym() or member.islnk(), not member.isfile())
        if refusal:
            counters[refusal] += 1
            continue
        paper_id = paper_id_from_name(member.name)
        if member.name.lower().endswith(".pdf"):
            yield Broken(paper_id, "pdf_only")
            continue
        if member.size > limits.max_paper_bytes:
            yield Broken(paper_id, "paper_too_large")
            continue
        yield _paper_from_blob(paper_id, tar.extractfile(member).read(), member.name, limits, counters)


def _damaged_after(tar: tarfile.TarFile, stream: io.IOBase, size: int) -> bool:
    """Whether the tar ended early: its last member runs past the end of the file, or bytes other
    than zero padding follow it (tarfile stops silently at a cut or garbled header)."""
    if tar.offset > size:
        return True
    stream.seek(tar.offset)
    while chunk := stream.read(1 << 20):
        if chunk.strip(b"\0"):
            return True
    return False


def _paper_from_blob(paper_id: str, blob: bytes, name: str, limits: Limits, counters: Counter) -> Paper | Broken:
    """A paper from one file's bytes: gzip or not, then a tar or a single `.tex`."""
    if not blob:
        return Broken(paper_id, "corrupt_empty")
    if blob.startswith(GZIP_MAGIC):
        try:
            data = _gunzip(blob, limits.max_paper_bytes)
        except (EOFError, OSError, zlib.error):
            return Broken(paper_id, "corrupt_gzip")
        if data is None:
            return Broken(paper_id, "paper_too_large")
        if not data:
            return Broken(paper_id, "corrupt_empty")
        name = name[:-3] if name.lower().endswith(".gz") else name
    elif name.lower().endswith(".gz"):
        return Broken(paper_id, "corrupt_gzip")
    else:
        data = blob
    if _is_tar(data):
        stream = io.BytesIO(data)
        try:
            tar = tarfile.open(fileobj=stream, mode="r:")
            paper = _paper_from_tar(paper_id, tar, limits, counters)
        except TAR_DAMAGE:
            return Broken(paper_id, "corrupt_tar")
        if isinstance(paper, Paper) and _damaged_after(tar, stream, len(data)):
            return Broken(paper_id, "corrupt_tar")
        return paper
    if name.lower().endswith((".tar", ".tgz")):
        return Broken(paper_id, "corrupt_tar")
    if data.startswith(b"%PDF"):
        return Broken(paper_id, "pdf_only")
    if data.startswith(b"%!PS"):
        return Broken(paper_id, "postscript_only")
    if b"\0" in data:
        return Broken(paper_id, "not_text")
    if len(data) > limits.max_file_bytes:
        return Broken(paper_id, "paper_too_large")
    stem = posixpath.basename(name)
    return Paper(paper_id, {stem if stem.lower().endswith(".tex") else f"{stem}.tex": data}, {stem})


def _gunzip(blob: bytes, cap: int) -> bytes | None:
    """Decompress (all gzip members) with a running cap; None if the output passes `cap` bytes."""
    with gzip.GzipFile(fileobj=io.BytesIO(blob)) as stream:
        data = stream.read(cap + 1)
    return None if len(data) > cap else data


class _Collector:
    """Gathers one paper's files from a tar or a folder, refusing unsafe members."""

    def __init__(self, paper_id: str, limits: Limits, counters: Counter):
        self.paper = Paper(paper_id)
        self.limits = limits
        self.counters = counters
        self.members = 0
        self.tex_bytes = 0

    def add(self, name: str, link: bool, special: bool, size: int, read: Callable[[], bytes]) -> None:
        self.members += 1
        refusal = _refusal(name, link, special)
        if self.members > self.limits.max_members:
            refusal = "members_refused_too_many"
        elif refusal is None and name.lower().endswith(".tex") and size > self.limits.max_file_bytes:
            refusal = "members_refused_too_large"
        if refusal:
            self.counters[refusal] += 1
            return
        name = posixpath.normpath(name)
        self.paper.names.add(name)
        if name.lower().endswith(".tex"):
            self.tex_bytes += size
            if self.tex_bytes > self.limits.max_paper_bytes:
                raise Dropped("paper_too_large")
            self.paper.tex[name] = read()


def _refusal(name: str, link: bool, special: bool) -> str | None:
    """Why a member may not be taken, or None."""
    if name.startswith(("/", "\\")) or re.match(r"[A-Za-z]:", name) or ".." in name.replace("\\", "/").split("/"):
        return "members_refused_traversal"
    if link:
        return "members_refused_link"
    if special:
        return "members_refused_special"
    return None


def _paper_from_tar(paper_id: str, tar: tarfile.TarFile, limits: Limits, counters: Counter) -> Paper | Broken:
    collector = _Collector(paper_id, limits, counters)
    try:
        for member in tar:
            if not member.isdir():
                read = partial(_read_member, tar, member)
                collector.add(member.name, member.issym() or member.islnk(), not member.isfile(), member.size, read)
    except Dropped as drop:
        return Broken(paper_id, drop.reason)
    return collector.paper


def _read_member(tar: tarfile.TarFile, member: tarfile.TarInfo) -> bytes:
    return tar.extractfile(member).read()


def _read_directory(root: Path, paper_id: str, limits: Limits, counters: Counter) -> Paper | Broken:
    collector = _Collector(paper_id, limits, counters)

    def walk(folder: Path, prefix: str) -> None:
        for entry in sorted(os.scandir(folder), key=lambda e: e.name):
            name = prefix + entry.name
            if entry.is_dir(follow_symlinks=False):
                walk(Path(entry.path), name + "/")
                continue
            size = entry.stat(follow_symlinks=False).st_size
            read = partial(_read_capped, entry.path, size)
            collector.add(name, entry.is_symlink(), not entry.is_file(follow_symlinks=False), size, read)

    try:
        walk(root, "")
    except Dropped as drop:
        return Broken(paper_id, drop.reason)
    return collector.paper


def _read_capped(path: str, size: int) -> bytes:
    with open(path, "rb") as stream:
        return stream.read(size)  # a file that grew since stat() is not read past its checked size


# -- LaTeX to text ----------------------------------------------------------------------------------


def paper_document(paper: Paper, limits: Limits, counters: Counter, min_text_chars: int) -> dict:
    """The document fields of a readable paper; raises Dropped."""
    sources = _Sources(paper, counters)
    fields = {"tex_files": len(sources.raw)}
    if not sources.raw:
        raise Dropped("no_tex_files", **fields)
    main = main_file(sources)
    if main is None:
        raise Dropped("no_main_file", **fields)
    fields["main_file"] = main
    flat, included = flatten(main, sources, limits, counters)
    fields["files_included"] = len(included)
    end = END_DOCUMENT_RE.search(flat)
    expanded = MacroExpander(limits, counters).expand(flat[: end.start()] if end else flat)
    body = document_body(expanded, counters)
    if body is None:
        raise Dropped("no_document_body", **fields)
    text = tidy(remove_bibliography(body, counters))
    fields["text"] = text
    if not text:
        raise Dropped("empty_text", **fields)
    if len(text) < min_text_chars:
        raise Dropped("text_too_short", **fields)
    return fields


class _Sources:
    """A paper's `.tex` files, decoded and stripped of comments on first use."""

    def __init__(self, paper: Paper, counters: Counter):
        self.counters = counters
        self.names = paper.names
        self.raw: dict[str, bytes] = {}
        for name, data in paper.tex.items():
            if b"\0" in data:
                counters["tex_files_binary"] += 1
            else:
                self.raw[name] = data
        counters["tex_files_read"] += len(self.raw)
        self._decoded: dict[str, str] = {}
        self._stripped: dict[str, str] = {}

    def decoded(self, name: str) -> str:
        if name not in self._decoded:
            self._decoded[name] = decode(self.raw[name], self.counters)
        return self._decoded[name]

    def text(self, name: str) -> str:
        """The file's text without comments or `\\iffalse` blocks."""
        if name not in self._stripped:
            text = remove_comments(self.decoded(name), self.counters)
            self._stripped[name] = remove_iffalse(text, self.counters)
        return self._stripped[name]


def decode(data: bytes, counters: Counter) -> str:
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        counters["latin1_fallbacks"] += 1
        text = data.decode("latin-1")
    return text.replace("\r\n", "\n").replace("\r", "\n")


def remove_comments(text: str, counters: Counter) -> str:
    def replace(m: re.Match) -> str:
        if m.group("keep"):
            return m.group(0)
        if m.group("env_comment"):
            counters["comment_environments_removed"] += 1
        else:
            counters["comments_removed"] += 1
        return ""

    return COMMENT_RE.sub(replace, text)


def remove_iffalse(text: str, counters: Counter) -> str:
    """Remove `\\iffalse ... \\fi` (the usual way to comment out a block), nested conditionals
    counted; an `\\else` branch, which TeX does read, is kept. An unclosed one is left."""
    kept: list[str] = []
    pos = 0
    while (start := IFFALSE_RE.search(text, pos)) is not None:
        depth, otherwise, end = 0, None, None
        for m in CONDITIONAL_RE.finditer(text, start.start()):
            if m.group(1) == "fi":
                depth -= 1
                if depth == 0:
                    end = m
                    break
            elif m.group(1) == "else":
                if depth == 1:
                    otherwise = m.end()
            elif m.group(1) not in ("iff", "ifthenelse"):  # a symbol, a LaTeX macro: no \\fi
                depth += 1
        if end is None:
            break
        kept.append(text[pos:start.start()])
        if otherwise is not None:
            kept.append(text[otherwise:end.start()])
        counters["iffalse_blocks_removed"] += 1
        pos = end.end()
    kept.append(text[pos:])
    return "".join(kept)


def main_file(sources: _Sources) -> str | None:
    """The paper's main `.tex` file (the rule is in the module docstring), or None."""
    candidates = sorted(name for name in sources.raw if DOCCLASS_LINE_RE.search(sources.decoded(name)))
    included = {
        target
        for name in candidates
        for m in INPUT_RE.finditer(sources.text(name))
        if (target := _resolve(m.group(2) or m.group(3), name, name, sources)) and target != name
    }

    def rank(name: str) -> tuple:
        return (
            not BEGIN_DOCUMENT_RE.search(sources.text(name)),
            name in included,
            posixpath.splitext(posixpath.basename(name))[0].lower() not in ("main", "ms"),
            -len(sources.raw[name]),
            name,
        )

    return min(candidates, key=rank, default=None)


def _resolve(target: str, including: str, main: str, sources: _Sources) -> str | None:
    """The `.tex` file that `\\input{target}` in `including` reads: LaTeX looks in the main file's
    folder; the including file's folder is tried next for papers organised by chapter folders."""
    target = target.strip().strip('"')
    for folder in dict.fromkeys((posixpath.dirname(main), posixpath.dirname(including))):
        path = posixpath.normpath(posixpath.join(folder, target))
        for candidate in (path, path + ".tex"):
            if candidate in sources.raw:
                return candidate
    return None


def flatten(main: str, sources: _Sources, limits: Limits, counters: Counter) -> tuple[str, set[str]]:
    """The main file's text with its `\\input`/`\\include`s inlined; and the files used."""
    used = {main}
    budget = [limits.max_paper_bytes]

    def inline(name: str, chain: tuple[str, ...]) -> str:
        def replace(m: re.Match) -> str:
            target = _resolve(m.group(2) or m.group(3), name, main, sources)
            if target is None:
                wanted = posixpath.normpath(posixpath.join(posixpath.dirname(main), (m.group(2) or m.group(3)).strip()))
                exists = wanted in sources.names or any(n.startswith(wanted + ".") for n in sources.names)
                counters["inputs_not_tex" if exists else "inputs_missing"] += 1
                return ""
            if target in chain:
                counters["inputs_cyclic"] += 1
                return ""
            if len(chain) > limits.max_include_depth:
                counters["inputs_too_deep"] += 1
                return ""
            text = sources.text(target)
            if len(text) > budget[0]:
                counters["inputs_over_limit"] += 1
                return ""
            budget[0] -= len(text)
            used.add(target)
            counters["files_included"] += 1
            inner = inline(target, (*chain, target)).strip("\n")
            return f"\n{inner}\n" if m.group(1) == "include" else inner

        return INPUT_RE.sub(replace, sources.text(name))

    return inline(main, (main,)), used


def document_body(text: str, counters: Counter) -> str | None:
    """From the first sectioning command after `\\begin{document}`; the whole body when there is
    none (counted); None when there is neither a section nor a `\\begin{document}`."""
    begin = BEGIN_DOCUMENT_RE.search(text)
    start = begin.end() if begin else 0
    section = SECTION_RE.search(text, start)
    if section:
        return text[section.start():]
    if begin is None:
        return None
    counters["no_section_command"] += 1
    return text[start:]


def remove_bibliography(body: str, counters: Counter) -> str:
    body = BIBLIOGRAPHY_STYLE_RE.sub("", body)
    kept: list[str] = []
    pos = 0
    while (bib := BIBLIOGRAPHY_RE.search(body, pos)) is not None:
        kept.append(body[pos:bib.start()])
        counters["bibliographies_removed"] += 1
        resume = AFTER_BIBLIOGRAPHY_RE.search(body, _bibliography_end(body, bib))
        if resume is None:
            return "".join(kept)
        counters["sections_after_bibliography_kept"] += 1
        pos = resume.start()
    kept.append(body[pos:])
    return "".join(kept)


def _bibliography_end(body: str, bib: re.Match) -> int:
    if "thebibliography" in bib.group(0):
        end = END_BIBLIOGRAPHY_RE.search(body, bib.end())
        return end.end() if end else len(body)
    if bib.group(0).endswith("{"):
        end = _group_end(body, bib.end() - 1)
        return end if end > 0 else len(body)
    return bib.end()


def tidy(text: str) -> str:
    return BLANK_LINES_RE.sub("\n\n", TRAILING_SPACE_RE.sub("", text)).strip()


# -- macro expansion ----------------------------------------------------------------------------

CONTROL_SEQUENCE_RE = re.compile(r"\\([A-Za-z@]+|.)", re.S)
TOKEN_RE = re.compile(r"\\([A-Za-z@]+|.)|[{}]", re.S)
BRACE_RE = re.compile(r"\\.|[{}]", re.S)
BRACKET_RE = re.compile(r"\\.|[{}\[\]]", re.S)
PARAM_RE = re.compile(r"(?<!\\)#([1-9#])")
ENDS_WITH_WORD_RE = re.compile(r"\\[A-Za-z@]+$")
VERB_DELIMITER_RE = re.compile(r"\*?([^A-Za-z\s*])")
VERBATIM_ENV_RE = re.compile(r"\s*\{(verbatim\*?|Verbatim|lstlisting|minted)\}")
# A macro whose body contains one of these is TeX programming, not notation: left unexpanded.
PROGRAMMING_RE = re.compile(
    r"\\(?:[A-Za-z]*@[A-Za-z@]*|if(?!f(?![A-Za-z]))[A-Za-z]*|else|fi|or|expandafter|noexpand|csname|futurelet"
    r"|afterassignment|aftergroup|catcode|[gex]?def|let|global|newcommand|renewcommand|providecommand)(?![A-Za-z@])"
)
STRUCTURAL = {
    "part", "chapter", "section", "subsection", "subsubsection", "paragraph", "subparagraph", "appendix",
    "begin", "end", "bibliography", "printbibliography", "input", "include", "item", "documentclass",
}
NEWCOMMANDS = {"newcommand", "renewcommand", "providecommand", "DeclareRobustCommand"}
DEFS = {"def", "gdef", "edef", "xdef"}
PREFIXES = {"global", "long", "outer", "protected"}
DEFINERS = NEWCOMMANDS | DEFS | PREFIXES | {"let", "DeclareMathOperator"}
GLOBAL_DEFS = {"gdef", "xdef"}
OPEN_GROUP = {"bgroup", "begingroup", "begin"}
CLOSE_GROUP = {"egroup", "endgroup", "end"}
SPECIAL = DEFINERS | OPEN_GROUP | CLOSE_GROUP | {"verb"}


@dataclass(frozen=True)
class Macro:
    body: str
    nargs: int = 0
    default: str | None = None  # the first argument is optional with this default
    prefix: str = ""  # \def: the text that must follow the name
    delimiters: tuple[str, ...] = ()  # \def: what ends each argument ("" = one token or group)
    expand: bool = True


class _Chunk:
    """Text being read: the document, or the expansion of a macro `depth` levels deep."""

    __slots__ = ("text", "pos", "depth")

    def __init__(self, text: str, depth: int):
        self.text, self.pos, self.depth = text, 0, depth


class _NoMatch(Exception):
    """A definition or a macro's arguments do not parse at this point."""


class _Unexpanded(Exception):
    """A macro left as written because a bound was reached."""


class MacroExpander:
    """Expands user macros left to right with a stack of chunks, so that an expansion is read
    again before the text after it, and may take its arguments from that text (as TeX does)."""

    def __init__(self, limits: Limits, counters: Counter):
        self.limits = limits
        self.counters = counters
        self.macros: dict[str, Macro] = {}
        # One undo log per open group: the meaning each name had before a local definition in it.
        self.groups: list[dict[str, Macro | None]] = []
        self.stack: list[_Chunk] = []
        self.out: list[str] = []
        self.out_chars = 0
        self.max_chars = 0
        self.scanned = 0
        self.max_scanned = 0
        self.expansions = 0
        self.exhausted = False

    def expand(self, text: str) -> str:
        self.stack = [_Chunk(text, 0)]
        self.out, self.out_chars = [], 0
        self.max_chars = 4 * len(text) + 1_000_000
        self.max_scanned = 10 * len(text) + 1_000_000
        while self.stack:
            chunk = self.stack[-1]
            m = self._next_event(chunk)
            if m is None:
                self.stack.pop()
                if chunk.depth and self.stack and _ends_with_word(chunk.text) and self._next_is_letter():
                    self._emit(" ")  # `\foo` expanding to `\alpha` before `x`: not `\alphax`
            else:
                self._control_sequence(m.group(1), m.group(0), chunk)
        if self.exhausted:
            self.counters["macro_budget_exhausted"] += 1
        return "".join(self.out)

    def _next_event(self, chunk: _Chunk) -> re.Match | None:
        """Copy the chunk's text up to the next control sequence that needs handling (a macro,
        a definition, a group or verbatim), keeping track of brace groups on the way; return it,
        or None at the chunk's end."""
        text, start = chunk.text, chunk.pos
        for m in TOKEN_RE.finditer(text, start):
            name = m.group(1)
            if name is None:
                self._group(m.group(0) == "{")
            elif name in self.macros or name in SPECIAL:
                self._emit(text[start:m.start()])
                chunk.pos = m.end()
                return m
        self._emit(text[start:])
        chunk.pos = len(text)
        return None

    def _emit(self, piece: str) -> None:
        if piece:
            self.out.append(piece)
            self.out_chars += len(piece)

    def _group(self, opens: bool) -> None:
        """Enter or leave a group: definitions made inside one are undone at its end."""
        if opens:
            self.groups.append({})
        elif self.groups:
            for name, meaning in self.groups.pop().items():
                if meaning is None:
                    self.macros.pop(name, None)
                else:
                    self.macros[name] = meaning

    def _define(self, name: str, macro: Macro, is_global: bool) -> None:
        if is_global:
            for undo in self.groups:
                undo.pop(name, None)
        elif self.groups and name not in self.groups[-1]:
            self.groups[-1][name] = self.macros.get(name)
        self.macros[name] = macro

    def _control_sequence(self, name: str, written: str, chunk: _Chunk) -> None:
        definition = name in DEFINERS
        if not definition and not (name in self.macros and self.macros[name].expand):
            if name == "verb" or (name == "begin" and VERBATIM_ENV_RE.match(chunk.text, chunk.pos)):
                written += self._verbatim(name, chunk)
            elif name in OPEN_GROUP or name in CLOSE_GROUP:
                self._group(name in OPEN_GROUP)
            self._emit(written)
            return
        if self.scanned > self.max_scanned:  # unclosed arguments read again and again
            self.exhausted = True
            self._emit(written)
            return
        saved = self._save()
        try:
            if self._definition(name) if definition else self._use(self.macros[name], chunk):
                return
        except _Unexpanded:
            pass
        except _NoMatch:
            self.counters["definitions_unparsed" if definition else "macro_args_missing"] += 1
        self._restore(saved)
        self._emit(written)

    # -- reading, across the ends of chunks ---------------------------------------------------

    def _save(self) -> list[tuple[_Chunk, int]]:
        return [(c, c.pos) for c in self.stack]

    def _restore(self, saved: list[tuple[_Chunk, int]]) -> None:
        self.stack = [c for c, _ in saved]
        for c, pos in saved:
            c.pos = pos

    def _top(self) -> _Chunk:
        """The chunk being read, dropping those read to their end (but never the document)."""
        while len(self.stack) > 1 and self.stack[-1].pos >= len(self.stack[-1].text):
            self.stack.pop()
        return self.stack[-1]

    def _skip_spaces(self) -> _Chunk:
        while True:
            c = self._top()
            while c.pos < len(c.text) and c.text[c.pos] in " \t\n":
                c.pos += 1
            if c.pos < len(c.text) or len(self.stack) == 1:
                return c

    def _next_is_letter(self) -> bool:
        c = self._top()
        return c.pos < len(c.text) and (c.text[c.pos].isalpha() or c.text[c.pos] == "@")

    def _argument(self) -> str:
        """An undelimited argument: a group without its braces, or one token."""
        c = self._skip_spaces()
        if c.pos >= len(c.text) or c.text[c.pos] == "}":
            raise _NoMatch
        if c.text[c.pos] == "{":
            close = self._find(c.text, c.pos + 1, BRACE_RE, "}")
            arg, c.pos = c.text[c.pos + 1:close.start()], close.end()
            return arg
        m = CONTROL_SEQUENCE_RE.match(c.text, c.pos)
        end = m.end() if m else c.pos + 1
        arg, c.pos = c.text[c.pos:end], end
        return arg

    def _optional(self) -> str | None:
        """A `[...]` argument if one follows (after spaces, as LaTeX looks for it); else None,
        and nothing is consumed."""
        saved = self._save()
        c = self._skip_spaces()
        if c.pos >= len(c.text) or c.text[c.pos] != "[":
            self._restore(saved)
            return None
        close = self._find(c.text, c.pos + 1, BRACKET_RE, "]")
        arg, c.pos = c.text[c.pos + 1:close.start()], close.end()
        return arg

    def _delimited(self, delimiter: str) -> str:
        """An argument ended by `delimiter` outside braces (a \\def parameter like `#1.`)."""
        c = self._top()
        close = self._find(c.text, c.pos, _delimiter_re(delimiter), delimiter)
        arg, c.pos = c.text[c.pos:close.start()], close.end()
        if arg.startswith("{") and _group_end(arg, 0) == len(arg):
            arg = arg[1:-1]
        return arg

    def _find(self, text: str, start: int, tokens: re.Pattern, closer: str) -> re.Match:
        """The first `closer` token outside braces from `start`, before the end of the group
        around it; the characters read count against the scan budget."""
        depth = 0
        m = None
        for m in tokens.finditer(text, start):
            token = m.group(0)
            if token == closer and depth == 0:
                self.scanned += m.end() - start
                return m
            if token == "{":
                depth += 1
            elif token == "}":
                depth -= 1
                if depth < 0:
                    break
        self.scanned += (m.end() if m else start) - start
        raise _NoMatch

    def _name(self) -> str:
        """A control sequence being defined: `\\foo` or `{\\foo}`."""
        c = self._skip_spaces()
        braced = c.text.startswith("{", c.pos)
        if braced:
            c.pos += 1
            c = self._skip_spaces()
        m = CONTROL_SEQUENCE_RE.match(c.text, c.pos)
        if m is None:
            raise _NoMatch
        c.pos = m.end()
        if braced:
            c = self._skip_spaces()
            if not c.text.startswith("}", c.pos):
                raise _NoMatch
            c.pos += 1
        return m.group(1)

    def _star(self) -> bool:
        c = self._top()
        if c.text.startswith("*", c.pos):
            c.pos += 1
            return True
        return False

    # -- definitions --------------------------------------------------------------------------

    def _definition(self, command: str) -> bool:
        """Read a definition and register it; False for a prefix that is not followed by one."""
        is_global = command in GLOBAL_DEFS
        while command in PREFIXES:
            is_global |= command == "global"
            c = self._skip_spaces()
            m = CONTROL_SEQUENCE_RE.match(c.text, c.pos)
            if m is None or not (m.group(1) in DEFS or m.group(1) in PREFIXES or m.group(1) == "let"):
                return False
            c.pos = m.end()
            command = m.group(1)
            is_global |= command in GLOBAL_DEFS
        if command in NEWCOMMANDS:
            self._star()
            name = self._name()
            count = self._optional()
            if count is not None and not count.strip().isdigit():
                raise _NoMatch
            default = self._optional() if count is not None else None
            macro = Macro(self._argument(), int(count or 0), default)
            if command == "providecommand" and name in self.macros:
                return True
        elif command in DEFS:
            name = self._name()
            macro = self._def_macro()
        elif command == "let":
            name, macro = self._let()
        else:  # DeclareMathOperator
            star = "*" if self._star() else ""
            name = self._name()
            macro = Macro(f"\\operatorname{star}{{{self._argument()}}}")
        if macro.nargs > 9:
            raise _NoMatch
        if name in STRUCTURAL or PROGRAMMING_RE.search(macro.body):
            macro = Macro(macro.body, macro.nargs, macro.default, macro.prefix, macro.delimiters, expand=False)
            self.counters["macros_not_expanded"] += 1
        self._define(name, macro, is_global)
        self.counters["macros_defined"] += 1
        return True

    def _def_macro(self) -> Macro:
        c = self._top()
        brace = c.text.find("{", c.pos)
        if brace < 0:
            raise _NoMatch
        parameters, c.pos = c.text[c.pos:brace], brace
        parts = PARAM_RE.split(parameters)  # [prefix, "1", delimiter, "2", delimiter, ...]
        numbers = parts[1::2]
        if numbers != [str(i) for i in range(1, len(numbers) + 1)]:
            raise _NoMatch
        body = self._argument()
        return Macro(body, len(numbers), prefix=parts[0].strip(), delimiters=tuple(parts[2::2]))

    def _let(self) -> tuple[str, Macro]:
        name = self._name()
        c = self._skip_spaces()
        if c.text.startswith("=", c.pos):
            c.pos += 1
            c = self._skip_spaces()
        m = CONTROL_SEQUENCE_RE.match(c.text, c.pos)
        if m is None:
            raise _NoMatch
        c.pos = m.end()
        return name, self.macros.get(m.group(1), Macro(m.group(0)))

    # -- uses ---------------------------------------------------------------------------------

    def _use(self, macro: Macro, chunk: _Chunk) -> bool:
        if chunk.depth >= self.limits.max_macro_depth:
            self.counters["macro_depth_limit"] += 1
            raise _Unexpanded
        if self.expansions >= self.limits.max_macro_expansions or self.out_chars > self.max_chars:
            self.exhausted = True
            raise _Unexpanded
        body = _substitute(macro.body, self._arguments(macro))
        self.expansions += 1
        self.counters["macros_expanded"] += 1
        if body and (body[0].isalpha() or body[0] == "@") and self.out and _ends_with_word(self.out[-1]):
            self._emit(" ")
        self.stack.append(_Chunk(body, chunk.depth + 1))
        return True

    def _arguments(self, macro: Macro) -> list[str]:
        if macro.prefix:
            c = self._skip_spaces()
            if not c.text.startswith(macro.prefix, c.pos):
                raise _NoMatch
            c.pos += len(macro.prefix)
        args = []
        for i in range(macro.nargs):
            if i == 0 and macro.default is not None:
                optional = self._optional()
                args.append(macro.default if optional is None else optional)
            elif macro.delimiters and macro.delimiters[i]:
                if i == 0:
                    self._skip_spaces()  # the spaces after a control word are not tokens
                args.append(self._delimited(macro.delimiters[i]))
            else:
                args.append(self._argument())
        return args

    def _verbatim(self, name: str, chunk: _Chunk) -> str:
        """The rest of `\\verb|...|` or of a verbatim environment, copied as it is (nothing more
        when it is not closed)."""
        start = end = chunk.pos
        if name == "verb":
            m = VERB_DELIMITER_RE.match(chunk.text, start)
            close = chunk.text.find(m.group(1), m.end()) if m else -1
            if close >= 0:
                end = close + 1
        else:
            env = VERBATIM_ENV_RE.match(chunk.text, start).group(1)
            close = re.compile(rf"\\end\s*\{{{re.escape(env)}\}}").search(chunk.text, start)
            if close:
                end = close.end()
        chunk.pos = end
        return chunk.text[start:end]


@lru_cache(maxsize=256)
def _delimiter_re(delimiter: str) -> re.Pattern:
    return re.compile(re.escape(delimiter) + r"|\\.|[{}]", re.S)


def _ends_with_word(text: str) -> bool:
    return ENDS_WITH_WORD_RE.search(text[-48:]) is not None


def _substitute(body: str, args: list[str]) -> str:
    """The body with `#n` replaced by the arguments and `##` by `#`; a space is put where an
    argument would otherwise run into a control word (`\\bar#1` with `x`: `\\bar x`)."""
    if "#" not in body:
        return body
    pieces: list[str] = []
    for i, part in enumerate(PARAM_RE.split(body)):
        if i % 2:
            part = "#" if part == "#" else args[int(part) - 1] if int(part) <= len(args) else f"#{part}"
        if part and pieces and (part[0].isalpha() or part[0] == "@") and _ends_with_word(pieces[-1]):
            pieces.append(" ")
        if part:
            pieces.append(part)
    return "".join(pieces)


def _group_end(text: str, start: int) -> int:
    """The index just past the `}` closing the `{` at `start`, or -1 if it is never closed."""
    depth = 0
    for m in BRACE_RE.finditer(text, start):
        token = m.group(0)
        if token == "{":
            depth += 1
        elif token == "}":
            depth -= 1
            if depth == 0:
                return m.end()
    return -1
