"""GitHub code to documents (LLaMA's GitHub recipe), then exact file dedup over the whole corpus.

`extract_github` turns one input into one parquet shard of code documents:

    a repository directory         the directory is the repository root; name = directory name
    a repository archive           .zip, .tar.gz/.tgz, .tar.bz2/.tbz2, .tar.xz/.txz, .tar, as GitHub
                                   serves them; name = file name less the archive suffix. When every
                                   member lies under one top-level directory (GitHub's `name-ref/`)
                                   it is stripped, so a directory and its archive give the same paths
    a code-dataset table           .parquet, .jsonl, .jsonl.gz: rows of repository, path, licence
                                   (optional) and content, as the-stack and RedPajama distribute code;
                                   one shard holds many repositories (column aliases: ROW_FIELDS)

`repository=` names a directory's or archive's repository explicitly (e.g. "owner/name").

Documents: schema GITHUB_SCHEMA = DOCUMENT_SCHEMA (id, source, text) + repository, path, license,
license_source, license_metadata, language, size. `source` is "github"; `id` is
"github/<repository>/<path>" (unique in a shard: a path repeated inside a repository is dropped);
`license` the repository's SPDX id(s) as detected ("Apache-2.0"; several licence files at the
deciding depth give "Apache-2.0 AND MIT"); `license_source` "file" (a licence file's text) or
"metadata"; `license_metadata` what the metadata said, normalised to SPDX ids (null when it said
nothing); `language` from the extension (EXTENSION_LANGUAGES); `size` the file's bytes before any
cleaning. `text` is the file decoded (UTF-8, a BOM removed) with its licence header stripped.
Order: directory and archive files in sorted path order (byte-identical output for the same input);
table rows in row order.

Accounting: every file found (a regular file, link or special file of a directory or archive; a
table row) is one docs_in and is written (docs_out) or dropped under one reason, checked in this
order. Dropped files go to the audit output (`dropped_path`) with their reason; their text is ""
when the content was never read or is not text.

    corrupt_archive         damage in an archive: the member being read when a .tar stream broke (all
                            files read before it are kept; reading stops), a zip member that fails its
                            CRC or does not decompress (the others are read), a file that is not an
                            archive at all. A zip whose central directory is lost (a cut download) is
                            read member by member from its local headers up to the damage
    corrupt_table           a table file that is cut or not a table: the rest counts as one docs_in
    corrupt_row             a table row that is not an object or lacks repository, path or content
    unsafe_path             an archive member (or table path) with a ".." part, an absolute path, a
                            drive letter, a backslash or a control character: never read; also a
                            name that is not UTF-8 (it could not be stored)
    unsafe_link             a symbolic or hard link (archives; in a directory symlinks are not followed)
    special_file            a device, FIFO or socket
    duplicate_path          the same path again in one repository (the first is kept)
    license_not_allowed:<id>  the repository's licence (below) is not in `licenses`; <id> the SPDX
                            id(s) detected, `unknown` when there is neither licence file nor metadata
    license_file            the licence texts themselves (LICENSE.md, COPYING ...): evidence, not code
    generated               by path (`is_generated_path`, before the content is read): lock files
                            (LOCK_FILES); generated names: *.min.js, *.min.css, -min.js, *.bundle.js,
                            *_pb2.py, *.pb.go/.cc/.h, *.g.dart, *.designer.cs, *.generated.*;
                            hashed bundler chunks: a .js/.mjs/.cjs/.css name with a component
                            (between dots or hyphens, the extension aside) of 8+ lowercase hex
                            digits holding both a digit and a letter (main.3f2a9c1b.js,
                            chunk-5f3a8b2c.js, app.a1b2c3d4e5.css, 591.fe276a82.chunk.js; not
                            `20230101_x.js` or an alembic `3f2a9c1b8d7e_add_users.py`: underscores do
                            not separate, all-digit runs are dates and ids more often than hashes);
                            every file in an output folder: a directory named exactly `dist` or
                            `build` anywhere in the path (dist/bundle.js, packages/x/dist/index.js,
                            build/static/js/main.js, build/lib/pkg/mod.py), except the scripts and
                            container files that no bundler or compiler emits and project layouts
                            keep there by hand (OUTPUT_DIR_SCRIPTS: .sh .bash .zsh .command .bat
                            .cmd .ps1 .psm1 .psd1, Dockerfile, .dockerfile: golang-standards'
                            build/package/Dockerfile, build/ci/*.sh); TypeScript declarations
                            (*.d.ts, .d.mts, .d.cts) under a declaration output folder
                            (DECLARATION_OUTPUT_DIRS: dist, build, lib, out, esm, cjs, tsc's and
                            bundlers' usual outDirs). Hand-written declarations elsewhere stay
                            source: DefinitelyTyped's types/<pkg>/index.d.ts, a package's root
                            index.d.ts, src/global.d.ts, typings/. Then by content
                            (`generated_by_content`): a marker in the first 2,000 characters:
                            `@generated`, "auto-generated"/"autogenerated", "automatically/machine
                            generated", "generated" and "DO NOT EDIT" on one line, or a line starting
                            "(Code) generated by/from/with/using" (Go's "Code generated ... DO NOT
                            EDIT.", protoc, javah, Django migrations, dts-bundle-generator's banner);
                            a `//# sourceMappingURL=` or `/*# sourceMappingURL=... */` comment line in
                            the last 500 characters (what tsc, Babel, esbuild, webpack, Rollup and
                            Sass append to their output: a declaration emitted with its .d.ts.map,
                            a compiled module). A lone "do not edit" is not enough (config comments
                            say it). Last, after header stripping and before the line filters,
                            minified code (`is_minified`): lines of 500+ characters with under 5%
                            spaces and tabs and at least 2% of `;{}()` holding at least half the
                            text's characters. Such files fail max_line_length (a line over 1000)
                            or mean_line_length (minifiers that wrap at ~500) otherwise; `generated`
                            names why. Long lines that are data (a base64 blob, a regex table, a
                            long string) lack the punctuation or the share and still go to
                            max_line_length. Measured on the 42,403 source files of this machine's
                            npm, rustdoc, Python packages and /usr/share (586 with a 500+ line):
                            40 are minified by this rule, 38 minified or bundled JS/CSS and 2 PLY
                            parser tables (generated too); every *.min.js/.css among them is caught
                            (long-line space share 0-3.5%, punctuation 3-15%)
    extension_not_allowed   the name does not end with one of `extensions` (below)
    too_large               over `max_file_bytes` (1,000,000, The Stack's limit), never read whole;
                            in a tar also every candidate file once `max_repo_bytes` of files has
                            been read into memory (licence files and manifests are still read)
    unreadable              a directory entry that cannot be listed, opened or read
    binary                  a NUL byte (UTF-16/32 with a BOM is decoded first)
    undecodable             not UTF-8 (UTF-16/32 only with a BOM), or a table string with lone surrogates
    empty                   only whitespace, before or after the header is stripped
    max_line_length         a line longer than `max_line_length` (1000) characters
    mean_line_length        characters / lines over `max_mean_line_length` (100)
    alnum_fraction          alphanumeric characters / characters under `min_alnum_fraction` (0.25)
    alpha_per_token         alphabetic characters / tokens under `min_alpha_per_token` (1.5)

Repository-level failures (license_not_allowed) win over per-file ones: a GPL repository's files
are all `license_not_allowed:GPL-3.0`, whatever their extension. `.git`, `.hg` and `.svn`
directories are not walked (not part of the tree; GitHub archives never contain them).

Filters (RedPajama's github_run_filter.py, the GUIDE's thresholds), computed on the text after
header stripping as RedPajama did: lines are `str.splitlines()`, mean line length is
len(text) / lines (newlines included, RedPajama's definition), alphanumeric and alphabetic are
`str.isalnum` / `str.isalpha`. Token: a piece of GPT-2's pre-tokenizer split without its
whitespace-only pieces (TOKEN_PATTERN: a contraction 's 't 're 've 'm 'll 'd, or an optional space
plus a run of letters, of digits or of other symbols). RedPajama counted GPT-NeoX BPE tokens;
byte-level BPE merges only inside these pieces, so each is at least one BPE token: our count is a
lower bound of theirs, the ratio an upper bound, and the filter drops a subset of what RedPajama's
drops (no tokenizer to download). Whitespace pieces are left out so that indentation style does not
decide: counted, they put ordinary tab-indented code under 1.5 (minimist's index.js: 1.44 with
them, 1.81 without). ASCII text is counted with numpy (runs of one character class less the
contractions; equal to the regex, tests/test_github.py), other text with the regex.

Extensions: RedPajama's allow-list exactly (REDPAJAMA_EXTENSIONS, suffix match on the name, case
sensitive: `.C`/`.H` are C++, `Dockerfile`/`Makefile` whole names), plus EXTRA_EXTENSIONS:
languages in The Stack's (BigCode) language set that LLaMA-style code mixtures keep and RedPajama's
list misses (Kotlin, Swift, Dart, R, Elixir, Erlang, Clojure, OCaml, F#, Groovy, Vue, CUDA, JSX,
.mjs/.cjs, .cxx/.hxx, .proto, .pyi).

Licence (repository level; `licenses` default ALLOWED_LICENSES = MIT, BSD-2-Clause, BSD-3-Clause,
Apache-2.0, the LLaMA/RedPajama set):
- Licence files: names LICENSE, LICENCE, COPYING, UNLICENSE with optional `-X`/`.X` parts and
  .txt/.md/.rst/.markdown/.html (LICENSE-MIT, COPYING.LESSER, LICENSE.md; not license.py), and every
  non-code file directly inside a `license(s)`/`licence(s)` directory (REUSE's LICENSES/, a wheel's
  `*.dist-info/licenses/`). A file in such a directory counts at the directory's depth. Only the
  licence files at the smallest depth decide (the root's, else e.g. npm's `package/LICENSE` or a
  wheel's `*.dist-info/LICENSE`): a vendored `third_party/x/COPYING` does not relicense the repo.
- Text detection (`detect_license`): the text is lower-cased and reduced to words; the licence
  whose characteristic clause comes FIRST in the file is the file's licence (a project's own
  licence precedes appended third-party notices, and the GPL's text names the LGPL only later).
  MIT: "permission is hereby granted, free of charge, to any person obtaining a copy" (with "the
  above copyright notice and this permission notice shall be included", else MIT-0), "licensed/
  released under the MIT license", or a file titled "MIT License"; BSD: "redistribution and use in source and binary forms ... are
  permitted", then BSD-4-Clause with the advertising clause, BSD-3-Clause with "neither the name" /
  "endorse or promote", else BSD-2-Clause; Apache-2.0: "Apache License, Version 2.0" (also "Apache
  License 2.0", the licence URL, or the text's own opening "terms and conditions for use,
  reproduction, and distribution. 1. Definitions. "License" shall mean", for copies without the
  title such as warcio's wheel); GPL/LGPL/AGPL by their title's first occurrence with its version;
  GFDL, MPL, ISC/0BSD, Unlicense, CC0, EPL, Zlib, BSL-1.0, Artistic, EUPL, WTFPL, SSPL, BUSL, PSF,
  CC-BY by their clauses; a file under 200 characters is read as a licence name ("MIT", "Apache-2.0");
  with no clause at all, "all rights reserved", "proprietary", "confidential" make it
  `proprietary`. Anything else is unrecognised.
- Metadata: package.json/composer.json `license(s)`, a wheel's METADATA or PKG-INFO
  (License-Expression, else License and `License ::` classifiers), pyproject.toml, Cargo.toml (the
  manifests at their smallest depth), and a table's licence column; names are mapped to SPDX ids
  ("Apache 2.0", "Apache Software License" -> Apache-2.0; a bare "BSD" stays BSD, which is not
  allowed: it may be 4-clause; "SEE LICENSE IN ...", "UNKNOWN", "other" say nothing; any other
  name becomes `other`, not allowed).
- Decision: the recognised licence files at the deciding depth if any (all must be allowed;
  license_source "file"); else (no licence file, or none whose text is recognised) the metadata
  (an OR expression needs one allowed alternative, every other source must be allowed;
  license_source "metadata"); else `unknown`. The file text wins over
  the metadata because it is what the code is actually distributed under: registries and GitHub's
  API guess, metadata goes stale when a project relicenses, and a wrong package.json field is
  common; the licence text is the legal instrument. A disagreement (no licence family in common,
  e.g. metadata MIT, LICENSE Apache) is counted per repository.

Header stripping (`strip_license_header`, on by default): at the top of a file, after a kept
prologue (a `#!` line, a PEP 263 coding line, `<?php`, `<?xml ...?>`) and blank lines, comment
blocks in the file's own comment syntax (COMMENT_SYNTAX by language: `//` and `/* */` for C-like
languages, `#` for Python/shell/Ruby..., `--`, `%`, `;`, `!`, `<!-- -->`, ...) are removed while
they mention a licence: for a block comment the whole block; for a run of line comments, from its
start to the end of the last paragraph (paragraphs split by empty comment lines) that mentions one,
so a description following the licence stays. "Mentions a licence": copyright, ©, SPDX, "licensed
under", "all rights reserved", "permission is hereby granted", "redistribution and use", "free
software", "warranty", or the word licence/license. A Python module docstring is removed only if it
holds one of the strong phrases (not for a bare "License: MIT"). `#` is never a comment in C,
C++, Objective-C or assembly (`#include`, `#define` stay) and Markdown has no line comments (a
`# Title` stays): the two RedPajama mistakes. RedPajama also removed any `/* */` block containing
"copyright" anywhere in the first 100 lines; only the top of the file is touched here.

Counters: repositories, license_from_file, license_from_metadata, license_unknown (repositories),
license_disagreements (repositories whose metadata disagrees with the licence file text),
license_files_unrecognised (licence files at the deciding depth whose text matched no licence),
files_header_stripped, header_lines_stripped (lines removed, blank lines included),
bytes_read (bytes of the files read for documents), text_chars_out (characters written).

Speed (bench/github.py, one core of a shared 2-core machine, the 99 files / 0.28 MB of the three
sample packages): 2,000-2,900 files/s, 5.5-8.5 MB/s of input for directories, zips and a jsonl.gz
table (the table is read twice: licence evidence first, then the rows), 4.4-5.3 MB/s for .tar.gz;
the dedup phases ~15,000-25,000 documents/s. The filters' counting is ~25% of the time, parquet
writing and JSON parsing most of the rest.

Exact file dedup over the whole corpus, in three Ray-free phases modelled on (and sharing the file
format and the keep rule of) stages/line_dedup.py, with one entry per document instead of per line:

    hash_files              per document shard: SHA-1 (first 8 bytes, little-endian) of each
                            document's UTF-8 text, written as line_dedup's partition files
                            (HASH_DTYPE with line = 0) plus meta.json marked kind "github_files"
    find_duplicate_files    per hash partition: line_dedup.find_duplicate_lines on those files; the
                            first occurrence in corpus order (shard index, then row) is kept
    remove_duplicate_files  per document shard: drops the listed documents as `duplicate`, checking
                            that each has the recorded hash (wrong wiring raises)

The hash is over the text after header stripping, so files that differ only in their copyright
header are duplicates (RedPajama hashed raw content). Partitions: one entry is 16 bytes, about 24
per file at a partition task's peak (line_dedup's sizing): partitions = ceil(files * 24 B / task
memory); 1e9 files at 2 GB a task is 12 partitions. SHA-1's 64 bits: ~F^2/2^65 colliding pairs,
0.03 for F = 1e9.
"""

