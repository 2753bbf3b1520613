"""stages/github.py: code repositories to documents, licences, filters, header stripping, damage,
and the corpus-wide exact file dedup. Real packages from samples/github/ plus small made-up repos."""

import gzip
import io
import json
import os
import stat
import tarfile
import zipfile
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from stages import github
from stages.documents import read_documents
from stages.github import (
    GITHUB_SCHEMA,
    detect_license,
    extract_github,
    find_duplicate_files,
    generated_by_content,
    hash_files,
    is_generated_path,
    is_minified,
    license_ids,
    remove_duplicate_files,
    strip_license_header,
    text_measures,
)
from tests.support import SAMPLES

CODE = SAMPLES / "github"
MINIMIST = CODE / "npm_minimist-1.2.8"
MWXML = CODE / "pypi_mwxml-0.3.8-py2.py3-none-any"
WARCIO = CODE / "pypi_warcio-1.8.1-py2.py3-none-any"
APACHE_TEXT = (WARCIO / "warcio-1.8.1.dist-info" / "licenses" / "LICENSE").read_text()
MIT_TEXT = (MWXML / "mwxml-0.3.8.dist-info" / "LICENSE").read_text()

# The notice the GPL-3.0 asks to put at the start of each source file ("How to Apply These Terms").
GPL_NOTICE = """\
Copyright (C) 2021  Jane Hacker

This program is free software: you can redistribute it and/or modify
it under the terms of the GNU General Public License as published by
the Free Software Foundation, either version 3 of the License, or
(at your option) any later version.

This program is distributed in the hope that it will be useful,
but WITHOUT ANY WARRANTY; without even the implied warranty of
MERCHANTABILITY or FITNESS FOR A PARTICULAR PURPOSE.  See the
GNU General Public License for more details.

You should have received a copy of the GNU General Public License
along with this program.  If not, see <https://www.gnu.org/licenses/>.
"""

APACHE_HEADER = """\
/*
 * Copyright 2019 The Example Authors
 *
 * Licensed under the Apache License, Version 2.0 (the "License");
 * you may not use this file except in compliance with the License.
 * You may obtain a copy of the License at
 *
 *     http://www.apache.org/licenses/LICENSE-2.0
 *
 * Unless required by applicable law or agreed to in writing, software
 * distributed under the License is distributed on an "AS IS" BASIS,
 * WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
 * See the License for the specific language governing permissions and
 * limitations under the License.
 */
"""

# A few lines of ordinary code that pass every filter.
PY_BODY = "def add(first, second):\n    return first + second\n\n\nprint(add(1, 2))\n"


def extract(src, tmp_path: Path, name: str = "out", **options):
    out, dropped = tmp_path / f"{name}.parquet", tmp_path / f"{name}.dropped.parquet"
    stats = extract_github(str(src), str(out), dropped_path=str(dropped), **options)
    return stats, list(read_documents(out)), list(read_documents(dropped))


def make_repo(root: Path, files: dict[str, str | bytes]) -> Path:
    for rel, content in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content.encode() if isinstance(content, str) else content)
    return root


def reasons(dropped: list[dict]) -> dict[str, str]:
    return {d["path"]: d["drop_reason"] for d in dropped}


def make_tar(src: Path, dest: Path, top: str) -> Path:
    with tarfile.open(dest, "w:gz") as tar:
        tar.add(src, arcname=top)
    return dest


def make_zip(src: Path, dest: Path, top: str, stream=None) -> Path:
    target = stream if stream is not None else dest
    with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(p for p in src.rglob("*") if p.is_file()):
            archive.writestr(f"{top}/{path.relative_to(src).as_posix()}", path.read_bytes())
    return dest


def kept_view(docs: list[dict]) -> list[tuple]:
    return [(d["id"], d["text"], d["license"], d["language"], d["size"]) for d in docs]


# ---------------------------------------------------------------------------------------------
# The real packages


def test_minimist_directory(tmp_path):
    stats, docs, dropped = extract(MINIMIST, tmp_path)
    assert stats.docs_in == 24 == stats.docs_out + sum(stats.dropped.values())
    assert stats.docs_out == len(docs) == 16
    assert dict(stats.dropped) == {"extension_not_allowed": 4, "license_file": 1, "alpha_per_token": 3}
    why = reasons(dropped)
    assert why["package/LICENSE"] == "license_file"
    assert why["package/package.json"] == why["package/.eslintrc"] == "extension_not_allowed"
    # minimist's option-parsing tests are mostly short strings: under 1.5 letters a token
    assert {p for p, r in why.items() if r == "alpha_per_token"} == {
        "package/test/dotted.js", "package/test/parse.js", "package/test/short.js"}
    by_path = {d["path"]: d for d in docs}
    index = by_path["package/index.js"]
    assert index["id"] == "github/npm_minimist-1.2.8/package/index.js"
    assert index["text"] == (MINIMIST / "package" / "index.js").read_text()  # no header to strip
    assert (index["license"], index["license_source"], index["license_metadata"]) == ("MIT", "file", "MIT")
    assert (index["language"], index["size"], index["source"]) == ("JavaScript", 6196, "github")
    readme = by_path["package/README.md"]
    assert readme["text"] == (MINIMIST / "package" / "README.md").read_text() and readme["language"] == "Markdown"
    assert readme["text"].startswith("# minimist <sup>")
    assert [d["path"] for d in docs] == sorted(d["path"] for d in docs)
    assert stats.counters["license_disagreements"] == 0 and stats.counters["license_from_file"] == 1
    assert pq.read_schema(tmp_path / "out.parquet") == GITHUB_SCHEMA


def test_python_wheels(tmp_path):
    stats, docs, dropped = extract(MWXML, tmp_path, "mwxml")
    assert (stats.docs_in, stats.docs_out) == (49, 38)
    assert stats.dropped["empty"] == 5  # empty __init__.py files
    assert reasons(dropped)["mwxml-0.3.8.dist-info/LICENSE"] == "license_file"
    assert {d["license"] for d in docs} == {"MIT"} and {d["language"] for d in docs} == {"Python"}
    init = next(d for d in docs if d["path"] == "mwxml/__init__.py")
    assert init["text"].startswith('"""\nThis library contains')  # a docstring that is not a licence stays

    stats, docs, dropped = extract(WARCIO, tmp_path, "warcio")
    assert (stats.docs_in, stats.docs_out) == (26, 18)
    # LICENSE (the Apache text without its title line) and NOTICE in dist-info/licenses/
    assert {p for p, r in reasons(dropped).items() if r == "license_file"} == {
        "warcio-1.8.1.dist-info/licenses/LICENSE", "warcio-1.8.1.dist-info/licenses/NOTICE"}
    assert {(d["license"], d["license_source"], d["license_metadata"]) for d in docs} == {
        ("Apache-2.0", "file", "Apache-2.0")}  # METADATA: "License: Apache 2.0" + classifier
    assert stats.counters["license_disagreements"] == 0


