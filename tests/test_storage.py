"""pipeline.storage against a real S3-compatible server (moto's, on 127.0.0.1): listing and globs,
whole-object writes, the manifests, a shard's staging and publishing, Common Crawl paths files."""

import gzip
import os
from datetime import datetime, timezone

import pyarrow.fs as pafs
import pytest

from manifests.store import read_manifest, record_row, stages_recorded, write_manifest
from pipeline import storage
from pipeline.config import ConfigError, WarcPathsFile, load_config
from pipeline.registry import ShardTask
from pipeline.runner import run_pipeline
from pipeline.storage import Location, Scratch, StorageSettings, location
from tests.servers.http_range import http_range_server
from tests.servers.s3 import s3_server
from tests.support import SAMPLES, write_config


@pytest.fixture(scope="module")
def s3():
    with s3_server() as server:
        saved = {k: os.environ.get(k) for k in server.env}
        os.environ.update(server.env)
        storage.configure(StorageSettings(s3_endpoint_url=server.endpoint))
        try:
            yield server
        finally:
            storage.configure(None)
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value


@pytest.fixture
def bucket(s3, request):
    name = request.node.name.replace("_", "-").lower()[:40].strip("-")
    return s3.create_bucket(name)


def test_locations_join_like_paths():
    run = location("s3://bucket/runs/a/")
    assert isinstance(run, Location) and run == "s3://bucket/runs/a"
    shard = run / "extract" / "x.parquet"
    assert shard == "s3://bucket/runs/a/extract/x.parquet"
    assert shard.name == "x.parquet" and shard.parent.parent == run
    assert location("relative/dir") == location(os.getcwd() + "/relative/dir")
    assert storage.resolve("s3://bucket/key/x")[1] == "bucket/key/x"
    assert storage.resolve("https://data.commoncrawl.org/crawl-data/x")[1] == "https://data.commoncrawl.org/crawl-data/x"