from __future__ import annotations

import codecs
import contextlib
import gzip
import hashlib
import json
import lzma
import os
import re
import stat
import struct
import tarfile
import tomllib
import zipfile
import zlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from stages import line_dedup
from stages.accounting import ShardStats
from stages.documents import (
    DOCUMENT_SCHEMA,
    DroppedDocuments,
    atomic_dir,
    filter_shard,
    read_document_batches,
    schema_with,
    write_documents,
)

SOURCE = "github"
ALLOWED_LICENSES = ("MIT", "BSD-2-Clause", "BSD-3-Clause", "Apache-2.0")

GITHUB_SCHEMA = schema_with(
    DOCUMENT_SCHEMA,
    pa.field("repository", pa.string(), nullable=False),
    pa.field("path", pa.string(), nullable=False),
    pa.field("license", pa.string(), nullable=False),
    pa.field("license_source", pa.string()),  # "file" | "metadata"; null for "unknown"
    pa.field("license_metadata", pa.string()),
    pa.field("language", pa.string()),
    pa.field("size", pa.int64(), nullable=False),
)

# RedPajama's data_prep/github/github_run_filter.py allow-list, verbatim (suffixes, case sensitive).
REDPAJAMA_EXTENSIONS = (
    ".asm", ".bat", ".cmd", ".c", ".h", ".cs", ".cpp", ".hpp", ".c++", ".h++", ".cc", ".hh", ".C",
    ".H", ".cmake", ".css", ".dockerfile", ".f90", ".f", ".f03", ".f08", ".f77", ".f95", ".for",
    ".fpp", ".go", ".hs", ".html", ".java", ".js", ".jl", ".lua", ".md", ".markdown", ".php",
    ".php3", ".php4", ".php5", ".phps", ".phpt", ".pl", ".pm", ".pod", ".perl", ".ps1", ".psd1",
    ".psm1", ".py", ".rb", ".rs", ".sql", ".scala", ".sh", ".bash", ".command", ".zsh", ".ts",
    ".tsx", ".tex", ".vb", "Dockerfile", "Makefile", ".xml", ".rst", ".m", ".smali",
)
# Languages of The Stack that code mixtures keep and RedPajama's list misses.
EXTRA_EXTENSIONS = (
    ".cxx", ".hxx", ".cu", ".cuh", ".jsx", ".mjs", ".cjs", ".kt", ".kts", ".swift", ".dart", ".r",
    ".R", ".ex", ".exs", ".erl", ".hrl", ".clj", ".cljs", ".ml", ".mli", ".fs", ".fsx", ".groovy",
    ".vue", ".proto", ".pyi",
)
EXTENSIONS = REDPAJAMA_EXTENSIONS + EXTRA_EXTENSIONS

_LANGUAGES = {
    "Assembly": ".asm", "Batchfile": ".bat .cmd", "C": ".c .h", "C#": ".cs",
    "C++": ".cpp .hpp .c++ .h++ .cc .hh .C .H .cxx .hxx", "CMake": ".cmake", "CSS": ".css",
    "Dockerfile": ".dockerfile Dockerfile", "Fortran": ".f90 .f .f03 .f08 .f77 .f95 .for .fpp",
    "Go": ".go", "Haskell": ".hs", "HTML": ".html", "Java": ".java", "JavaScript": ".js .jsx .mjs .cjs",
    "Julia": ".jl", "Lua": ".lua", "Markdown": ".md .markdown",
    "PHP": ".php .php3 .php4 .php5 .phps .phpt", "Perl": ".pl .pm .pod .perl",
    "PowerShell": ".ps1 .psd1 .psm1", "Python": ".py .pyi", "Ruby": ".rb", "Rust": ".rs", "SQL": ".sql",
    "Scala": ".scala", "Shell": ".sh .bash .command .zsh", "TypeScript": ".ts .tsx", "TeX": ".tex",
    "Visual Basic": ".vb", "Makefile": "Makefile", "XML": ".xml", "reStructuredText": ".rst",
    "Objective-C/MATLAB": ".m", "Smali": ".smali", "CUDA": ".cu .cuh", "Kotlin": ".kt .kts",
    "Swift": ".swift", "Dart": ".dart", "R": ".r .R", "Elixir": ".ex .exs", "Erlang": ".erl .hrl",
    "Clojure": ".clj .cljs", "OCaml": ".ml .mli", "F#": ".fs .fsx", "Groovy": ".groovy", "Vue": ".vue",
    "Protocol Buffer": ".proto",
}
EXTENSION_LANGUAGES = {ext: lang for lang, exts in _LANGUAGES.items() for ext in exts.split()}