def test_archives_and_table_give_the_directory_documents(tmp_path):
    _, from_dir, _ = extract(MINIMIST, tmp_path, "dir")
    tar = make_tar(MINIMIST, tmp_path / "npm_minimist-1.2.8.tar.gz", "npm_minimist-1.2.8")
    zipped = make_zip(MINIMIST, tmp_path / "npm_minimist-1.2.8.zip", "npm_minimist-1.2.8")
    table = tmp_path / "code.jsonl"
    with open(table, "w") as f:
        for path in sorted(p for p in MINIMIST.rglob("*") if p.is_file()):
            row = {"repository": "npm_minimist-1.2.8", "path": path.relative_to(MINIMIST).as_posix(),
                   "content": path.read_text(), "license": "mit"}
            f.write(json.dumps(row) + "\n")
    for src in (tar, zipped, table):
        stats, docs, _ = extract(src, tmp_path, src.name)
        assert kept_view(docs) == kept_view(from_dir), src.name
        assert (stats.docs_in, stats.docs_out) == (24, 16)


def test_output_is_byte_identical(tmp_path):
    tar = make_tar(MWXML, tmp_path / "mwxml.tar.gz", "mwxml-main")
    for src in (MWXML, tar):
        extract(src, tmp_path, "a")
        extract(src, tmp_path, "b")
        assert (tmp_path / "a.parquet").read_bytes() == (tmp_path / "b.parquet").read_bytes()
        assert (tmp_path / "a.dropped.parquet").read_bytes() == (tmp_path / "b.dropped.parquet").read_bytes()


# ---------------------------------------------------------------------------------------------
# Licences


def test_gpl_repository_is_dropped(tmp_path):
    header = "".join(f"// {line}".rstrip() + "\n" for line in GPL_NOTICE.splitlines())
    repo = make_repo(tmp_path / "gpl-tool", {
        "COPYING": GPL_NOTICE,
        "src/main.c": header + "#include <stdio.h>\n\nint main(void) { puts(\"hello world\"); return 0; }\n",
        "README.md": "# gpl-tool\n\nA small tool.\n",
        "logo.png": b"\x89PNG\r\n\x1a\n\0\0",
    })
    stats, docs, dropped = extract(repo, tmp_path)
    assert docs == [] and stats.docs_in == 4
    assert dict(stats.dropped) == {"license_not_allowed:GPL-3.0": 4}
    assert {d["license"] for d in dropped} == {"GPL-3.0"}


def test_file_text_wins_over_metadata(tmp_path):
    repo = make_repo(tmp_path / "relicensed", {
        "LICENSE": APACHE_TEXT,
        "package.json": json.dumps({"name": "relicensed", "license": "MIT"}),
        "lib/index.js": "function greet(name) {\n  return 'hello ' + name;\n}\nmodule.exports = greet;\n",
    })
    stats, docs, _ = extract(repo, tmp_path)
    assert [(d["path"], d["license"], d["license_source"], d["license_metadata"]) for d in docs] == [
        ("lib/index.js", "Apache-2.0", "file", "MIT")]
    assert stats.counters["license_disagreements"] == 1


def test_metadata_only_and_unknown(tmp_path):
    meta = make_repo(tmp_path / "meta-only", {"package.json": '{"license": "BSD-3-Clause"}', "a.py": PY_BODY})
    stats, docs, _ = extract(meta, tmp_path, "meta")
    assert [(d["license"], d["license_source"]) for d in docs] == [("BSD-3-Clause", "metadata")]
    assert stats.counters["license_from_metadata"] == 1

    bare = make_repo(tmp_path / "bare", {"a.py": PY_BODY})
    stats, docs, dropped = extract(bare, tmp_path, "bare")
    assert docs == [] and dict(stats.dropped) == {"license_not_allowed:unknown": 1}

    # a vendored GPL library deeper down does not relicense an MIT repository
    nested = make_repo(tmp_path / "nested", {"LICENSE": MIT_TEXT, "third_party/lib/COPYING": GPL_NOTICE,
                                             "a.py": PY_BODY})
    stats, docs, _ = extract(nested, tmp_path, "nested")
    assert [(d["path"], d["license"]) for d in docs] == [("a.py", "MIT")]
    assert stats.dropped == {"license_file": 2}

    # REUSE's LICENSES/ directory counts at the root
    reuse = make_repo(tmp_path / "reuse", {"LICENSES/MIT.txt": MIT_TEXT, "pkg/COPYING": GPL_NOTICE,
                                           "a.py": PY_BODY})
    stats, docs, _ = extract(reuse, tmp_path, "reuse")
    assert [(d["path"], d["license"]) for d in docs] == [("a.py", "MIT")]


@pytest.mark.parametrize(("text", "expected"), [
    (GPL_NOTICE, "GPL-3.0"),
    (GPL_NOTICE.replace("GNU General Public", "GNU Lesser General Public"), "LGPL-3.0"),
    (GPL_NOTICE.replace("GNU General Public", "GNU Affero General Public"), "AGPL-3.0"),
    (MIT_TEXT, "MIT"),
    (APACHE_TEXT, "Apache-2.0"),
    ((MINIMIST / "package" / "LICENSE").read_text(), "MIT"),
    ("Copyright (c) 2020 X\n\nRedistribution and use in source and binary forms, with or without modification, "
     "are permitted provided that the following conditions are met:\n1. Redistributions of source code must "
     "retain the above copyright notice.\n2. Redistributions in binary form must reproduce it.\n", "BSD-2-Clause"),
    ("Redistribution and use in source and binary forms, with or without modification, are permitted provided "
     "that ... 3. Neither the name of the copyright holder nor the names of its contributors may be used to "
     "endorse or promote products derived from this software.", "BSD-3-Clause"),
    ("Permission to use, copy, modify, and/or distribute this software for any purpose with or without fee is "
     "hereby granted, provided that the above copyright notice and this permission notice appear in all copies.",
     "ISC"),
    ("This is free and unencumbered software released into the public domain.\n" * 3, "Unlicense"),
    ("Copyright 2023 Acme Corp. All rights reserved. Proprietary and confidential.", "proprietary"),
    ("SPDX-License-Identifier: BSD-3-Clause\n", "BSD-3-Clause"),
    ("Apache-2.0\n", "Apache-2.0"),
    ("Some words about nothing in particular, long enough not to be read as a licence name. " * 3, None),
])
def test_detect_license(text, expected):
    assert detect_license(text) == expected


