"""Resuming checks what the inputs hold, not only their names: an input or a word list rewritten in
place recomputes what read it and nothing else; settings that only change speed recompute nothing."""

import shutil
from html import escape

import pytest

from manifests.store import read_manifest
from pipeline.config import load_config
from pipeline.runner import DISABLED, run_pipeline, shard_version, stage_hashes
from stages.documents import read_documents
from tests.support import SAMPLES, write_config, write_warc

pytestmark = pytest.mark.usefixtures("ray_cluster")
STAGES = ["extract", "langid", "line_dedup", "quality"]
PHASES = ["extract", "langid", "line_dedup_hash", "line_dedup_find", "line_dedup", "quality"]
REWRITTEN, KEPT = "cc-main-2024-22-whirlwind", "wget-2024-academic-0"
WIKIPEDIA = str(SAMPLES / "wikipedia" / "enwiki-table-markup.xml.bz2")
PAGE = ("A new page written in place of the old crawl. It talks at length about the weather in the hills, "
        "the long walks people take there in the spring, and the small towns they pass on the way. ") * 4


@pytest.fixture(scope="module")
def crawl(tmp_path_factory):
    """The crawl stages over two WARCs, with a URL blocklist of the run's own."""
    tmp_path = tmp_path_factory.mktemp("resume")
    blocklist = tmp_path / "blocklist.txt"
    shutil.copy(SAMPLES / "assets" / "url_blocklist.txt", blocklist)
    config = load_config(write_config(tmp_path, warcs=[KEPT, REWRITTEN], stages={"quality": {"url_blocklist": str(blocklist)}}))
    run_pipeline(config, STAGES)
    return config


def _rows(config) -> dict[str, dict[str, dict]]:
    return {stage: {r["shard"]: r for r in read_manifest(config.output_dir, stage)} for stage in PHASES}


def _urls(row: dict) -> list[str]:
    return [d["url"] for d in read_documents(row["output"])]


def test_an_input_rewritten_in_place_recomputes_its_shard_and_what_reads_it(crawl):
    before = _rows(crawl)
    warc = crawl.output_dir.parent / "inputs" / f"{REWRITTEN}.warc.gz"
    write_warc(warc, [("https://hills.example/walks", f"<html><body><article><p>{escape(PAGE)}</p></article></body></html>")])

    run_pipeline(crawl, STAGES)
    after = _rows(crawl)
    stat = warc.stat()
    assert after["extract"][REWRITTEN]["input_versions"] == [f"{stat.st_size}:{stat.st_mtime_ns}"]
    assert after["langid"][REWRITTEN]["input_versions"] == [shard_version(after["extract"][REWRITTEN])]
    assert _urls(after["langid"][REWRITTEN]) == ["https://hills.example/walks"]
    for stage in ("extract", "langid", "line_dedup_hash"):
        assert after[stage][KEPT] == before[stage][KEPT], f"{stage}: the other shard is not recomputed"
        assert after[stage][REWRITTEN]["finished_at"] > before[stage][REWRITTEN]["finished_at"]
    # Deduplication is corpus-wide: every shard of the phases that read all shards' hashes.
    for stage in ("line_dedup_find", "line_dedup", "quality"):
        assert all(after[stage][s]["finished_at"] > before[stage][s]["finished_at"] for s in before[stage]), stage


def test_a_word_list_rewritten_in_place_recomputes_its_stage_alone(crawl):
    before = _rows(crawl)
    kept = before["quality"][KEPT]
    [url, *_] = _urls(kept)
    host = url.split("/")[2].removeprefix("www.")
    blocklist = crawl.stages.quality.url_blocklist
    with open(blocklist, "a") as file:
        file.write(f"{host}\n")

    run_pipeline(crawl, STAGES)
    after = _rows(crawl)
    assert {stage: after[stage] for stage in PHASES[:-1]} == {stage: before[stage] for stage in PHASES[:-1]}
    assert after["quality"][KEPT]["config_hash"] != kept["config_hash"]
    assert after["quality"][KEPT]["dropped"].get("url_blocklist", 0) > kept["dropped"].get("url_blocklist", 0)
    assert url not in _urls(after["quality"][KEPT])


def _every_stage(tmp_path, **changes):
    """A config that enables the stages with speed settings, with `changes` to its sections."""
    stages = {"perplexity": {"enabled": True}, "quality_classifier": {"enabled": True}}
    for section, settings in changes.items():
        stages[section] = {**stages.get(section, {}), **settings}
    return load_config(write_config(tmp_path, warcs=[KEPT], stages=stages), inputs={"wikipedia": [WIKIPEDIA]})


def test_settings_of_speed_alone_leave_every_config_hash_as_it_is(tmp_path):
    hashes = stage_hashes(_every_stage(tmp_path))
    assert DISABLED not in {hashes[s] for s in ("near_dedup_signatures", "perplexity_model", "tokenize")}
    faster = _every_stage(tmp_path, tokenize={"num_threads": 2, "batch_docs": 7}, near_dedup={"batch_size": 5},
                          perplexity={"train_memory": "1G"})
    assert stage_hashes(faster) == hashes
    # Trainers that give another model on another thread count: the count is part of their hash.
    assert stage_hashes(_every_stage(tmp_path, tokenizer={"num_threads": 2}))["tokenizer"] != hashes["tokenizer"]
    assert stage_hashes(_every_stage(tmp_path, perplexity={"num_threads": 2}))["perplexity_model"] != hashes[
        "perplexity_model"]