LOCK_FILES = frozenset({
    "package-lock.json", "npm-shrinkwrap.json", "yarn.lock", "pnpm-lock.yaml", "Cargo.lock",
    "poetry.lock", "Pipfile.lock", "uv.lock", "Gemfile.lock", "composer.lock", "go.sum", "mix.lock",
    "flake.lock", "Podfile.lock", "packages.lock.json",
})
_GENERATED_NAME = re.compile(
    r"(?:\.min\.(?:js|mjs|css)|-min\.js|\.bundle\.js|_pb2(?:_grpc)?\.pyi?|\.pb\.(?:go|cc|h)|"
    r"\.g\.dart|\.designer\.cs|\.generated\.[^./]+)$",
    re.IGNORECASE,
)
# Output folders (module doc): every file under them is generated, except these build scripts.
OUTPUT_DIRS = frozenset({"dist", "build"})
OUTPUT_DIR_SCRIPTS = (".sh", ".bash", ".zsh", ".command", ".bat", ".cmd", ".ps1", ".psm1", ".psd1", "Dockerfile",
                      ".dockerfile")
DECLARATION_OUTPUT_DIRS = OUTPUT_DIRS | {"lib", "out", "esm", "cjs"}
_DECLARATION_NAME = re.compile(r"\.d\.[mc]?ts$")
_HASHED_SUFFIXES = (".js", ".mjs", ".cjs", ".css")
_HEX_HASH = re.compile(r"(?=[0-9a-f]*[0-9])(?=[0-9a-f]*[a-f])[0-9a-f]{8,}")
_NAME_PARTS = re.compile(r"[.-]")
_SOURCE_MAP_COMMENT = re.compile(r"^[ \t]*(?://[#@][ \t]*sourceMappingURL=\S|/\*[#@][ \t]*sourceMappingURL=\S)",
                                 re.MULTILINE)
SOURCE_MAP_SCAN_CHARS = 500
# Minified code (module doc: the measurement).
MINIFIED_LINE_CHARS = 500
MINIFIED_MAX_WHITESPACE = 0.05
MINIFIED_MIN_PUNCTUATION = 0.02
MINIFIED_MIN_SHARE = 0.5
_GENERATED_MARKER = re.compile(
    r"@generated\b|\bauto-?generated\b|\b(?:automatically|machine)[- ]generated\b"
    r"|\bgenerated\b[^\n]*\bdo not edit\b|\bdo not edit\b[^\n]*\bgenerated\b"
    r"|^[^\w\n]*(?:this (?:file|code) (?:was|is) )?(?:code )?generated (?:by|from|with|using)\b",
    re.IGNORECASE | re.MULTILINE,
)
GENERATED_SCAN_CHARS = 2000

# GPT-2's pre-tokenizer split without its whitespace-only pieces (letters \p{L} written as
# [^\W\d_], numbers as \d): the token of the alpha-per-token filter.
TOKEN_PATTERN = re.compile(r"'(?:[sdmt]|ll|ve|re)| ?[^\W\d_]+| ?\d+| ?(?:[^\s\w]|_)+")
# The same count for ASCII text without the regex: the non-whitespace runs of one class (letters,
# digits, other) less the GPT-2 contractions that merge an apostrophe with the letters after it.
_ASCII_CLASS = np.array([0 if chr(c).isspace() else 1 if chr(c).isalpha() else 2 if chr(c).isdigit() else 3
                         for c in range(256)], dtype=np.int8)
_CONTRACTION = re.compile(rb"'(?<![^A-Za-z0-9\t\n\r\x0b\x0c\x1c-\x1f]')(?:[sdmt]|ll|ve|re)(?![A-Za-z])")

ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".tar.bz2", ".tbz2", ".tar.xz", ".txz", ".tar", ".zip")
TABLE_SUFFIXES = (".parquet", ".jsonl", ".jsonl.gz")
# Column names public code datasets use (the-stack: max_stars_repo_*; RedPajama/BigQuery: repo_name).
ROW_FIELDS = {
    "repository": ("repository", "repo_name", "max_stars_repo_name", "repo"),
    "path": ("path", "max_stars_repo_path", "file_path"),
    "content": ("content", "text", "code"),
    "license": ("license", "licenses", "max_stars_repo_licenses", "license_type"),
}
VCS_DIRS = frozenset({".git", ".hg", ".svn"})
LICENSE_FILE_MAX_BYTES = 256 * 1024
ARCHIVE_DAMAGE = (
    zipfile.BadZipFile, zipfile.LargeZipFile, tarfile.TarError, EOFError, zlib.error, lzma.LZMAError,
    OSError, ValueError, NotImplementedError, RuntimeError, struct.error,
)
FILES_KIND = "github_files"
DUPLICATE = "duplicate"


class Dropped(Exception):
    """A file leaves the shard for a named reason."""

    def __init__(self, reason: str, text: str = ""):
        super().__init__(reason)
        self.reason = reason
        self.text = text


# ---------------------------------------------------------------------------------------------
# Licence detection


def _words(text: str) -> str:
    """Lower-cased text reduced to words (letters, digits, dots) separated by single spaces."""
    return " ".join(re.sub(r"[^a-z0-9.]+", " ", text.lower()).split())


_GNU = re.compile(r"gnu (?:(affero|lesser|library) )?general public licen[cs]e")
_LICENSE_CLAUSES: list[tuple[str, re.Pattern]] = [
    ("MIT", re.compile(r"^(?:the )?mit licen[cs]e\b")),  # a file whose title is "MIT License"
    ("MIT", re.compile(r"permission is hereby granted free of charge to any person obtaining a copy")),
    ("MIT", re.compile(r"(?:licensed|released|distributed|available|provided) under (?:the )?(?:terms of the )?"
                       r"(?:mit|expat) licen[cs]e")),
    ("BSD", re.compile(r"redistribution and use in source and binary forms with or without modification "
                       r"are permitted")),
    ("Apache-2.0", re.compile(r"apache licen[cs]e (?:version )?2\.0|apache licen[cs]e v ?2|"
                              r"apache.org licenses license 2\.0|apache software licen[cs]e version 2\.0|"
                              # the text itself, for copies without the title (warcio's wheel)
                              r"terms and conditions for use reproduction and distribution 1\. definitions\.? "
                              r"license shall mean")),
    ("GFDL", re.compile(r"gnu free documentation licen[cs]e")),
    ("GNU", _GNU),
    ("MPL", re.compile(r"mozilla public licen[cs]e")),
    ("ISC", re.compile(r"permission to use copy modify and (?:or )?distribute this software for any purpose "
                       r"with or without fee is hereby granted")),
    ("Unlicense", re.compile(r"this is free and unencumbered software released into the public domain")),
    ("CC0-1.0", re.compile(r"cc0 1\.0 universal|creative commons zero")),
    ("EPL", re.compile(r"eclipse public licen[cs]e")),
    ("Zlib", re.compile(r"permission is granted to anyone to use this software for any purpose including "
                        r"commercial applications")),
    ("BSL-1.0", re.compile(r"boost software licen[cs]e")),
    ("Artistic", re.compile(r"the artistic licen[cs]e")),
    ("EUPL", re.compile(r"european union public licen[cs]e")),
    ("WTFPL", re.compile(r"do what the fuck you want to public licen[cs]e")),
    ("SSPL-1.0", re.compile(r"server side public licen[cs]e")),
    ("BUSL-1.1", re.compile(r"business source licen[cs]e")),
    ("PSF-2.0", re.compile(r"python software foundation licen[cs]e")),
    ("CC-BY", re.compile(r"creative commons attribution")),
]
_PROPRIETARY = re.compile(r"all rights reserved|proprietary|confidential|unauthori[sz]ed copying")


def _gnu_id(words: str, match: re.Match) -> str:
    kind = {"affero": "AGPL", "lesser": "LGPL", "library": "LGPL"}.get(match.group(1) or "", "GPL")
    version = re.search(r"version (\d(?:\.\d)?)", words[match.end() : match.end() + 200])
    if not version:
        return kind
    number = version.group(1)
    return f"{kind}-{number if '.' in number else number + '.0'}"


def detect_license(text: str) -> str | None:
    """The SPDX id of the licence a licence file's text states, or None when unrecognised
    (module doc: the licence whose characteristic clause comes first)."""
    words = _words(text)
    if len(text.strip()) < 200:  # a licence file holding only a name or SPDX expression
        ids, _ = license_ids(re.sub(r"(?i)spdx-license-identifier:?", "", text))
        if len(ids) == 1 and ids[0] not in ("BSD", "other"):
            return ids[0]
    best: tuple[int, str, re.Match] | None = None
    for name, pattern in _LICENSE_CLAUSES:
        match = pattern.search(words)
        if match and (best is None or match.start() < best[0]):
            best = (match.start(), name, match)
    if best is None:
        return "proprietary" if _PROPRIETARY.search(words) else None
    _, name, match = best
    rest = words[match.start() :]
    if name == "MIT":
        if match.group(0).startswith("permission") and "above copyright notice and this permission notice shall be" not in rest:
            return "MIT-0"
        return "MIT"
    if name == "BSD":
        if "all advertising materials mentioning features or use of this software" in rest:
            return "BSD-4-Clause"
        if "neither the name" in rest or "endorse or promote products" in rest:
            return "BSD-3-Clause"
        return "BSD-2-Clause"
    if name == "GNU":
        return _gnu_id(words, match)
    if name == "GFDL":
        version = re.match(r"gnu free documentation licen[cs]e (?:version |v )?(\d\.\d)", rest)
        return f"GFDL-{version.group(1)}" if version else "GFDL"
    if name == "MPL":
        version = re.match(r"mozilla public licen[cs]e (?:version |v )?(\d\.\d)", rest)
        return f"MPL-{version.group(1)}" if version else "MPL"
    if name == "ISC":
        return "ISC" if "provided that the above copyright notice" in rest[:400] else "0BSD"
    if name == "EPL":
        version = re.match(r"eclipse public licen[cs]e (?:version |v )?(\d\.\d)", rest)
        return f"EPL-{version.group(1)}" if version else "EPL"
    return name