@pytest.mark.parametrize(("name", "expected"), [
    ("Apache-2.0", "Apache-2.0"), ("BSD", "BSD-3-Clause"), ("GPL-2", "GPL-2.0"), ("GPL-3", "GPL-3.0"),
    ("LGPL-2.1", "LGPL-2.1"), ("LGPL-3", "LGPL-3.0"), ("MPL-2.0", "MPL-2.0"), ("CC0-1.0", "CC0-1.0"),
])
def test_detect_full_licence_texts(name, expected):
    path = Path(__file__).parent / "data" / "licenses" / name  # Debian's copies of the full texts
    assert detect_license(path.read_text(errors="replace")) == expected


def test_license_names():
    assert license_ids("Apache Software License") == (["Apache-2.0"], False)
    assert license_ids("MIT OR Apache-2.0") == (["Apache-2.0", "MIT"], True)
    assert license_ids("GPL-3.0-or-later") == (["GPL-3.0"], False)
    assert license_ids("BSD License") == (["BSD"], False)  # unversioned BSD: not allowed by default
    assert license_ids(["mit", "bsd-2-clause"]) == (["BSD-2-Clause", "MIT"], False)
    assert license_ids("SEE LICENSE IN LICENSE.txt") == ([], False)


# ---------------------------------------------------------------------------------------------
# Filters


def test_file_filters(tmp_path):
    long_words = " ".join(["alpha"] * 200)  # a 1,199-character line of letters
    repo = make_repo(tmp_path / "filters", {
        "LICENSE": MIT_TEXT,
        "ok.py": PY_BODY,
        "logo.png": b"\x89PNG\r\n\x1a\n",
        "nul.py": b"x = 1\n\0\0\0binary\n",
        "latin1.py": "name = 'Jos\xe9'\n".encode("latin-1"),
        "utf16.py": "\ufeffvalue = 'text'\nprint(value)\n".encode("utf-16"),
        "app.min.js": "var a=1;",
        "bundle.js": "!function(e){" + "e.exports=function(t){return t};" * 60 + "}();\n",
        "yarn.lock": "# THIS IS AN AUTOGENERATED FILE\n",
        "api.pb.go": "package api\n",
        "gen.go": "// Code generated by protoc-gen-go. DO NOT EDIT.\npackage api\n\nvar Name = \"api\"\n",
        "jni.h": "/* DO NOT EDIT THIS FILE - it is machine generated */\n#include <jni.h>\n",
        "settings.py": "# Do not edit this value unless you know what it does.\nTIMEOUT_SECONDS = 30\n",
        "empty.py": "\n   \n",
        "wide.md": (long_words[:150] + "\n") * 10,
        "table.c": "int t[] = {\n" + "0x00, 0x1F, 0xFF, 0x10,\n" * 40 + "};\n",
        "rule.css": "}}}}\n{{{{\n" * 20,
        "digits.py": "values = [\n" + "    123456789, 987654321, 555555555,\n" * 30 + "]\n",
        "long_line.py": f"text = '{long_words}'\n" + PY_BODY * 5,
        "big.py": PY_BODY * 300,
        "notes.txt": "just text\n",
        "Makefile": "all:\n\tcc -o program main.c\n",
    })
    stats, docs, dropped = extract(repo, tmp_path, max_file_bytes=10_000)
    assert reasons(dropped) == {
        "LICENSE": "license_file",
        "logo.png": "extension_not_allowed",
        "notes.txt": "extension_not_allowed",
        "nul.py": "binary",
        "latin1.py": "undecodable",
        "app.min.js": "generated",
        "yarn.lock": "generated",
        "api.pb.go": "generated",
        "gen.go": "generated",
        "jni.h": "generated",
        "bundle.js": "generated",  # minified: before max_line_length, which it also fails
        "long_line.py": "max_line_length",
        "empty.py": "empty",
        "wide.md": "mean_line_length",
        "rule.css": "alnum_fraction",
        "table.c": "alpha_per_token",
        "digits.py": "alpha_per_token",
        "big.py": "too_large",
    }
    assert sorted(d["path"] for d in docs) == ["Makefile", "ok.py", "settings.py", "utf16.py"]
    utf16 = next(d for d in docs if d["path"] == "utf16.py")
    assert utf16["text"] == "value = 'text'\nprint(value)\n"  # decoded, BOM gone
    assert next(d for d in docs if d["path"] == "Makefile")["language"] == "Makefile"


# A UMD bundle as terser writes it: one line, few spaces, dense punctuation (~1,100 characters).
MINIFIED_JS = (
    '!function(e,t){"object"==typeof exports&&"undefined"!=typeof module?module.exports=t():"function"=='
    'typeof define&&define.amd?define(t):(e="undefined"!=typeof globalThis?globalThis:e||self).tinyQueue=t()}'
    '(this,function(){"use strict";function e(e,t){for(var n=0;n<t.length;n++){var r=t[n];r.enumerable='
    'r.enumerable||!1,r.configurable=!0,"value"in r&&(r.writable=!0),Object.defineProperty(e,r.key,r)}}'
    'function t(e,t){return e<t?-1:e>t?1:0}var n=function(){function n(e,r){void 0===e&&(e=[]),void 0===r'
    '&&(r=t),this.data=e,this.length=this.data.length,this.compare=r;for(var i=(this.length>>1)-1;i>=0;i--)'
    'this._down(i)}var r,i;return r=n,(i=[{key:"push",value:function(e){this.data.push(e),this.length++,'
    'this._up(this.length-1)}},{key:"pop",value:function(){if(0!==this.length){var e=this.data[0],t=this.'
    'data.pop();return this.length--,this.length>0&&(this.data[0]=t,this._down(0)),e}}},{key:"peek",value:'
    'function(){return this.data[0]}},{key:"_up",value:function(e){for(var t=this.data,n=this.compare,r=t'
    '[e];e>0;){var i=e-1>>1,o=t[i];if(n(r,o)>=0)break;t[e]=o,e=i}t[e]=r}},{key:"_down",value:function(e)'
    '{for(var t=this.data,n=this.compare,r=this.length>>1,i=t[e];e<r;){var o=2*e+1,a=t[o],u=o+1;if(u<this'
    '.length&&n(t[u],a)<0&&(o=u,a=t[u]),n(a,i)>=0)break;t[e]=a,e=o}t[e]=i}}])&&e(r.prototype,i),n}();return n});'
)
TS_SOURCE = "export function add(first: number, second: number): number {\n  return first + second;\n}\n"
DECLARATION = "export declare function add(first: number, second: number): number;\n"
JS_SOURCE = "function add(first, second) {\n  return first + second;\n}\n\nmodule.exports = { add };\n"