def test_glob_sizes_and_whole_writes(bucket):
    # Random bytes: moto's listing counts the upload's chunk framing (a few dozen bytes; its HEAD
    # and real S3 do not), which compressible test objects would dwarf.
    for key, size in [("crawl/a.warc.gz", 3), ("crawl/b.warc.gz", 5), ("crawl/seg/c.warc.gz", 7), ("crawl/notes.txt", 1)]:
        storage.write_bytes(f"{bucket}/{key}", os.urandom(size * 1000))
    assert storage.glob(f"{bucket}/crawl/*.warc.gz") == [f"{bucket}/crawl/a.warc.gz", f"{bucket}/crawl/b.warc.gz"]
    assert storage.glob(f"{bucket}/crawl/**/*.warc.gz") == [
        f"{bucket}/crawl/a.warc.gz", f"{bucket}/crawl/b.warc.gz", f"{bucket}/crawl/seg/c.warc.gz"]
    assert storage.glob(f"{bucket}/crawl/[ab].warc.gz") == [f"{bucket}/crawl/a.warc.gz", f"{bucket}/crawl/b.warc.gz"]
    assert storage.glob(f"{bucket}/crawl/seg", directories=True) == [f"{bucket}/crawl/seg"]
    assert storage.glob(f"{bucket}/nowhere/*.gz") == []
    files = [f"{bucket}/crawl/a.warc.gz", f"{bucket}/crawl/seg/c.warc.gz", f"{bucket}/crawl/missing"]
    listed = storage.sizes(files)
    assert [listed[f] // 100 for f in files] == [30, 70, 0]
    assert storage.list_files(f"{bucket}/crawl") == [
        f"{bucket}/crawl/a.warc.gz", f"{bucket}/crawl/b.warc.gz", f"{bucket}/crawl/notes.txt"]
    storage.remove(f"{bucket}/crawl/notes.txt")
    storage.remove(f"{bucket}/crawl/notes.txt")  # not there: no error
    assert not storage.exists(f"{bucket}/crawl/notes.txt")


def _row(shard: str, stage: str = "extract") -> dict:
    return {
        "stage": stage, "shard": shard, "inputs": ["s3://in/x"], "output": f"s3://out/{shard}", "docs_in": 3,
        "docs_out": 2, "dropped": {"not_html": 1}, "bytes_out": 10, "tokens": None, "counters": {}, "seconds": 0.1,
        "config_hash": "h", "status": "done", "error": None, "node": "n1",
        "finished_at": datetime(2026, 12, 3, 12, 0, 0, tzinfo=timezone.utc),
    }


def test_manifests_on_object_storage(bucket):
    run = f"{bucket}/run"
    write_manifest(run, "extract", [_row("a")])
    record_row(run, "extract", {**_row("b"), "docs_out": 1, "dropped": {"not_html": 2}})
    record_row(run, "langid", _row("a", "langid"))
    assert stages_recorded(run) == ["extract", "langid"]
    rows = read_manifest(run, "extract")
    assert [(r["shard"], r["docs_out"]) for r in rows] == [("a", 2), ("b", 1)]
    write_manifest(run, "extract", rows)
    assert storage.list_files(f"{run}/manifests/extract.rows") == []
    assert read_manifest(run, "extract") == rows


def test_a_shard_is_staged_and_published(bucket, tmp_path):
    storage.write_bytes(f"{bucket}/in/doc.txt", b"hello")
    storage.write_bytes(f"{bucket}/in/folder/a.txt", b"a")
    storage.write_bytes(f"{bucket}/in/folder/sub/b.txt", b"b")
    storage.write_bytes(f"{bucket}/out/result/stale.txt", b"from an earlier attempt")
    task = ShardTask("s", [f"{bucket}/in/doc.txt", f"{bucket}/in/folder"], f"{bucket}/out/result")
    with Scratch() as scratch:
        with scratch.staged(task, f"{bucket}/out/result/done.txt") as local:
            inputs = [open(local.inputs[0]).read(), sorted(os.listdir(local.inputs[1]))]
            assert inputs == ["hello", ["a.txt", "sub"]]
            os.makedirs(local.output)
            open(f"{local.output}/part-0.txt", "w").write("out")
            open(f"{local.output}/done.txt", "w").write("")
            open(os.path.dirname(local.output) + "/beside.txt", "w").write("beside")  # written next to the output
        root = scratch.root
    assert not root.exists(), "the scratch folder goes with the task"
    assert storage.list_files(f"{bucket}/out", recursive=True) == [
        f"{bucket}/out/beside.txt", f"{bucket}/out/result/done.txt", f"{bucket}/out/result/part-0.txt"]


def test_a_failed_stage_publishes_nothing(bucket):
    task = ShardTask("s", [], f"{bucket}/out/x.parquet")
    with Scratch() as scratch, pytest.raises(RuntimeError):
        with scratch.staged(task, task.output) as local:
            open(local.output, "w").write("half")
            raise RuntimeError("the stage failed")
    assert not storage.exists(task.output)


def test_local_shards_are_not_copied(tmp_path):
    task = ShardTask("s", [str(tmp_path / "in.txt")], str(tmp_path / "out.txt"))
    with Scratch() as scratch, scratch.staged(task, task.output) as local:
        assert local == task


def test_a_missing_remote_input_says_which(bucket):
    with Scratch() as scratch, pytest.raises(FileNotFoundError, match=f"input {bucket}/in/nothing not found"):
        with scratch.staged(ShardTask("s", [f"{bucket}/in/nothing"], f"{bucket}/o"), f"{bucket}/o"):
            pass


def test_common_crawl_paths_files(bucket, tmp_path):
    lines = [f"crawl-data/CC-MAIN-2024-10/segments/{i:03d}/warc/f-{i:05d}.warc.gz" for i in range(10)]
    local = tmp_path / "warc.paths.gz"
    local.write_bytes(gzip.compress(("\n".join(lines) + "\n").encode()))
    assert WarcPathsFile(paths=str(local)).files()[0] == f"https://data.commoncrawl.org/{lines[0]}"
    sliced = WarcPathsFile(paths=str(local), prefix=f"{bucket}", every=3, first=3).files()
    assert sliced == [f"{bucket}/{lines[i]}" for i in (0, 3, 6)]
    storage.write_bytes(f"{bucket}/warc.paths", "\n".join(lines).encode())  # remote, not gzipped
    assert len(WarcPathsFile(paths=f"{bucket}/warc.paths", prefix="s3://commoncrawl/").files()) == 10
    with pytest.raises(ConfigError, match="cannot read the paths file"):
        WarcPathsFile(paths=f"{bucket}/no-such.paths.gz").files()


def test_the_s3_client_is_real(s3):
    """The server refuses what S3 refuses: the storage layer does not create buckets."""
    with pytest.raises(OSError, match="(?i)bucket"):
        storage.write_bytes("s3://no-such-bucket/x", b"x")
    assert isinstance(storage.resolve("s3://b/k")[0], pafs.S3FileSystem)


def test_warcs_over_http_from_a_paths_file(tmp_path, ray_cluster):
    """WARCs named by a Common Crawl paths file under an HTTP prefix, as data.commoncrawl.org serves
    them: staged by the worker, and extracted as the same files on the local disk are."""
    names = ["wget-2024-academic-1", "cc-main-2024-22-whirlwind"]
    config_path = write_config(tmp_path, warcs=names)
    local = load_config(config_path)
    with http_range_server(SAMPLES / "warc", tmp_path / "requests.jsonl") as server:
        (tmp_path / "warc.paths").write_text("".join(f"{name}.warc.gz\n" for name in names))
        remote = load_config(config_path, output=str(tmp_path / "over-http"))
        remote = remote.model_copy(update={"inputs": remote.inputs.model_copy(update={
            "common_crawl": [WarcPathsFile(paths=str(tmp_path / "warc.paths"), prefix=server.url)]})})
        assert remote.input_files("common_crawl") == [f"{server.url}{name}.warc.gz" for name in sorted(names)]
        over_http = run_pipeline(remote, ["extract"])["extract"]
        fetched = {r["path"] for r in server.requests()}
    assert fetched == {f"/{name}.warc.gz" for name in names}
    on_disk = run_pipeline(local, ["extract"])["extract"]
    assert [r["inputs"][0].startswith(server.url) for r in over_http] == [True, True]
    for http_row, disk_row in zip(over_http, on_disk):
        assert (http_row["docs_in"], http_row["docs_out"], http_row["dropped"]) == (
            disk_row["docs_in"], disk_row["docs_out"], disk_row["dropped"])
        assert open(http_row["output"], "rb").read() == open(disk_row["output"], "rb").read()


def test_existing_lists_each_folder_once(bucket, tmp_path):
    storage.write_bytes(f"{bucket}/run/extract/a.parquet", b"a")
    storage.write_bytes(f"{bucket}/run/tokens/web/s1/part-0.bin", b"b")
    (tmp_path / "here.txt").write_text("x")
    asked = [f"{bucket}/run/extract/a.parquet", f"{bucket}/run/extract/b.parquet", f"{bucket}/run/tokens/web/s1",
             f"{bucket}/run/tokens/web/s2", str(tmp_path / "here.txt"), str(tmp_path / "gone.txt")]
    assert storage.existing(asked) == {asked[0], asked[2], asked[4]}


def test_versions_tell_content_rewritten_in_place(bucket, tmp_path):
    # Other sizes: S3 lists LastModified to the second, which a test's rewrite may not leave.
    storage.write_bytes(f"{bucket}/crawl/a.warc.gz", os.urandom(1000))
    storage.write_bytes(f"{bucket}/crawl/b.warc.gz", os.urandom(1000))
    storage.write_bytes(f"{bucket}/papers/p1/main.tex", b"x")
    (tmp_path / "repo").mkdir()
    (tmp_path / "repo" / "code.py").write_text("x")
    (tmp_path / "here.txt").write_text("x")
    asked = [f"{bucket}/crawl/a.warc.gz", f"{bucket}/crawl/b.warc.gz", f"{bucket}/papers/p1", f"{bucket}/crawl/gone",
             str(tmp_path / "repo"), str(tmp_path / "here.txt"), "https://data.commoncrawl.org/crawl-data/x.warc.gz"]
    before = storage.versions(asked)
    stat = (tmp_path / "here.txt").stat()
    assert before[str(tmp_path / "here.txt")] == f"{stat.st_size}:{stat.st_mtime_ns}"
    assert before[f"{bucket}/papers/p1"].startswith("dir:") and before[str(tmp_path / "repo")].startswith("dir:")
    assert before[f"{bucket}/crawl/gone"] == before[asked[-1]] == ""
    assert storage.versions(asked) == before

    storage.write_bytes(f"{bucket}/crawl/a.warc.gz", os.urandom(2000))
    storage.write_bytes(f"{bucket}/papers/p1/main.tex", b"xy")
    (tmp_path / "repo" / "code.py").write_text("xy")
    (tmp_path / "here.txt").write_text("xy")
    after = storage.versions(asked)
    assert [after[uri] != before[uri] for uri in asked] == [True, False, True, False, True, True, False]


def test_a_content_digest_follows_the_bytes_not_the_file_times(tmp_path):
    first, copy = tmp_path / "model.bin", tmp_path / "copy.bin"
    first.write_bytes(b"weights")
    copy.write_bytes(b"weights")
    os.utime(copy, ns=(0, 0))
    assert storage.content_digest(first) == storage.content_digest(copy)
    first.write_bytes(b"other weights")
    assert storage.content_digest(first) != storage.content_digest(copy)


def test_the_client_follows_the_endpoint_as_it_is_now(s3, monkeypatch):
    """A client made for one endpoint is not reused for another (settings or AWS_ENDPOINT_URL)."""
    storage.configure(None)
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")  # nothing listens there
    with pytest.raises(OSError, match="127.0.0.1:9"):
        storage.exists("s3://any-bucket/x")
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3.endpoint)
    assert not storage.exists(f"{s3.create_bucket('follows')}/x")
    storage.configure(StorageSettings(s3_endpoint_url=s3.endpoint))