def _license_term(term: str) -> str | None:
    """One licence name as an SPDX id (a family name when unversioned), None for "no information"."""
    t = " ".join(term.lower().replace("licence", "license").replace("_", "-").split()).strip(" .;,()[]\"'")
    t = re.sub(r"^(?:the |osi approved :: )", "", t)
    if t in {"", "unknown", "none", "noassertion", "license", "other", "custom"} or t.startswith("see license"):
        return None
    if t == "unlicensed":  # npm's word for "no licence granted"
        return "proprietary"
    if re.fullmatch(r"(?:mit|expat)(?: license)?", t):
        return "MIT"
    if t in {"mit-0", "mit no attribution"}:
        return "MIT-0"
    if "apache" in t:
        return "Apache-1.1" if re.search(r"\b1\.[01]\b", t) else "Apache-2.0"
    if "bsd" in t:
        if re.search(r"\b0bsd|zero", t):
            return "0BSD"
        if re.search(r"\b4\b|4-clause|original", t):
            return "BSD-4-Clause"
        if re.search(r"\b3\b|3-clause|new|modified|revised", t):
            return "BSD-3-Clause"
        if re.search(r"\b2\b|2-clause|simplified|freebsd", t):
            return "BSD-2-Clause"
        return "BSD"
    gnu = re.search(r"\b(a|l)?gpl|(affero|lesser|library) general public|general public", t)
    if gnu:
        kind = "AGPL" if ("agpl" in t or "affero" in t) else "LGPL" if ("lgpl" in t or "lesser" in t or "library" in t) else "GPL"
        version = re.search(r"(\d)(?:\.(\d))?", t)
        if not version:
            return kind
        return f"{kind}-{version.group(1)}.{version.group(2) or '0'}"
    if "mozilla" in t or re.match(r"mpl\b", t):
        version = re.search(r"(\d\.\d)", t)
        return f"MPL-{version.group(1)}" if version else "MPL"
    for key, spdx in (("unlicense", "Unlicense"), ("cc0", "CC0-1.0"), ("public domain", "public-domain"),
                      ("isc", "ISC"), ("proprietary", "proprietary"), ("commercial", "proprietary"),
                      ("all rights reserved", "proprietary"), ("wtfpl", "WTFPL"), ("zlib", "Zlib"),
                      ("boost", "BSL-1.0"), ("artistic", "Artistic"), ("eclipse", "EPL"), ("epl", "EPL"),
                      ("python software foundation", "PSF-2.0"), ("psf", "PSF-2.0")):
        if key in t:
            return spdx
    return "other"


def license_ids(value) -> tuple[list[str], bool]:
    """The SPDX ids a metadata value names (a string, possibly an SPDX expression, or a list of
    strings), and whether it offers alternatives (an OR expression, a slash, a list of choices)."""
    if value is None:
        return [], False
    if isinstance(value, (list, tuple)):
        ids = sorted({i for v in value for i in license_ids(v)[0]})
        return ids, False
    text = str(value).strip()
    if not text:
        return [], False
    if len(text) > 200:  # a whole licence text pasted into a metadata field
        found = detect_license(text)
        return ([found] if found else []), False
    is_or = bool(re.search(r"\s+or\s+|/", text, re.IGNORECASE))
    text = re.sub(r"\s+WITH\s+\S+", "", text)  # exceptions (Classpath-exception-2.0 ...)
    terms = re.split(r"\s+(?:or|and)\s+|/|,|;|[()]", text, flags=re.IGNORECASE)
    ids = sorted({i for t in terms if (i := _license_term(t))})
    return ids, is_or and len(ids) > 1


def _family(spdx: str) -> str:
    return re.sub(r"-.*$", "", spdx) if spdx not in {"MIT-0"} else spdx


_LICENSE_NAME = re.compile(
    r"(?:licen[cs]e|copying|unlicense)(?:[-._][a-z0-9-]+)*", re.IGNORECASE
)
_LICENSE_DIRS = frozenset({"license", "licenses", "licence", "licences"})
_TEXT_SUFFIXES = (".txt", ".md", ".rst", ".markdown", ".html")
_MANIFESTS = frozenset({"package.json", "composer.json", "pyproject.toml", "Cargo.toml", "PKG-INFO"})


def _has_code_suffix(name: str) -> bool:
    return name.endswith(EXTENSIONS) and not name.lower().endswith(_TEXT_SUFFIXES)


def license_file_depth(path: str) -> int | None:
    """The depth at which `path` counts as a licence file (module doc), or None if it is not one."""
    parts = path.split("/")
    name = parts[-1]
    if _has_code_suffix(name):
        return None
    if len(parts) > 1 and parts[-2].lower() in _LICENSE_DIRS:
        return len(parts) - 2
    if _LICENSE_NAME.fullmatch(name):
        return len(parts) - 1
    return None


def _manifest_depth(path: str) -> int | None:
    parts = path.split("/")
    name = parts[-1]
    if name in _MANIFESTS or (name == "METADATA" and len(parts) > 1 and parts[-2].endswith(".dist-info")):
        return len(parts) - 1
    return None


def _manifest_licenses(name: str, text: str) -> tuple[list[str], bool]:
    """The licence ids a package manifest states (module doc)."""
    try:
        if name in {"package.json", "composer.json"}:
            data = json.loads(text)
            if not isinstance(data, dict):
                return [], False
            value = data.get("license", data.get("licenses"))
            if isinstance(value, dict):
                value = value.get("type")
            if isinstance(value, list):
                names = [v.get("type") if isinstance(v, dict) else v for v in value]
                ids = sorted({i for n in names if isinstance(n, str) for i in license_ids(n)[0]})
                return ids, len(ids) > 1
            return license_ids(value) if isinstance(value, str) else ([], False)
        if name in {"pyproject.toml", "Cargo.toml"}:
            data = tomllib.loads(text)
            table = data.get("project") or data.get("package") or data.get("tool", {}).get("poetry") or {}
            value = table.get("license") if isinstance(table, dict) else None
            if isinstance(value, dict):
                value = value.get("text")
            return license_ids(value) if isinstance(value, str) else ([], False)
        # METADATA / PKG-INFO: RFC 822 headers up to the first blank line.
        header = text.split("\n\n", 1)[0]
        fields: dict[str, list[str]] = {}
        for line in re.split(r"\n(?![ \t])", header):
            key, sep, val = line.partition(":")
            if sep:
                fields.setdefault(key.strip().lower(), []).append(val.strip())
        if fields.get("license-expression"):
            return license_ids(fields["license-expression"][0])
        ids: set[str] = set()
        for val in fields.get("license", []):
            ids.update(license_ids(val)[0])
        for val in fields.get("classifier", []):
            if val.startswith("License ::"):
                ids.update(license_ids(val.split("::")[-1])[0])
        return sorted(ids), False
    except (ValueError, tomllib.TOMLDecodeError, AttributeError, TypeError):
        return [], False


@dataclass(frozen=True)
class Verdict:
    """A repository's licence decision."""

    license: str
    source: str | None
    metadata: str | None
    allowed: bool
    disagreement: bool = False


@dataclass
class LicenseEvidence:
    """What a repository says about its licence: licence file texts and metadata (module doc)."""

    files: list[tuple[int, str, str | None]] = field(default_factory=list)  # depth, path, spdx
    manifests: list[tuple[int, list[str], bool]] = field(default_factory=list)  # depth, ids, is_or
    column: list[tuple[list[str], bool]] = field(default_factory=list)

    def wants(self, path: str) -> bool:
        return license_file_depth(path) is not None or _manifest_depth(path) is not None

    def offer(self, path: str, content: bytes | str) -> None:
        """Record `path`'s content if it is a licence file or a manifest."""
        text = content.decode("utf-8", "replace") if isinstance(content, bytes) else content
        depth = license_file_depth(path)
        if depth is not None:
            self.files.append((depth, path, detect_license(text[:LICENSE_FILE_MAX_BYTES])))
        depth = _manifest_depth(path)
        if depth is not None:
            ids, is_or = _manifest_licenses(path.rsplit("/", 1)[-1], text[:LICENSE_FILE_MAX_BYTES])
            if ids:
                self.manifests.append((depth, ids, is_or))

    def add_column(self, value) -> None:
        ids, is_or = license_ids(value)
        if ids and (ids, is_or) not in self.column:
            self.column.append((ids, is_or))

    def verdict(self, allowed: Iterable[str], stats: ShardStats) -> Verdict:
        allowed = set(allowed)
        deciding = min((d for d, _, _ in self.files), default=None)
        found = [spdx for d, _, spdx in self.files if d == deciding]
        stats.counters["license_files_unrecognised"] += sum(spdx is None for spdx in found)
        file_ids = sorted({spdx for spdx in found if spdx})
        top = min((d for d, _, _ in self.manifests), default=None)
        sources = [(ids, is_or) for d, ids, is_or in self.manifests if d == top] + self.column
        meta_ids = sorted({i for ids, _ in sources for i in ids})
        metadata = " AND ".join(meta_ids) if meta_ids else None
        stats.counters["repositories"] += 1
        if file_ids:
            stats.counters["license_from_file"] += 1
            disagree = bool(meta_ids) and not ({_family(i) for i in file_ids} & {_family(i) for i in meta_ids})
            stats.counters["license_disagreements"] += disagree
            return Verdict(" AND ".join(file_ids), "file", metadata, all(i in allowed for i in file_ids), disagree)
        if sources:
            stats.counters["license_from_metadata"] += 1
            ok = all((any if is_or else all)(i in allowed for i in ids) for ids, is_or in sources)
            expression = " AND ".join(dict.fromkeys(
                (" OR " if is_or else " AND ").join(ids) for ids, is_or in sources))
            return Verdict(expression, "metadata", metadata, ok)
        stats.counters["license_unknown"] += 1
        return Verdict("unknown", None, None, False)