@pytest.mark.parametrize("path, generated", [
    ("dist/bundle.js", True),
    ("packages/ui/dist/index.js", True),
    ("dist/cli.py", True),
    ("build/static/js/main.js", True),
    ("build/lib/warcio/utils.py", True),  # setuptools' copy
    ("build/package/Dockerfile", False),  # golang-standards layout: written by hand
    ("build/ci/test.sh", False),
    ("dist/install.ps1", False),
    ("tools/build.py", False),  # a file named build, not a folder
    ("builder/make.py", False),
    ("distance/metric.py", False),
    ("src/Build/Program.cs", False),  # folder names are exact and case sensitive
    ("lib/index.d.ts", True),
    ("packages/core/esm/index.d.ts", True),
    ("out/extension.d.ts", True),
    ("lib/index.js", False),  # lib/ holds hand-written code in many languages
    ("types/node/index.d.ts", False),  # DefinitelyTyped
    ("index.d.ts", False),
    ("src/global.d.ts", False),
    ("typings/index.d.ts", False),
    ("static/js/main.3f2a9c1b.js", True),
    ("assets/chunk-5f3a8b2c.js", True),
    ("assets/app.a1b2c3d4e5.css", True),
    ("static/js/591.fe276a82.chunk.js", True),
    ("rustdoc/searchindex-a4b633b3.mjs", True),
    ("db/migrate/20230101120000_create_users.js", False),  # all digits: a timestamp
    ("alembic/versions/3f2a9c1b8d7e_add_users.py", False),  # not a .js/.css, and "_" does not separate
    ("src/deadbeef.js", False),  # letters only
    ("src/sha256.js", False),
    ("src/ed25519.js", False),  # 7 characters
    ("app.min.js", True),
    ("yarn.lock", True),
])
def test_generated_paths(path, generated):
    assert is_generated_path(path) is generated


def test_generated_by_content_and_minified():
    assert generated_by_content(DECLARATION + "//# sourceMappingURL=index.d.ts.map")
    assert generated_by_content(JS_SOURCE + "//# sourceMappingURL=index.js.map\n")
    assert generated_by_content(".a{color:red}\n/*# sourceMappingURL=app.css.map */\n")
    assert generated_by_content("// Generated by dts-bundle-generator v9.5.1\n\n" + DECLARATION)
    assert not generated_by_content(DECLARATION)
    assert not generated_by_content('const note = "see the sourceMappingURL= comment";\n' + JS_SOURCE)
    assert not generated_by_content("//# sourceMappingURL=old.js.map\n" + JS_SOURCE * 40)  # not at the end
    assert is_minified(MINIFIED_JS)
    assert is_minified("/*! tinyqueue v2.0.3 | ISC */\n" + MINIFIED_JS)
    assert is_minified("\n".join(MINIFIED_JS[i : i + 500] for i in range(0, len(MINIFIED_JS), 500)))  # wrapped
    assert not is_minified(JS_SOURCE * 30)
    assert not is_minified('const logo = "data:image/png;base64,' + "iVBORw0KGgoAAAANSUhEUgAA" * 50 + '";\n')
    assert not is_minified(" ".join(["word"] * 300))  # a long line of prose
    assert not is_minified(JS_SOURCE * 40 + MINIFIED_JS + "\n" + JS_SOURCE * 40)  # a snippet inside code


def test_generated_bundles_in_a_repository(tmp_path):
    """A TypeScript package with its build output committed, and the ways each file is told apart."""
    blob = 'export const logo = "data:image/png;base64,' + "iVBORw0KGgoAAAANSUhEUgAA" * 60 + '";\n'
    repo = make_repo(tmp_path / "pkg", {
        "LICENSE": MIT_TEXT,
        "src/index.ts": TS_SOURCE,
        "src/global.d.ts": "declare const VERSION: string;\n",
        "src/logo.ts": blob,
        "types/index.d.ts": DECLARATION,
        "dist/index.js": JS_SOURCE,
        "dist/index.d.ts": DECLARATION,
        "packages/cli/dist/cli.js": JS_SOURCE,
        "lib/index.d.ts": DECLARATION,
        "lib/index.js": JS_SOURCE,
        "build/static/js/main.3f2a9c1b.js": MINIFIED_JS,
        "build/ci/release.sh": "#!/bin/sh\nset -e\nnpm publish\n",
        "static/chunk-5f3a8b2c.js": JS_SOURCE,
        "static/app.a1b2c3d4e5.css": "body {\n  margin: 0;\n}\n",
        "emitted/index.d.ts": DECLARATION + "//# sourceMappingURL=index.d.ts.map\n",
        "emitted/index.js": JS_SOURCE + "//# sourceMappingURL=index.js.map\n",
        "vendor/tinyqueue.js": "/*! tinyqueue v2.0.3 | ISC License */\n" + MINIFIED_JS + "\n",
    })
    stats, docs, dropped = extract(repo, tmp_path)
    assert sorted(d["path"] for d in docs) == [
        "build/ci/release.sh", "lib/index.js", "src/global.d.ts", "src/index.ts", "types/index.d.ts"]
    assert reasons(dropped) == {
        "LICENSE": "license_file",
        "src/logo.ts": "max_line_length",  # a data line, not minified code
        **{path: "generated" for path in (
            "dist/index.js", "dist/index.d.ts", "packages/cli/dist/cli.js", "lib/index.d.ts",
            "build/static/js/main.3f2a9c1b.js", "static/chunk-5f3a8b2c.js", "static/app.a1b2c3d4e5.css",
            "emitted/index.d.ts", "emitted/index.js", "vendor/tinyqueue.js")},
    }
    assert stats.dropped["generated"] == 10 and stats.docs_in == stats.docs_out + sum(stats.dropped.values())
    # Dropped by path before being read: no text in the audit output; by content: the text.
    texts = {d["path"]: d["text"] for d in dropped}
    assert texts["dist/index.js"] == "" and texts["vendor/tinyqueue.js"].startswith(MINIFIED_JS[:40])
    # The same verdicts from a tar archive (paths under GitHub's top folder) and a table.
    archive = make_tar(repo, tmp_path / "pkg.tar.gz", "pkg-main")
    _, tar_docs, tar_dropped = extract(archive, tmp_path, name="tar")
    assert reasons(tar_dropped) == reasons(dropped) and kept_view(tar_docs) == kept_view(docs)


