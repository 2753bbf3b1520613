"""What the driver and the manifests do with files at any location.

Writes are whole: a local file is written beside its destination and renamed; an object is
uploaded in one request (or one multipart upload), and an object store shows it only once the
upload completes. So a reader sees the old file or the new one, never half of either.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import re
from collections.abc import Iterable
from pathlib import Path

import pyarrow.fs as pafs

from pipeline.storage.locations import Location, is_remote, resolve, scheme_of

GLOB_CHARS = re.compile(r"[*?\[]")


def exists(uri: str | Path) -> bool:
    fs, path = resolve(uri)
    return fs.get_file_info(path).type != pafs.FileType.NotFound


def read_bytes(uri: str | Path) -> bytes:
    fs, path = resolve(uri)
    with fs.open_input_stream(path) as stream:
        return stream.read()


def open_input_file(uri: str | Path):
    """A seekable file for random reads (a parquet footer)."""
    fs, path = resolve(uri)
    return fs.open_input_file(path)


def read_text(uri: str | Path) -> str:
    return read_bytes(uri).decode("utf-8")


def write_bytes(uri: str | Path, data: bytes) -> None:
    """Write `uri` whole (see the module docstring)."""
    if not is_remote(uri):
        from stages.documents import atomic_path

        with atomic_path(uri) as tmp:
            tmp.write_bytes(data)
        return
    fs, path = resolve(uri)
    with fs.open_output_stream(path) as stream:
        stream.write(data)


def write_text(uri: str | Path, text: str) -> None:
    write_bytes(uri, text.encode("utf-8"))


def remove(uri: str | Path) -> None:
    """Delete a file, if it is there."""
    fs, path = resolve(uri)
    try:
        fs.delete_file(path)
    except FileNotFoundError:
        pass


def list_files(directory: str | Path, *, recursive: bool = False) -> list[str]:
    """The files under `directory` (none if it is not there), as locations of the same kind."""
    fs, path = resolve(directory)
    infos = fs.get_file_info(pafs.FileSelector(path, recursive=recursive, allow_not_found=True))
    base = str(directory).rstrip("/")
    return sorted(f"{base}/{info.path[len(path):].lstrip('/')}" for info in infos if info.type == pafs.FileType.File)


def glob(pattern: str, *, directories: bool = False) -> list[str]:
    """Files (and directories) matching `pattern` on a remote store, `**` matching any depth as in
    glob.glob(recursive=True). One listing of the pattern's fixed prefix."""
    if scheme_of(pattern) in ("http", "https"):
        if GLOB_CHARS.search(pattern.split("://", 1)[1]):
            raise ValueError(f"{pattern}: an HTTP server cannot be listed; name each file (or give a paths file)")
        return [pattern] if exists(pattern) else []
    if not GLOB_CHARS.search(pattern):
        fs, path = resolve(pattern)
        kind = fs.get_file_info(path).type
        return [str(Location(pattern))] if kind == pafs.FileType.File or (directories and kind == pafs.FileType.Directory) else []
    fixed = GLOB_CHARS.split(pattern, 1)[0].rsplit("/", 1)[0]
    fs, base = resolve(fixed)
    regex = _glob_regex(pattern[len(fixed) + 1 :])
    recursive = "/" in pattern[len(fixed) + 1 :] or "**" in pattern
    wanted = {pafs.FileType.File, pafs.FileType.Directory} if directories else {pafs.FileType.File}
    infos = fs.get_file_info(pafs.FileSelector(base, recursive=recursive, allow_not_found=True))
    matches = []
    for info in infos:
        relative = info.path[len(base) :].lstrip("/")
        if info.type in wanted and regex.fullmatch(relative):
            matches.append(f"{fixed}/{relative}")
    return sorted(matches)


def _glob_regex(pattern: str) -> re.Pattern:
    out, i = [], 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
        elif pattern.startswith("**", i):
            out.append(".*")
            i += 2
        elif pattern[i] == "*":
            out.append("[^/]*")
            i += 1
        elif pattern[i] == "?":
            out.append("[^/]")
            i += 1
        elif pattern[i] == "[" and "]" in pattern[i + 1 :]:
            end = pattern.index("]", i + 1)
            body = pattern[i + 1 : end]
            out.append("[" + ("^" + body[1:] if body.startswith("!") else body) + "]")
            i = end + 1
        else:
            out.append(re.escape(pattern[i]))
            i += 1
    return re.compile("".join(out))