# ---------------------------------------------------------------------------------------------
# Header stripping


@dataclass(frozen=True)
class CommentSyntax:
    line: tuple[str, ...] = ()
    blocks: tuple[tuple[str, str], ...] = ()
    docstring: bool = False
    column1: bool = False  # line comment markers only count in column 1 (fixed-form Fortran)


_C = CommentSyntax(("//",), (("/*", "*/"),))
_HASH = CommentSyntax(("#",))
_MARKUP = CommentSyntax((), (("<!--", "-->"),))
COMMENT_SYNTAX = {
    **dict.fromkeys(["C", "C++", "C#", "CUDA", "Go", "Java", "JavaScript", "TypeScript", "Rust", "Scala",
                     "Kotlin", "Swift", "Dart", "Groovy", "Protocol Buffer"], _C),
    **dict.fromkeys(["Shell", "Perl", "R", "Elixir", "CMake", "Makefile", "Dockerfile", "Smali"], _HASH),
    **dict.fromkeys(["HTML", "XML", "Markdown", "Vue"], _MARKUP),
    "Python": CommentSyntax(("#",), (), docstring=True),
    "Ruby": CommentSyntax(("#",), (("=begin", "=end"),)),
    "PowerShell": CommentSyntax(("#",), (("<#", "#>"),)),
    "Julia": CommentSyntax(("#",), (("#=", "=#"),)),
    "PHP": CommentSyntax(("//", "#"), (("/*", "*/"),)),
    "CSS": CommentSyntax((), (("/*", "*/"),)),
    "SQL": CommentSyntax(("--",), (("/*", "*/"),)),
    "Lua": CommentSyntax(("--",), (("--[[", "]]"),)),
    "Haskell": CommentSyntax(("--",), (("{-", "-}"),)),
    "TeX": CommentSyntax(("%",)),
    "Erlang": CommentSyntax(("%",)),
    "Objective-C/MATLAB": CommentSyntax(("//", "%"), (("/*", "*/"), ("%{", "%}"))),
    "Assembly": CommentSyntax((";",), (("/*", "*/"),)),
    "Clojure": CommentSyntax((";",)),
    "Batchfile": CommentSyntax(("::", "REM ", "rem ", "@REM ", "@rem ")),
    "Visual Basic": CommentSyntax(("'", "REM ", "rem ")),
    "OCaml": CommentSyntax((), (("(*", "*)"),)),
    "F#": CommentSyntax(("//",), (("(*", "*)"),)),
    "Fortran": CommentSyntax(("!",)),
    "reStructuredText": CommentSyntax(),
}
_FIXED_FORM_FORTRAN = CommentSyntax(("c", "C", "*", "!"), column1=True)

_STRONG_LICENSE = re.compile(
    r"copyright|©|\(c\)\s*\d|spdx-license-identifier|licen[cs]ed (?:to|under)|under the terms of"
    r"|permission is hereby granted|all rights reserved|redistribution and use|free software"
    r"|you may not use this file|warrant",
    re.IGNORECASE,
)
_WEAK_LICENSE = re.compile(r"\blicen[cs]e[sd]?\b", re.IGNORECASE)
_CODING_LINE = re.compile(r"^[ \t\f]*#.*?coding[:=][ \t]*[-\w.]+")
_DOCSTRING_OPEN = re.compile(r"(?:[rRuU])?(\"\"\"|''')")


def _is_blank(line: str) -> bool:
    return not line.strip()


def _mentions_license(text: str, strong_only: bool = False) -> bool:
    return bool(_STRONG_LICENSE.search(text) or (not strong_only and _WEAK_LICENSE.search(text)))


def _line_leader(line: str, syntax: CommentSyntax) -> str | None:
    body = line if syntax.column1 else line.lstrip()
    for leader in syntax.line:
        if body.startswith(leader):
            return leader
    return None


def _block_end(lines: list[str], start: int, opener: str, closer: str) -> int | None:
    """The index after the line closing the block that opens `lines[start]`, if nothing but
    whitespace follows the closer on that line."""
    first = lines[start].lstrip()[len(opener):]
    pos = first.find(closer)
    if pos >= 0:
        return start + 1 if _is_blank(first[pos + len(closer):]) else None
    for i in range(start + 1, len(lines)):
        pos = lines[i].find(closer)
        if pos >= 0:
            return i + 1 if _is_blank(lines[i][pos + len(closer):]) else None
    return None


def _header_block(lines: list[str], start: int, syntax: CommentSyntax) -> int | None:
    """If a licence comment starts at `lines[start]`, the index after what is to be removed."""
    body = lines[start].lstrip()
    for opener, closer in syntax.blocks:  # blocks first: Lua's "--[[" also starts with "--"
        if body.startswith(opener):
            end = _block_end(lines, start, opener, closer)
            if end is not None and _mentions_license("\n".join(lines[start:end])):
                return end
            return None
    if syntax.docstring:
        match = _DOCSTRING_OPEN.match(body)
        if match:
            end = _block_end(lines, start, match.group(0), match.group(1))
            if end is not None and _mentions_license("\n".join(lines[start:end]), strong_only=True):
                return end
            return None
    if _line_leader(lines[start], syntax) is None:
        return None
    end, last = start, None
    while end < len(lines) and (leader := _line_leader(lines[end], syntax)) is not None:
        end += 1
    # Paragraphs of the run, split by comment lines with nothing after the marker.
    paragraph_start = start
    for i in range(start, end + 1):
        if i == end or _is_blank(_comment_body(lines[i], syntax)):
            if i > paragraph_start and _mentions_license("\n".join(lines[paragraph_start:i])):
                last = i
            paragraph_start = i + 1
    if last is None:
        return None
    while last < end and _is_blank(_comment_body(lines[last], syntax)):
        last += 1
    return last


def _comment_body(line: str, syntax: CommentSyntax) -> str:
    leader = _line_leader(line, syntax) or ""
    body = line if syntax.column1 else line.lstrip()
    return body[len(leader):].strip("/#*!;%- \t\r")


def _prologue_length(lines: list[str], syntax: CommentSyntax) -> int:
    """Lines at the top that stay: a shebang, a coding line, `<?php`, an XML declaration."""
    n = 0
    if n < len(lines) and lines[n].startswith("#!"):
        n += 1
    if n < len(lines) and n < 2 and "#" in syntax.line and _CODING_LINE.match(lines[n]):
        n += 1
    if n < len(lines) and (lines[n].strip() == "<?php" or re.match(r"<\?xml\b[^>]*\?>\s*$", lines[n])):
        n += 1
    return n


def strip_license_header(text: str, language: str | None, path: str = "") -> tuple[str, int]:
    """`text` without its licence header (module doc) and the number of lines removed."""
    syntax = COMMENT_SYNTAX.get(language or "", CommentSyntax())
    if language == "Fortran" and path.lower().endswith((".f", ".for", ".f77", ".fpp")):
        syntax = _FIXED_FORM_FORTRAN
    if not (syntax.line or syntax.blocks or syntax.docstring):
        return text, 0
    lines = text.split("\n")
    keep = _prologue_length(lines, syntax)
    pos, removed_to = keep, None
    while True:
        start = pos
        while start < len(lines) and _is_blank(lines[start]):
            start += 1
        if start == len(lines):
            break
        end = _header_block(lines, start, syntax)
        if end is None:
            break
        pos = removed_to = end
    if removed_to is None:
        return text, 0
    while removed_to < len(lines) and _is_blank(lines[removed_to]):
        removed_to += 1
    removed = removed_to - keep
    return "\n".join(lines[:keep] + lines[removed_to:]), removed


# ---------------------------------------------------------------------------------------------
# Per-file filters


def language_of(name: str, extensions: tuple[str, ...] = EXTENSIONS) -> str | None:
    """The language of an allowed file name (None when its extension is not allowed)."""
    if not name.endswith(extensions):
        return None
    for suffix in (name[name.rfind("."):] if "." in name else None, "Dockerfile", "Makefile"):
        if suffix and name.endswith(suffix) and suffix in EXTENSION_LANGUAGES:
            return EXTENSION_LANGUAGES[suffix]
    return "other"


def is_generated_name(name: str) -> bool:
    """A lock file, a generated name or a hashed bundler chunk (module doc)."""
    return name in LOCK_FILES or bool(_GENERATED_NAME.search(name)) or _has_hash_component(name)


def _has_hash_component(name: str) -> bool:
    if not name.endswith(_HASHED_SUFFIXES):
        return False
    stem = name[: name.rfind(".")]
    return any(_HEX_HASH.fullmatch(part) for part in _NAME_PARTS.split(stem))


def is_generated_path(path: str) -> bool:
    """Generated by its path alone: a generated name, a file in a dist/ or build/ output folder
    (not a build script), a declaration file in a declaration output folder (module doc)."""
    *folders, name = path.split("/")
    if is_generated_name(name):
        return True
    if not folders:
        return False
    if not OUTPUT_DIRS.isdisjoint(folders) and not name.endswith(OUTPUT_DIR_SCRIPTS):
        return True
    return bool(_DECLARATION_NAME.search(name)) and not DECLARATION_OUTPUT_DIRS.isdisjoint(folders)