def test_threshold_boundaries(tmp_path):
    def line(n):  # n characters, words of letters
        return ("abcd " * n)[:n].rstrip().ljust(n, "x")

    body = "\n".join(["short line here"] * 30)
    repo = make_repo(tmp_path / "edges", {
        "LICENSE": MIT_TEXT,
        "at_limit.py": line(1000) + "\n" + body + "\n",
        "over_limit.py": line(1001) + "\n" + body + "\n",
    })
    stats, docs, dropped = extract(repo, tmp_path)
    assert [d["path"] for d in docs] == ["at_limit.py"]
    assert reasons(dropped)["over_limit.py"] == "max_line_length"
    # mean line length counts newlines: RedPajama's len(text) / len(lines)
    assert text_measures("ab\ncd\n")[:2] == (2, 3.0)
    assert text_measures("")[0] == 0


def test_ascii_fast_path_counts_gpt2_pieces():
    """text_measures counts ASCII text with numpy; it must equal the regex definition exactly."""
    import random

    rnd = random.Random(7)
    alphabet = "ab sdmtlvreXY09_'\"\t\n\r\x0b\x0c\x1c\x1f +-=(){}.,;:!?\\/"
    texts = [p.read_text() for p in CODE.rglob("*.js")]
    texts += ["".join(rnd.choice(alphabet) for _ in range(rnd.randint(1, 30))) for _ in range(3000)]
    texts += ["it's", "x = 'string'", " 's", "\n'll", "don't'", "''s"]
    for text in texts:
        tokens = len(github.TOKEN_PATTERN.findall(text))
        expected = sum(map(str.isalpha, text)) / tokens if tokens else 0.0
        assert text_measures(text)[3] == pytest.approx(expected, abs=1e-12), repr(text)
        assert text_measures(text)[2] == pytest.approx(sum(map(str.isalnum, text)) / len(text), abs=1e-12)
    assert len(github.TOKEN_PATTERN.findall("it's a 'string'")) == 6  # it / 's / a / 's / tring / '


# ---------------------------------------------------------------------------------------------
# Header stripping


C_WITH_HEADER = APACHE_HEADER + "\n#include <stdio.h>\n#include \"util.h\"\n#define MAX 10\n\nint main(void) {\n    return MAX;\n}\n"


def test_header_stripping(tmp_path):
    repo = make_repo(tmp_path / "headers", {
        "LICENSE": MIT_TEXT,
        "main.c": C_WITH_HEADER,
        "doc/guide.md": "# Title\n\n## Install\n\nRun the installer and follow the steps.\n",
        "tool.py": "#!/usr/bin/env python3\n# -*- coding: utf-8 -*-\n# Copyright 2020 Jane Hacker\n"
                   "# SPDX-License-Identifier: MIT\n\n\"\"\"Add numbers. License: MIT.\"\"\"\n\n" + PY_BODY,
        "lib.py": '"""\nCopyright 2019 Example Inc.\n\nLicensed under the Apache License, Version 2.0.\n"""\n\n' + PY_BODY,
        "plain.py": '"""Helpers for adding numbers."""\n\n' + PY_BODY,
        "run.sh": "#!/bin/sh\n# Copyright 2020 X\n# Licensed under the MIT license\n#\n# Builds the project.\nmake all\necho done building\n",
    })
    stats, docs, _ = extract(repo, tmp_path)
    text = {d["path"]: d["text"] for d in docs}
    assert text["main.c"] == "#include <stdio.h>\n#include \"util.h\"\n#define MAX 10\n\nint main(void) {\n    return MAX;\n}\n"
    assert text["doc/guide.md"] == "# Title\n\n## Install\n\nRun the installer and follow the steps.\n"
    assert text["tool.py"] == "#!/usr/bin/env python3\n# -*- coding: utf-8 -*-\n\"\"\"Add numbers. License: MIT.\"\"\"\n\n" + PY_BODY
    assert text["lib.py"] == PY_BODY
    assert text["plain.py"] == '"""Helpers for adding numbers."""\n\n' + PY_BODY
    assert text["run.sh"] == "#!/bin/sh\n# Builds the project.\nmake all\necho done building\n"
    assert stats.counters["files_header_stripped"] == 4
    # main.c 15 + 1 blank, tool.py 2 + 1 blank, lib.py 5 + 1 blank, run.sh 3 (its "#" separator too)
    assert stats.counters["header_lines_stripped"] == 16 + 3 + 6 + 3


@pytest.mark.parametrize(("language", "text", "expected"), [
    ("C", "#include <a.h>\n#include <b.h>\nint x;\n", None),  # RedPajama deleted these
    ("Markdown", "# Copyright notes\n\nWe license nothing.\n", None),  # a heading, not a comment
    ("C", "/* Parses options. */\n#include <a.h>\n", None),  # a comment that is not a licence
    ("C", '#include "copyright.h"\n#include "license.h"\nint x;\n', None),  # `#` is no comment in C
    ("Go", "// Copyright 2020 The Go Authors. All rights reserved.\n// Use of this source code is governed by a "
           "BSD-style\n// license that can be found in the LICENSE file.\n\n// Package foo parses.\npackage foo\n",
     "// Package foo parses.\npackage foo\n"),
    ("PHP", "<?php\n/*\n * Copyright X\n */\n\nnamespace A;\n", "<?php\nnamespace A;\n"),
    ("HTML", "<!-- Copyright 2020 X. MIT License. -->\n<html></html>\n", "<html></html>\n"),
    ("Python", "# Copyright 2020 X\n# Licensed under MIT\n#\n# Parses the config.\nimport os\n",
     "# Parses the config.\nimport os\n"),
    ("Fortran", "C     Copyright 2020 X\nC     Licensed under MIT\n      PROGRAM MAIN\n      END\n",
     "      PROGRAM MAIN\n      END\n"),
    ("C", "/* Copyright 2020 X */ int x;\n", None),  # code on the closing line: left alone
    ("C++", "// Copyright 2020 X\r\n// MIT License\r\n\r\n#include <vector>\r\n", "#include <vector>\r\n"),
    ("JavaScript", "#!/usr/bin/env node\n/* @license MIT */\n'use strict';\n", "#!/usr/bin/env node\n'use strict';\n"),
])
def test_strip_license_header_cases(language, text, expected):
    out, removed = strip_license_header(text, language, "main.f" if language == "Fortran" else "main")
    assert out == (text if expected is None else expected)
    assert (removed == 0) == (expected is None)