def existing(uris: Iterable[str]) -> set[str]:
    """Those of `uris` (files or folders) that exist: on a store, one listing per folder rather
    than a request per file, so checking 90,000 shards at the start of a run takes seconds."""
    found, folders = set(), {}
    for uri in uris:
        if is_remote(uri) and scheme_of(uri) not in ("http", "https"):
            folders.setdefault(uri.rsplit("/", 1)[0], []).append(uri)
        elif exists(uri):
            found.add(uri)
    for folder, members in folders.items():
        fs, path = resolve(folder)
        names = {info.path.rsplit("/", 1)[-1] for info in fs.get_file_info(pafs.FileSelector(path, allow_not_found=True))}
        found.update(uri for uri in members if uri.rsplit("/", 1)[1] in names)
    return found


def sizes(uris: Iterable[str]) -> dict[str, int]:
    """The size of each file (0 for directories, HTTP URLs and files not found): local files are
    stat'ed; remote ones come from one listing per folder rather than a request per file."""
    uris = list(uris)
    infos = _file_infos(uris)
    return {uri: info.size if (info := infos.get(uri)) and info.type == pafs.FileType.File else 0 for uri in uris}


def versions(uris: Iterable[str]) -> dict[str, str]:
    """What tells each input's content from other content at the same path, without reading it:
    `SIZE:MTIME_NS` of a file (on object storage its LastModified), `dir:DIGEST` of the names,
    sizes and times of a folder's files; "" for one not found, or an HTTP URL (which cannot be
    listed, and is not checked: Common Crawl's files never change). Local paths are stat'ed; on a
    store, one listing per folder (and one more per folder input), never a request per file."""
    uris = list(uris)
    infos = _file_infos(uris)
    return {uri: _version(uri, infos.get(uri)) for uri in uris}


def _version(uri: str, info: pafs.FileInfo | None) -> str:
    if info is None or info.type == pafs.FileType.NotFound:
        return ""
    if info.type == pafs.FileType.Directory:
        return _folder_version(uri)
    return f"{info.size}:{info.mtime_ns}"


def _folder_version(uri: str) -> str:
    fs, path = resolve(uri)
    files = sorted(
        (info.path[len(path):], info.size, info.mtime_ns)
        for info in fs.get_file_info(pafs.FileSelector(path, recursive=True))
        if info.type == pafs.FileType.File
    )
    return f"dir:{hashlib.sha256(json.dumps(files).encode()).hexdigest()[:16]}"


def _file_infos(uris: list[str]) -> dict[str, pafs.FileInfo]:
    """Each file's or folder's FileInfo (of type NotFound if it is not there; none for HTTP URLs):
    local paths are stat'ed, remote ones come from one listing per folder."""
    infos: dict[str, pafs.FileInfo] = {}
    folders: dict[str, list[str]] = {}
    for uri in uris:
        if not is_remote(uri):
            fs, path = resolve(uri)
            infos[uri] = fs.get_file_info(path)
        elif scheme_of(uri) not in ("http", "https"):
            folders.setdefault(uri.rsplit("/", 1)[0], []).append(uri)
    for folder, members in folders.items():
        fs, path = resolve(folder)
        listed = {info.base_name: info for info in fs.get_file_info(pafs.FileSelector(path, allow_not_found=True))}
        for uri in members:
            infos[uri] = listed.get(uri.rsplit("/", 1)[1], pafs.FileInfo(uri, pafs.FileType.NotFound))
    return infos


def content_digest(path: str | Path) -> str:
    """`sha256:DIGEST` of a local file, such as a model a config names: the same for every copy of
    it (each node's copy of a job's working directory has times of its own). Read once per process
    for a given size and modification time."""
    stat = os.stat(path)
    return _sha256(str(Path(path).resolve()), stat.st_size, stat.st_mtime_ns)


@functools.lru_cache(maxsize=None)
def _sha256(path: str, size: int, mtime_ns: int) -> str:  # size and time: the cache key, so a rewrite is read again
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        while chunk := file.read(1 << 20):
            digest.update(chunk)
    return f"sha256:{digest.hexdigest()[:16]}"