def generated_by_content(text: str) -> bool:
    """A generated-file marker near the top or a source-map comment at the end (module doc)."""
    head = text[:GENERATED_SCAN_CHARS]
    if "enerat" in head.lower() and _GENERATED_MARKER.search(head):  # every marker says "generated"
        return True
    tail = text[-SOURCE_MAP_SCAN_CHARS:]
    return "sourceMappingURL" in tail and bool(_SOURCE_MAP_COMMENT.search(tail))


def is_minified(text: str) -> bool:
    """Lines of MINIFIED_LINE_CHARS+ characters with under MINIFIED_MAX_WHITESPACE spaces and tabs
    and at least MINIFIED_MIN_PUNCTUATION of `;{}()` hold MINIFIED_MIN_SHARE of the text."""
    minified = 0
    for line in text.splitlines():
        n = len(line)
        if n < MINIFIED_LINE_CHARS or line.count(" ") + line.count("\t") >= MINIFIED_MAX_WHITESPACE * n:
            continue
        if sum(map(line.count, ";{}()")) >= MINIFIED_MIN_PUNCTUATION * n:
            minified += n
    return minified >= MINIFIED_MIN_SHARE * len(text)


def decode_source(data: bytes) -> str:
    """UTF-8 (a BOM removed), or UTF-16/32 announced by a BOM; raises Dropped."""
    if data.startswith((codecs.BOM_UTF32_LE, codecs.BOM_UTF32_BE)):
        encoding = "utf-32"
    elif data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        encoding = "utf-16"
    else:
        if b"\0" in data:
            raise Dropped("binary")
        encoding = "utf-8-sig"
    try:
        text = data.decode(encoding)
    except UnicodeDecodeError:
        raise Dropped("undecodable") from None
    if "\0" in text:
        raise Dropped("binary")
    return text


def text_measures(text: str) -> tuple[int, float, float, float]:
    """(max line length, mean line length, alphanumeric fraction, alphabetic chars per token)."""
    lines = text.splitlines()
    max_line = max(map(len, lines), default=0)
    mean_line = len(text) / len(lines) if lines else 0.0
    if text.isascii():
        raw = text.encode("ascii")
        classes = _ASCII_CLASS[np.frombuffer(raw, dtype=np.uint8)]
        counts = np.bincount(classes, minlength=4)
        alpha, alnum = int(counts[1]), int(counts[1] + counts[2])
        starts = classes[1:] != classes[:-1]
        starts &= classes[1:] != 0
        tokens = int(np.count_nonzero(starts)) + int(classes.size > 0 and classes[0] != 0)
        tokens -= len(_CONTRACTION.findall(raw))
    else:
        alnum = sum(map(str.isalnum, text))
        alpha = sum(map(str.isalpha, text))
        tokens = len(TOKEN_PATTERN.findall(text))
    return max_line, mean_line, alnum / len(text) if text else 0.0, alpha / tokens if tokens else 0.0


@dataclass(frozen=True)
class Options:
    licenses: frozenset
    extensions: tuple[str, ...]
    max_line_length: int
    max_mean_line_length: float
    min_alnum_fraction: float
    min_alpha_per_token: float
    max_file_bytes: int
    max_repo_bytes: int
    strip_headers: bool


def _clean_text(raw: str, path: str, language: str, opts: Options, stats: ShardStats) -> str:
    """The document text of a decoded file, or Dropped."""
    if raw.startswith("\ufeff"):
        raw = raw[1:]
    if "\0" in raw:
        raise Dropped("binary")
    if not raw.strip():
        raise Dropped("empty", raw)
    if generated_by_content(raw):
        raise Dropped("generated", raw)
    text, removed = strip_license_header(raw, language, path) if opts.strip_headers else (raw, 0)
    if removed:
        stats.counters["files_header_stripped"] += 1
        stats.counters["header_lines_stripped"] += removed
    if not text.strip():
        raise Dropped("empty", text)
    max_line, mean_line, alnum, alpha_per_token = text_measures(text)
    if max_line >= MINIFIED_LINE_CHARS and is_minified(text):  # before the line filters it would fail
        raise Dropped("generated", text)
    if max_line > opts.max_line_length:
        raise Dropped("max_line_length", text)
    if mean_line > opts.max_mean_line_length:
        raise Dropped("mean_line_length", text)
    if alnum < opts.min_alnum_fraction:
        raise Dropped("alnum_fraction", text)
    if alpha_per_token < opts.min_alpha_per_token:
        raise Dropped("alpha_per_token", text)
    return text


# ---------------------------------------------------------------------------------------------
# Input: repositories as lists of files


@dataclass
class RepoFile:
    """One file of a repository. Content comes from `data`/`text` (already read) or `reader(n)`
    (reads at most n bytes); `problem` is a reason found while listing."""

    path: str
    size: int = 0
    problem: str | None = None
    data: bytes | None = None
    text: str | None = None
    reader: Callable[[int], bytes] | None = None

    def content(self, limit: int) -> bytes | str:
        if self.text is not None:
            return self.text
        if self.data is not None:
            return self.data
        if self.reader is None:
            raise Dropped("unreadable")
        return self.reader(limit)


def _archive_stem(path: Path) -> str:
    name = path.name
    for suffix in ARCHIVE_SUFFIXES:
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return path.stem


_UNSAFE_CHARACTER = re.compile(r"[\x00-\x1f\x7f\\]")


def _safe_member_name(name: str) -> str | None:
    """The member's path inside the archive, or None if it is unsafe (module doc)."""
    if not name or _UNSAFE_CHARACTER.search(name) or not _encodable(name):
        return None
    if name.startswith("/") or re.match(r"[A-Za-z]:", name):
        return None
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if not parts or ".." in parts:
        return None
    return "/".join(parts)


def _printable(name: str) -> str:
    """A name as it can be stored: bytes that were not UTF-8 (surrogate escapes) become U+FFFD."""
    if _encodable(name):
        return name
    try:
        raw = name.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        raw = name.encode("utf-8", "surrogatepass")
    return raw.decode("utf-8", "replace")


def _strip_top_directory(files: list[RepoFile]) -> None:
    """Remove the single top-level directory every safe member lies under (GitHub's `name-ref/`)."""
    safe = [f for f in files if f.problem not in ("unsafe_path", "corrupt_archive")]
    if not safe:
        return
    tops = {f.path.split("/", 1)[0] for f in safe}
    if len(tops) == 1 and all("/" in f.path for f in safe):
        for f in safe:
            f.path = f.path.split("/", 1)[1]


def _read_directory(root: Path, opts: Options) -> list[RepoFile]:
    files: list[RepoFile] = []

    def reader(path: Path) -> Callable[[int], bytes]:
        def read(limit: int) -> bytes:
            try:
                with open(path, "rb") as f:
                    return f.read(limit)
            except OSError:
                raise Dropped("unreadable") from None
        return read

    def walk(directory: Path, prefix: str) -> None:
        try:
            entries = sorted(os.scandir(directory), key=lambda e: e.name)
        except OSError:
            files.append(RepoFile(prefix.rstrip("/") or ".", problem="unreadable"))
            return
        for entry in entries:
            rel = prefix + entry.name
            try:
                if not _encodable(entry.name):  # not UTF-8: the name cannot be stored
                    files.append(RepoFile(_printable(rel), problem="unsafe_path"))
                elif entry.is_symlink():
                    files.append(RepoFile(rel, problem="unsafe_link"))
                elif entry.is_dir(follow_symlinks=False):
                    if entry.name not in VCS_DIRS:
                        walk(Path(entry.path), rel + "/")
                elif entry.is_file(follow_symlinks=False):
                    files.append(RepoFile(rel, size=entry.stat(follow_symlinks=False).st_size,
                                          reader=reader(Path(entry.path))))
                else:
                    files.append(RepoFile(rel, problem="special_file"))
            except OSError:
                files.append(RepoFile(rel, problem="unreadable"))

    walk(root, "")
    return files


def _wanted(path: str, opts: Options) -> bool:
    """Whether a member's content must be read: a candidate document or licence evidence."""
    name = path.rsplit("/", 1)[-1]
    return license_file_depth(path) is not None or _manifest_depth(path) is not None or (
        name.endswith(opts.extensions) and not is_generated_path(path)
    )


def _read_tar(path: Path, opts: Options) -> list[RepoFile]:
    """All members of a tar stream, the wanted ones read into memory; damage ends the list with one
    corrupt_archive entry."""
    files: list[RepoFile] = []
    budget = opts.max_repo_bytes
    reading = None
    try:
        with tarfile.open(path, mode="r|*") as tar:
            for member in tar:
                if member.isdir():
                    continue
                name = _safe_member_name(member.name)
                entry = RepoFile(name or _printable(member.name), size=max(member.size, 0))
                files.append(entry)
                if name is None:
                    entry.problem = "unsafe_path"
                elif member.issym() or member.islnk():
                    entry.problem = "unsafe_link"
                elif not member.isreg():
                    entry.problem = "special_file"
                elif member.size > opts.max_file_bytes:
                    entry.problem = "too_large"
                elif _wanted(name, opts):
                    evidence = license_file_depth(name) is not None or _manifest_depth(name) is not None
                    if member.size > budget and not evidence:  # licence evidence is always read
                        entry.problem = "too_large"
                        continue
                    reading = entry
                    handle = tar.extractfile(member)
                    entry.data = handle.read(opts.max_file_bytes + 1) if handle else b""
                    if len(entry.data) != member.size:
                        raise EOFError("member shorter than its header says")
                    budget -= len(entry.data)
                    reading = None
    except ARCHIVE_DAMAGE:
        if reading is not None:
            files.remove(reading)  # the member being read is the damaged one
        files.append(RepoFile(f"<damage after {len(files)} members>", problem="corrupt_archive"))
    return files


def _zip_member_problem(info: zipfile.ZipInfo) -> str | None:
    mode = info.external_attr >> 16
    if stat.S_ISLNK(mode):
        return "unsafe_link"
    if stat.S_IFMT(mode) not in (0, stat.S_IFREG):
        return "special_file"
    return None