# ---------------------------------------------------------------------------------------------
# Hostile and damaged archives


def test_archive_with_traversal_and_links(tmp_path):
    def add(tar, name, data=b"", **kw):
        info = tarfile.TarInfo(name)
        info.size = len(data)
        for k, v in kw.items():
            setattr(info, k, v)
        tar.addfile(info, io.BytesIO(data) if data else None)

    archive = tmp_path / "work" / "evil-main.tar.gz"
    archive.parent.mkdir()
    with tarfile.open(archive, "w:gz") as tar:
        add(tar, "evil-main/LICENSE", MIT_TEXT.encode())
        add(tar, "evil-main/ok.py", PY_BODY.encode())
        add(tar, "evil-main/../../escaped.py", PY_BODY.encode())
        add(tar, "/tmp/absolute.py", PY_BODY.encode())
        add(tar, "evil-main/link.py", type=tarfile.SYMTYPE, linkname="/etc/passwd")
        add(tar, "evil-main/hard.py", type=tarfile.LNKTYPE, linkname="evil-main/ok.py")
        add(tar, "evil-main/fifo.py", type=tarfile.FIFOTYPE)
    before = sorted(p.name for p in tmp_path.rglob("*"))
    stats, docs, dropped = extract(archive, tmp_path / "work")
    assert [d["id"] for d in docs] == ["github/evil-main/ok.py"]
    assert sorted(r for r in reasons(dropped).values()) == sorted(
        ["license_file", "unsafe_path", "unsafe_path", "unsafe_link", "unsafe_link", "special_file"])
    assert reasons(dropped)["evil-main/../../escaped.py"] == "unsafe_path"
    after = sorted(p.name for p in tmp_path.rglob("*"))
    assert set(after) - set(before) == {"out.parquet", "out.dropped.parquet"}  # nothing extracted anywhere

    zipped = tmp_path / "zevil.zip"
    with zipfile.ZipFile(zipped, "w") as z:
        z.writestr("zevil-1.0/LICENSE", MIT_TEXT)
        z.writestr("zevil-1.0/ok.py", PY_BODY)
        z.writestr("zevil-1.0/../escaped.py", PY_BODY)
        link = zipfile.ZipInfo("zevil-1.0/link.py")
        link.external_attr = (stat.S_IFLNK | 0o777) << 16
        z.writestr(link, "/etc/passwd")
    stats, docs, dropped = extract(zipped, tmp_path, "zip")
    assert [d["id"] for d in docs] == ["github/zevil/ok.py"]  # name from the archive, top dir stripped
    assert reasons(dropped)["zevil-1.0/../escaped.py"] == "unsafe_path"
    assert reasons(dropped)["link.py"] == "unsafe_link"


def test_names_that_are_not_utf8(tmp_path):
    archive = tmp_path / "names.tar.gz"
    with tarfile.open(archive, "w:gz", encoding="utf-8", errors="surrogateescape") as tar:
        for name, data in (("names-1/LICENSE", MIT_TEXT), ("names-1/ok.py", PY_BODY),
                           ("names-1/caf\udce9.py", PY_BODY)):  # the Latin-1 byte 0xE9 in the name
            info = tarfile.TarInfo(name)
            info.size = len(data.encode())
            tar.addfile(info, io.BytesIO(data.encode()))
    stats, docs, dropped = extract(archive, tmp_path)
    assert [d["path"] for d in docs] == ["ok.py"]
    assert reasons(dropped)["names-1/caf\ufffd.py"] == "unsafe_path"

    repo = make_repo(tmp_path / "bytes-names", {"LICENSE": MIT_TEXT, "ok.py": PY_BODY})
    with open(os.path.join(os.fsencode(repo), b"caf\xe9.py"), "wb") as f:
        f.write(PY_BODY.encode())
    stats, docs, dropped = extract(repo, tmp_path, "dir")
    assert [d["path"] for d in docs] == ["ok.py"]
    assert reasons(dropped)["caf\ufffd.py"] == "unsafe_path"


def test_directory_symlinks_are_not_followed(tmp_path):
    outside = make_repo(tmp_path / "outside", {"secret.py": PY_BODY})
    repo = make_repo(tmp_path / "linked", {"LICENSE": MIT_TEXT, "ok.py": PY_BODY})
    os.symlink(outside / "secret.py", repo / "secret.py")
    os.symlink(outside, repo / "vendor")
    os.mkfifo(repo / "pipe.py")
    stats, docs, dropped = extract(repo, tmp_path)
    assert [d["path"] for d in docs] == ["ok.py"]
    assert reasons(dropped) == {"LICENSE": "license_file", "secret.py": "unsafe_link", "vendor": "unsafe_link",
                                "pipe.py": "special_file"}