def _read_zip(path: Path, opts: Options, stack: contextlib.ExitStack) -> list[RepoFile]:
    try:
        archive = stack.enter_context(zipfile.ZipFile(path))
        infos = archive.infolist()
    except ARCHIVE_DAMAGE:
        return _scan_zip_local_headers(path, opts)
    files = []
    for info in infos:
        if info.is_dir():
            continue
        name = _safe_member_name(info.filename)
        entry = RepoFile(name or _printable(info.filename), size=info.file_size)
        files.append(entry)
        if name is None:
            entry.problem = "unsafe_path"
        elif problem := _zip_member_problem(info):
            entry.problem = problem
        elif info.file_size > opts.max_file_bytes:
            entry.problem = "too_large"
        else:
            def read(limit: int, info: zipfile.ZipInfo = info) -> bytes:
                try:
                    with archive.open(info) as member:
                        return member.read(limit)
                except ARCHIVE_DAMAGE:
                    raise Dropped("corrupt_archive") from None
            entry.reader = read
    return files


_LOCAL_HEADER = struct.Struct("<4sHHHHHIIIHH")


def _scan_zip_local_headers(path: Path, opts: Options) -> list[RepoFile]:
    """A zip without a readable central directory (a cut download), read member by member from its
    local headers; symlinks cannot be told apart there (their content, the target, is just text)."""
    files: list[RepoFile] = []
    try:
        size = path.stat().st_size
        data = path.read_bytes() if size <= opts.max_repo_bytes else b""
    except OSError:
        data = b""
    pos = 0
    while pos + _LOCAL_HEADER.size <= len(data) and data[pos : pos + 4] == b"PK\x03\x04":
        _, _, flags, method, _, _, crc, csize, usize, nlen, xlen = _LOCAL_HEADER.unpack_from(data, pos)
        start = pos + _LOCAL_HEADER.size + nlen + xlen
        raw_name = data[pos + _LOCAL_HEADER.size : pos + _LOCAL_HEADER.size + nlen]
        if start > len(data):
            break
        raw = raw_name.decode("utf-8" if flags & 0x800 else "cp437", "replace")
        try:
            content, end = _inflate_member(data, start, method, flags, csize, opts.max_file_bytes)
        except ARCHIVE_DAMAGE:
            break
        pos = end
        if raw.endswith("/"):
            continue
        name = _safe_member_name(raw)
        entry = RepoFile(name or raw, size=usize if not flags & 0x08 else len(content or b""))
        files.append(entry)
        if name is None:
            entry.problem = "unsafe_path"
        elif content is None:
            entry.problem = "too_large"
        elif not flags & 0x08 and zlib.crc32(content) != crc:
            entry.problem = "corrupt_archive"
        else:
            entry.data = content
    if pos < len(data) and data[pos : pos + 4] not in (b"PK\x01\x02", b"PK\x05\x06"):
        files.append(RepoFile(f"<damage after {len(files)} members>", problem="corrupt_archive"))
    elif not data:
        files.append(RepoFile("<not an archive>", problem="corrupt_archive"))
    return files


def _inflate_member(data: bytes, start: int, method: int, flags: int, csize: int, limit: int) -> tuple[bytes | None, int]:
    """(content, or None when over `limit`; the offset after the member and its data descriptor)."""
    if flags & 0x01:
        raise NotImplementedError("encrypted member")
    if not flags & 0x08:
        if start + csize > len(data):
            raise EOFError("member cut")
        chunk = data[start : start + csize]
        if method == 0:
            return (chunk if len(chunk) <= limit else None), start + csize
        if method != 8:
            raise NotImplementedError(f"compression method {method}")
        inflater = zlib.decompressobj(-15)
        out = inflater.decompress(chunk, limit + 1)
        if not inflater.eof and len(out) <= limit:
            raise EOFError("deflate stream cut")
        return (out if len(out) <= limit else None), start + csize
    if method != 8:  # a stored member with a data descriptor has no length to go by
        raise NotImplementedError("stored member with data descriptor")
    inflater = zlib.decompressobj(-15)
    out, size, pos = [], 0, start
    while not inflater.eof:
        if pos >= len(data):
            raise EOFError("deflate stream cut")
        chunk = data[pos : pos + 65536]
        piece = inflater.decompress(chunk)
        pos += len(chunk)
        size += len(piece)
        if size <= limit:
            out.append(piece)
    end = pos - len(inflater.unused_data)
    end += 16 if data[end : end + 4] == b"PK\x07\x08" else 12
    return (b"".join(out) if size <= limit else None), end


def _check_duplicates(files: list[RepoFile]) -> None:
    seen: set[str] = set()
    for f in files:
        if f.problem in ("unsafe_path", "corrupt_archive"):
            continue
        if f.path in seen:
            f.problem = f.problem or "duplicate_path"
        seen.add(f.path)


# ---------------------------------------------------------------------------------------------
# Documents


def _row(repository: str, file: RepoFile, verdict: Verdict, language: str | None, text: str, size: int) -> dict:
    return {
        "id": f"{SOURCE}/{repository}/{file.path}",
        "source": SOURCE,
        "text": text,
        "repository": repository,
        "path": file.path,
        "license": verdict.license,
        "license_source": verdict.source,
        "license_metadata": verdict.metadata,
        "language": language,
        "size": size,
    }


def _judge(file: RepoFile, verdict: Verdict, opts: Options, stats: ShardStats) -> tuple[str | None, str, int, str | None]:
    """(reason or None, text, size, language) of one file."""
    name = file.path.rsplit("/", 1)[-1]
    size = file.size
    language = language_of(name, opts.extensions)
    try:
        if file.problem in ("corrupt_archive", "unsafe_path", "unsafe_link", "special_file", "duplicate_path",
                            "unreadable"):
            raise Dropped(file.problem)
        if not verdict.allowed:
            raise Dropped(f"license_not_allowed:{verdict.license}")
        if license_file_depth(file.path) is not None:
            raise Dropped("license_file")
        if is_generated_path(file.path):
            raise Dropped("generated")
        if language is None:
            raise Dropped("extension_not_allowed")
        if file.problem:
            raise Dropped(file.problem)  # too_large
        content = file.content(opts.max_file_bytes + 1)
        if isinstance(content, str):  # a table's string: lone surrogates cannot be written
            size = len(content.encode("utf-8", "surrogatepass"))
            if not _encodable(content):
                raise Dropped("undecodable")
        else:
            size = len(content)
        if size > opts.max_file_bytes:
            raise Dropped("too_large")
        stats.counters["bytes_read"] += size
        raw = decode_source(content) if isinstance(content, bytes) else content
        text = _clean_text(raw, file.path, language, opts, stats)
    except Dropped as dropped:
        return dropped.reason, dropped.text if _encodable(dropped.text) else "", size, language
    return None, text, size, language


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _emit(repository: str, files: Iterable[RepoFile], verdict: Verdict, opts: Options, stats: ShardStats,
          dropped: DroppedDocuments) -> Iterator[dict]:
    for file in files:
        stats.docs_in += 1
        reason, text, size, language = _judge(file, verdict, opts, stats)
        row = _row(repository, file, verdict, language, text, size)
        if reason:
            stats.drop(reason)
            dropped.add(row, reason)
        else:
            stats.docs_out += 1
            stats.counters["text_chars_out"] += len(text)
            yield row


def _repository_documents(repository: str, files: list[RepoFile], opts: Options, stats: ShardStats,
                          dropped: DroppedDocuments) -> Iterator[dict]:
    files.sort(key=lambda f: f.path)  # stable: a repeated path keeps its archive order
    _check_duplicates(files)
    evidence = LicenseEvidence()
    for f in files:
        if f.problem is None and evidence.wants(f.path):
            try:
                evidence.offer(f.path, f.content(LICENSE_FILE_MAX_BYTES))
            except Dropped:
                pass
    verdict = evidence.verdict(opts.licenses, stats)
    yield from _emit(repository, files, verdict, opts, stats, dropped)


# ---------------------------------------------------------------------------------------------
# Tables


def _resolve_fields(names: Iterable[str]) -> dict[str, str | None]:
    names = list(names)
    return {key: next((a for a in aliases if a in names), None) for key, aliases in ROW_FIELDS.items()}


def _table_rows(path: Path) -> Iterator[dict | None]:
    """Rows of a table as dicts with keys repository/path/content/license (None: a bad row). Raises
    on damage to the file itself."""
    name = path.name.lower()
    if name.endswith(".parquet"):
        parquet = pq.ParquetFile(path)
        fields = _resolve_fields(parquet.schema_arrow.names)
        columns = [c for c in fields.values() if c]
        for batch in parquet.iter_batches(batch_size=256, columns=columns):
            data = {key: batch.column(col).to_pylist() if col else [None] * batch.num_rows for key, col in fields.items()}
            for i in range(batch.num_rows):
                yield {key: data[key][i] for key in fields}
        return
    opener = gzip.open if name.endswith(".gz") else open
    with opener(path, "rb") as stream:
        for line in stream:
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except ValueError:
                yield None
                continue
            if not isinstance(row, dict):
                yield None
                continue
            fields = _resolve_fields(row.keys())
            yield {key: row.get(col) if col else None for key, col in fields.items()}


TABLE_DAMAGE = (OSError, EOFError, zlib.error, ValueError, pa.ArrowException)


def _valid_row(row: dict | None) -> bool:
    return (
        row is not None
        and isinstance(row.get("repository"), str) and bool(row["repository"].strip("/"))
        and _encodable(row["repository"])
        and isinstance(row.get("path"), str) and bool(row["path"]) and _encodable(row["path"])
        and isinstance(row.get("content"), (str, bytes))
    )