def test_truncated_tar_keeps_the_files_before_the_damage(tmp_path):
    _, full, _ = extract(MINIMIST, tmp_path, "full")
    tar = make_tar(MINIMIST, tmp_path / "npm_minimist-1.2.8.tar.gz", "npm_minimist-1.2.8")
    data = tar.read_bytes()
    cut = tmp_path / "cut" / tar.name
    cut.parent.mkdir()
    cut.write_bytes(data[: len(data) * 4 // 5])
    stats, docs, dropped = extract(cut, tmp_path, "cut")
    assert stats.dropped["corrupt_archive"] == 1
    assert 0 < len(docs) < len(full) and stats.docs_in < 25
    assert set(kept_view(docs)) <= set(kept_view(full))
    assert "package/index.js" in {d["path"] for d in docs}

    garbage = tmp_path / "garbage.tar.gz"
    garbage.write_bytes(b"this is not an archive at all" * 10)
    stats, docs, _ = extract(garbage, tmp_path, "garbage")
    assert (stats.docs_in, docs, dict(stats.dropped)) == (1, [], {"corrupt_archive": 1})


def test_member_cut_inside_its_data_is_not_kept(tmp_path):
    repo = make_repo(tmp_path / "cutrepo", {"LICENSE": MIT_TEXT, "a.py": PY_BODY, "b.py": PY_BODY * 40,
                                            "c.py": PY_BODY})
    tar = tmp_path / "cutrepo.tar"
    with tarfile.open(tar, "w") as t:  # uncompressed: offsets are exact
        t.add(repo, arcname="cutrepo-main")
    with tarfile.open(tar) as t:
        b = t.getmember("cutrepo-main/b.py")
    cut = tmp_path / "cut" / "cutrepo.tar"
    cut.parent.mkdir()
    cut.write_bytes(tar.read_bytes()[: b.offset_data + 100])
    stats, docs, dropped = extract(cut, tmp_path)
    assert [d["path"] for d in docs] == ["a.py"]
    assert dict(stats.dropped) == {"license_file": 1, "corrupt_archive": 1} and stats.docs_in == 3


class Unseekable(io.RawIOBase):
    """A write-only stream: zipfile then writes data descriptors, as streaming zippers do."""

    def __init__(self):
        self.buffer = bytearray()

    def writable(self):
        return True

    def write(self, b):
        self.buffer += b
        return len(b)


@pytest.mark.parametrize("streamed", [False, True])
def test_cut_zip_is_read_from_local_headers(tmp_path, streamed):
    _, full, _ = extract(MINIMIST, tmp_path, "full")
    dest = tmp_path / "npm_minimist-1.2.8.zip"
    if streamed:
        stream = Unseekable()
        make_zip(MINIMIST, dest, "npm_minimist-1.2.8", stream)
        dest.write_bytes(bytes(stream.buffer))
    else:
        make_zip(MINIMIST, dest, "npm_minimist-1.2.8")
    with zipfile.ZipFile(dest) as z:
        infos = z.infolist()
        assert bool(infos[0].flag_bits & 0x08) == streamed
    cut_at = next(i for i in infos if i.filename.endswith("test/long.js")).header_offset + 40
    cut = tmp_path / "cut" / dest.name
    cut.parent.mkdir()
    cut.write_bytes(dest.read_bytes()[:cut_at])
    stats, docs, _ = extract(cut, tmp_path, "cut")
    before = [i for i in infos if i.header_offset < cut_at - 40]
    assert stats.docs_in == len(before) + 1 and stats.dropped["corrupt_archive"] == 1
    expected = [d for d in full if d["path"] < "package/test/long.js"]
    assert kept_view(docs) == kept_view(expected)


def test_zip_with_a_corrupt_member(tmp_path):
    dest = make_zip(MWXML, tmp_path / "mwxml.zip", "mwxml-main")
    with zipfile.ZipFile(dest) as z:
        info = z.getinfo("mwxml-main/mwxml/iteration/page.py")
    data = bytearray(dest.read_bytes())
    start = info.header_offset + 30 + len(info.filename.encode()) + 10
    data[start : start + 20] = b"\xff" * 20
    dest.write_bytes(bytes(data))
    stats, docs, dropped = extract(dest, tmp_path)
    assert reasons(dropped)["mwxml/iteration/page.py"] == "corrupt_archive"
    assert stats.docs_out == 37  # every other document of the wheel


# ---------------------------------------------------------------------------------------------
# Tables


def test_jsonl_table(tmp_path):
    rows = [
        {"repo_name": "a/one", "path": "src/x.py", "content": PY_BODY, "license": "mit"},
        {"repo_name": "b/two", "path": "main.c", "content": C_WITH_HEADER, "license": "mit"},
        "not an object",
        {"repo_name": "a/one", "path": "src/missing.py"},
        {"repo_name": "a/one", "path": "src/y.py", "content": PY_BODY.replace("add", "plus"), "license": "mit"},
        {"repo_name": "a/one", "path": "src/x.py", "content": PY_BODY, "license": "mit"},
        {"repo_name": "a/one", "path": "src/bad.py", "content": "x = '\ud800'\n" + PY_BODY, "license": "mit"},
        {"repo_name": "c/three", "path": "lib.rb", "content": "def hello\n  puts 'hello world'\nend\n",
         "license": "gpl-3.0"},
        {"repo_name": "b/two", "path": "LICENSE", "content": APACHE_TEXT, "license": "mit"},  # last row
    ]
    table = tmp_path / "part-0.jsonl.gz"
    with gzip.open(table, "wt") as f:
        for row in rows:
            f.write(json.dumps(row) + "\n")
        f.write("{broken json\n")
    stats, docs, dropped = extract(table, tmp_path)
    assert [(d["id"], d["license"], d["license_source"]) for d in docs] == [
        ("github/a/one/src/x.py", "MIT", "metadata"),
        ("github/b/two/main.c", "Apache-2.0", "file"),  # its LICENSE row comes later
        ("github/a/one/src/y.py", "MIT", "metadata"),
    ]
    assert docs[1]["text"].startswith("#include <stdio.h>")
    assert stats.counters["license_disagreements"] == 1  # b/two: column mit, LICENSE Apache
    assert dict(stats.dropped) == {"corrupt_row": 3, "duplicate_path": 1, "undecodable": 1,
                                   "license_not_allowed:GPL-3.0": 1, "license_file": 1}
    assert stats.docs_in == len(rows) + 1

    cut = tmp_path / "cut.jsonl.gz"
    cut.write_bytes(table.read_bytes()[:-30])
    stats, docs, _ = extract(cut, tmp_path, "cut")
    assert stats.dropped["corrupt_table"] == 1 and len(docs) >= 1


def test_parquet_table_with_stack_columns(tmp_path):
    table = pa.table({
        "max_stars_repo_name": ["org/lib", "org/lib", "org/gpl"],
        "max_stars_repo_path": ["a.py", "b.js", "c.py"],
        "content": [PY_BODY, "const answer = computeTheAnswer();\nexport default answer;\n", PY_BODY],
        "max_stars_repo_licenses": [["MIT"], ["MIT"], ["GPL-2.0-only"]],
    })
    path = tmp_path / "stack.parquet"
    pq.write_table(table, path)
    stats, docs, _ = extract(path, tmp_path)
    assert [(d["id"], d["language"], d["license"]) for d in docs] == [
        ("github/org/lib/a.py", "Python", "MIT"), ("github/org/lib/b.js", "JavaScript", "MIT")]
    assert dict(stats.dropped) == {"license_not_allowed:GPL-2.0": 1}


def test_unknown_input_raises(tmp_path):
    with pytest.raises(FileNotFoundError):
        extract_github(str(tmp_path / "missing.tar.gz"), str(tmp_path / "o.parquet"))
    odd = tmp_path / "data.csv"
    odd.write_text("a,b\n")
    with pytest.raises(ValueError):
        extract_github(str(odd), str(tmp_path / "o.parquet"))


# ---------------------------------------------------------------------------------------------
# Exact file dedup over the corpus


def run_dedup(shards: list[Path], tmp_path: Path, partitions: int) -> list:
    work = tmp_path / f"dedup-{partitions}"
    hash_dirs = []
    for i, shard in enumerate(shards):
        stats = hash_files(str(shard), str(work / f"hashes-{i}"), shard_index=i, partitions=partitions)
        assert stats.docs_in == stats.docs_out == stats.counters["files_hashed"]
        hash_dirs.append(work / f"hashes-{i}")
    seen = duplicates = 0
    for p in range(partitions):
        stats = find_duplicate_files([str(d / f"part-{p:05d}.npy") for d in hash_dirs], str(work / f"dups-{p}"),
                                     partition=p)
        seen += stats.counters["files_seen"]
        duplicates += stats.counters["duplicate_files"]
    assert seen == sum(len(list(read_documents(s))) for s in shards)
    results = []
    for i, shard in enumerate(shards):
        out, dropped = work / f"out-{i}.parquet", work / f"dropped-{i}.parquet"
        stats = remove_duplicate_files(str(shard), [str(work / f"dups-{p}" / f"shard-{i:05d}.npy")
                                                    for p in range(partitions)], str(out),
                                       dropped_path=str(dropped))
        results.append((stats, [d["id"] for d in read_documents(out)], [d["id"] for d in read_documents(dropped)]))
    assert duplicates == sum(len(r[2]) for r in results)
    return results


def test_duplicate_file_across_shards_keeps_the_first(tmp_path):
    errors_py = (MWXML / "mwxml" / "errors.py").read_text()
    # shard 0: the mwxml wheel; shard 1: a repo that vendors errors.py under its own licence header
    # (equal after header stripping) and holds one file twice
    other = make_repo(tmp_path / "vendoring", {
        "LICENSE": APACHE_TEXT,
        "vendor/errors.py": "# Copyright 2022 Vendoring Authors\n# Licensed under the Apache License 2.0\n\n" + errors_py,
        "app.py": PY_BODY,
        "app_copy.py": PY_BODY,
    })
    shards = []
    for i, src in enumerate([MWXML, other]):
        extract_github(str(src), str(tmp_path / f"shard-{i}.parquet"))
        shards.append(tmp_path / f"shard-{i}.parquet")
    one = run_dedup(shards, tmp_path, partitions=1)
    three = run_dedup(shards, tmp_path, partitions=3)
    assert [r[1:] for r in one] == [r[1:] for r in three]
    (s0, kept0, dropped0), (s1, kept1, dropped1) = three
    assert dropped0 == [] and len(kept0) == 38
    assert "github/pypi_mwxml-0.3.8-py2.py3-none-any/mwxml/errors.py" in kept0
    assert dropped1 == ["github/vendoring/app_copy.py", "github/vendoring/vendor/errors.py"]
    assert kept1 == ["github/vendoring/app.py"]
    assert dict(s1.dropped) == {"duplicate": 2} and s1.counters["duplicate_bytes"] == len(errors_py) + len(PY_BODY)
    dropped_rows = list(read_documents(tmp_path / "dedup-3" / "dropped-1.parquet"))
    assert {d["drop_reason"] for d in dropped_rows} == {"duplicate"}


def test_dedup_wiring_is_checked(tmp_path):
    extract_github(str(MWXML), str(tmp_path / "s0.parquet"))
    extract_github(str(WARCIO), str(tmp_path / "s1.parquet"))
    for i in range(2):
        hash_files(str(tmp_path / f"s{i}.parquet"), str(tmp_path / f"h{i}"), shard_index=i, partitions=2)
    with pytest.raises(ValueError, match="shard order"):
        find_duplicate_files([str(tmp_path / "h1" / "part-00000.npy"), str(tmp_path / "h0" / "part-00000.npy")],
                             str(tmp_path / "d"), partition=0)
    from stages.line_dedup import hash_lines
    hash_lines(str(tmp_path / "s0.parquet"), str(tmp_path / "lines"), shard_index=0, partitions=2)
    with pytest.raises(ValueError, match="hash_files"):
        find_duplicate_files([str(tmp_path / "lines" / "part-00000.npy")], str(tmp_path / "d"), partition=0)
    # a duplicates list applied to other documents than those it was made from
    bodies = [PY_BODY.replace("add", name) for name in ("plus", "sum", "total", "combine")]
    for i, files in enumerate([{"a.py": bodies[0]}, {"b.py": bodies[0], "c.py": bodies[1]},
                               {"d.py": bodies[2], "e.py": bodies[3]}]):
        make_repo(tmp_path / f"r{i}", {"LICENSE": MIT_TEXT, **files})
        extract_github(str(tmp_path / f"r{i}"), str(tmp_path / f"r{i}.parquet"))
        hash_files(str(tmp_path / f"r{i}.parquet"), str(tmp_path / f"rh{i}"), shard_index=i, partitions=1)
    find_duplicate_files([str(tmp_path / f"rh{i}" / "part-00000.npy") for i in range(2)], str(tmp_path / "rd"),
                         partition=0)
    listed = [str(tmp_path / "rd" / "shard-00001.npy")]
    with pytest.raises(ValueError, match="recorded hash"):
        remove_duplicate_files(str(tmp_path / "r2.parquet"), listed, str(tmp_path / "bad.parquet"))
    make_repo(tmp_path / "licence-only", {"LICENSE": MIT_TEXT})
    extract_github(str(tmp_path / "licence-only"), str(tmp_path / "none.parquet"))  # no documents
    with pytest.raises(ValueError, match="name document"):
        remove_duplicate_files(str(tmp_path / "none.parquet"), listed, str(tmp_path / "bad.parquet"))
    stats = remove_duplicate_files(str(tmp_path / "r1.parquet"), listed, str(tmp_path / "good.parquet"))
    assert dict(stats.dropped) == {"duplicate": 1}