def _table_documents(path: Path, opts: Options, stats: ShardStats, dropped: DroppedDocuments) -> Iterator[dict]:
    # Pass 1: each repository's licence evidence (its licence rows may come after its code rows).
    evidence: dict[str, LicenseEvidence] = {}
    try:
        for row in _table_rows(path):
            if not _valid_row(row):
                continue
            repo = evidence.setdefault(row["repository"], LicenseEvidence())
            repo.add_column(row.get("license"))
            name = _safe_member_name(row["path"])
            if name is not None and repo.wants(name):
                repo.offer(name, row["content"])
    except TABLE_DAMAGE:
        pass  # pass 2 meets the same damage and counts it
    verdicts = {name: ev.verdict(opts.licenses, stats) for name, ev in evidence.items()}
    # Pass 2: the rows in order.
    seen: set[bytes] = set()
    rows = _table_rows(path)
    while True:
        try:
            row = next(rows)
        except StopIteration:
            break
        except TABLE_DAMAGE:
            stats.docs_in += 1
            stats.drop("corrupt_table")
            break
        if not _valid_row(row):
            stats.docs_in += 1
            stats.drop("corrupt_row")
            continue
        repository = row["repository"]
        name = _safe_member_name(row["path"])
        file = RepoFile(name or row["path"], problem=None if name else "unsafe_path")
        if isinstance(row["content"], bytes):
            file.data = row["content"]
        else:
            file.text = row["content"]
        file.size = len(file.data) if file.data is not None else len(file.text.encode("utf-8", "surrogatepass"))
        key = hashlib.blake2b(f"{repository}\0{file.path}".encode("utf-8", "surrogatepass"), digest_size=12).digest()
        if key in seen:
            file.problem = file.problem or "duplicate_path"
        seen.add(key)
        if repository not in verdicts:  # pass 1 stopped earlier than pass 2 (cannot happen on a stable file)
            verdicts[repository] = LicenseEvidence().verdict(opts.licenses, stats)
        yield from _emit(repository, [file], verdicts[repository], opts, stats, dropped)


# ---------------------------------------------------------------------------------------------
# Phase 0: files to documents


def input_kind(path: str | Path) -> str:
    """"directory", "zip", "tar" or "table" for an input path; ValueError for anything else."""
    path = Path(path)
    if path.is_dir():
        return "directory"
    name = path.name.lower()
    if name.endswith(".zip"):
        return "zip"
    if name.endswith(tuple(s for s in ARCHIVE_SUFFIXES if s != ".zip")):
        return "tar"
    if name.endswith(TABLE_SUFFIXES):
        return "table"
    if not path.exists():
        raise FileNotFoundError(path)
    raise ValueError(f"{path}: not a directory, archive ({', '.join(ARCHIVE_SUFFIXES)}) or table "
                     f"({', '.join(TABLE_SUFFIXES)})")


def extract_github(
    input_path: str,
    output_path: str,
    *,
    dropped_path: str | None = None,
    repository: str | None = None,
    licenses: Iterable[str] = ALLOWED_LICENSES,
    extensions: Iterable[str] = EXTENSIONS,
    max_line_length: int = 1000,
    max_mean_line_length: float = 100,
    min_alnum_fraction: float = 0.25,
    min_alpha_per_token: float = 1.5,
    max_file_bytes: int = 1_000_000,
    max_repo_bytes: int = 1 << 30,
    strip_headers: bool = True,
) -> ShardStats:
    """One repository directory, repository archive or code table to a parquet shard of code
    documents (module doc). `max_repo_bytes` bounds what one archive holds in memory (the files
    read from a tar stream; a cut zip read whole)."""
    opts = Options(
        licenses=frozenset(licenses), extensions=tuple(extensions), max_line_length=max_line_length,
        max_mean_line_length=max_mean_line_length, min_alnum_fraction=min_alnum_fraction,
        min_alpha_per_token=min_alpha_per_token, max_file_bytes=max_file_bytes,
        max_repo_bytes=max_repo_bytes, strip_headers=strip_headers,
    )
    path = Path(input_path)
    if not path.exists():
        raise FileNotFoundError(path)
    kind = input_kind(path)
    stats = ShardStats()

    def documents(dropped: DroppedDocuments) -> Iterator[dict]:
        if kind == "table":
            yield from _table_documents(path, opts, stats, dropped)
            return
        with contextlib.ExitStack() as stack:
            if kind == "directory":
                name, files = repository or path.resolve().name, _read_directory(path, opts)
            else:
                name = repository or _archive_stem(path)
                files = _read_zip(path, opts, stack) if kind == "zip" else _read_tar(path, opts)
                _strip_top_directory(files)
            yield from _repository_documents(name, files, opts, stats, dropped)

    with DroppedDocuments(dropped_path, GITHUB_SCHEMA) as dropped:
        stats.bytes_out = write_documents(output_path, documents(dropped), GITHUB_SCHEMA)
    return stats.check()


# ---------------------------------------------------------------------------------------------
# Exact file dedup: three phases over line_dedup's file format (one entry per document, line 0)


def _text_hashes(texts: list[str]) -> np.ndarray:
    return line_dedup._sha1_heads([t.encode("utf-8") for t in texts])


def hash_files(input_path: str, output_dir: str, *, shard_index: int, partitions: int) -> ShardStats:
    """Phase 1, one task per document shard: `output_dir/part-<p:05d>.npy` for every partition p
    (line_dedup.HASH_DTYPE entries (hash, doc, 0), sorted by hash then doc) and `meta.json`.
    Every document is counted out. Counter: files_hashed."""
    if not 1 <= partitions <= line_dedup.MAX_PARTITIONS:
        raise ValueError(f"partitions must be in 1..{line_dedup.MAX_PARTITIONS}, not {partitions}")
    stats = ShardStats()
    chunks = []
    for batch in read_document_batches(input_path, columns=["text"]):
        entries = np.zeros(len(batch), dtype=line_dedup.HASH_DTYPE)
        entries["hash"] = _text_hashes([doc["text"] for doc in batch])
        entries["doc"] = np.arange(stats.docs_in, stats.docs_in + len(batch), dtype=np.uint32)
        chunks.append(entries)
        stats.docs_in += len(batch)
    entries = np.concatenate(chunks) if chunks else np.zeros(0, dtype=line_dedup.HASH_DTYPE)
    entries = entries[np.argsort(entries["hash"], kind="stable")]
    bounds = [*np.searchsorted(entries["hash"], line_dedup._partition_starts(partitions)).tolist(), entries.size]
    with atomic_dir(output_dir) as tmp:
        for p in range(partitions):
            stats.bytes_out += line_dedup._save(tmp / line_dedup.partition_file(p), entries[bounds[p] : bounds[p + 1]])
        stats.bytes_out += line_dedup._save_meta(
            tmp, kind=FILES_KIND, shard_index=shard_index, partitions=partitions, documents=stats.docs_in,
            files_hashed=int(entries.size), counts=np.diff(bounds).tolist(),
        )
    stats.docs_out = stats.docs_in
    stats.counters["files_hashed"] = int(entries.size)
    return stats.check()


def find_duplicate_files(hash_files: list[str], output_dir: str, *, partition: int) -> ShardStats:
    """Phase 2, one task per partition: `hash_files` is `part-<partition>.npy` of every shard's
    hash directory, in shard order. Writes `output_dir/shard-<s:05d>.npy` for every shard, the
    documents to remove (line_dedup.DUPLICATE_DTYPE, line 0): every copy of a text but the first in
    (shard, row) order. Counters: files_seen, duplicate_files, distinct_files, repeated_files
    (distinct texts that occur more than once)."""
    for path in hash_files:
        if line_dedup._meta(path).get("kind") != FILES_KIND:
            raise ValueError(f"{path} was not written by stages.github.hash_files")
    inner = line_dedup.find_duplicate_lines(hash_files, output_dir, partition=partition)
    stats = ShardStats(bytes_out=inner.bytes_out)
    for old, new in (("lines_seen", "files_seen"), ("duplicate_lines", "duplicate_files"),
                     ("distinct_lines", "distinct_files"), ("repeated_lines", "repeated_files")):
        stats.counters[new] = inner.counters[old]
    return stats.check()


def remove_duplicate_files(
    input_path: str, duplicate_files: list[str], output_path: str, *, dropped_path: str | None = None
) -> ShardStats:
    """Phase 3, one task per document shard: `duplicate_files` is this shard's `shard-<s:05d>.npy`
    from every partition's duplicates directory. The listed documents are dropped as `duplicate`
    (to the audit output with their text), all others pass unchanged. Raises when the lists do not
    fit the shard (a row out of range, a text without the recorded hash). Counter: duplicate_bytes
    (UTF-8 bytes of the removed texts)."""
    dups = line_dedup._duplicates_of_shard(duplicate_files)
    if dups.size and dups["line"].any():
        raise ValueError("duplicates files list lines, not files: made by stages.line_dedup?")
    num_docs = pq.ParquetFile(input_path).metadata.num_rows
    if dups.size and int(dups["doc"][-1]) >= num_docs:
        raise ValueError(f"duplicates name document {int(dups['doc'][-1])} but {input_path} has {num_docs}")
    listed = dict(zip(dups["doc"].tolist(), dups["hash"].tolist()))
    removed_bytes = 0
    position = 0

    def judge(batch: list[dict]) -> Iterator[tuple[dict, str | None]]:
        nonlocal position, removed_bytes
        first, position = position, position + len(batch)
        rows = [i for i in range(first, position) if i in listed]
        texts = [batch[i - first]["text"] for i in rows]
        if rows and not np.array_equal(_text_hashes(texts), np.array([listed[i] for i in rows], dtype=np.uint64)):
            raise ValueError(f"{input_path}: a document to remove does not have the recorded hash; the "
                             "duplicates files were made from other documents")
        removed_bytes += sum(len(t.encode("utf-8")) for t in texts)
        for i, doc in enumerate(batch, start=first):
            yield doc, DUPLICATE if i in listed else None

    stats = filter_shard(input_path, output_path, [], judge, dropped_path=dropped_path)
    stats.counters["duplicate_bytes"] = removed_bytes
    return stats
