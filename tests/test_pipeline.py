"""The whole path on a real local Ray: WARC -> text -> language ID -> tokenizer -> shards -> training."""

import glob
import gzip
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from collections import Counter
from html import escape
from pathlib import Path

import duckdb
import pandas as pd
import pytest

from manifests.inspect import format_run
from manifests.store import manifest_path, read_manifest
from pipeline.config import load_config
from pipeline.registry import STAGE_ORDER
from pipeline.runner import run_pipeline
from stages.documents import read_documents
from stages.extract import extract_warc
from stages.tokenize import read_parts
# OTHER_SOURCES: test_determinism imports it from here.
from tests.support import OTHER_SOURCES, ROOT, SMALL, WARCS, write_config, write_warc  # noqa: F401
from trainer.indexed_dataset import IndexedDataset

pytestmark = pytest.mark.usefixtures("ray_cluster")


def test_every_stage_records_balanced_rows(finished_run):
    # reference_pages needs a crawl index (tests/test_reference_pages.py runs it against one).
    for stage in [s for s in STAGE_ORDER if s != "reference_pages"]:
        rows = read_manifest(finished_run.output_dir, stage)
        assert rows, stage
        for row in rows:
            assert row["status"] == "done"
            assert row["docs_in"] == row["docs_out"] + sum(row["dropped"].values())
            assert row["config_hash"] and row["seconds"] >= 0
    extract = read_manifest(finished_run.output_dir, "extract")
    assert len(extract) == len(SMALL)
    assert sum(r["docs_out"] for r in extract) > 30
    langid = read_manifest(finished_run.output_dir, "langid")
    assert any(reason.startswith("language:") for r in langid for reason in r["dropped"])


def test_token_shards_are_megatron_files_of_the_kept_documents_of_every_source(finished_run):
    clean = {
        f"{source}/{r['shard']}": r
        for source, stage in [("common_crawl", "quality_classifier"), ("wikipedia", "wikipedia"), ("arxiv", "arxiv"),
                              ("stackexchange", "stackexchange"), ("github", "github_dedup"), ("books", "books_dedup")]
        for r in read_manifest(finished_run.output_dir, stage)
    }
    rows = read_manifest(finished_run.output_dir, "tokenize")
    assert {r["shard"] for r in rows} == set(clean)
    assert {r["shard"].split("/")[0] for r in rows if r["tokens"]} == {
        "common_crawl", "wikipedia", "arxiv", "stackexchange", "github", "books"}
    for row in rows:
        parts = read_parts(row["output"])
        datasets = [IndexedDataset(p["prefix"]) for p in parts]
        assert sum(len(d) for d in datasets) == row["docs_out"] == clean[row["shard"]]["docs_out"]
        assert sum(d.num_tokens for d in datasets) == row["tokens"]
        for dataset in datasets:
            assert dataset[0][0] == 1 and dataset[0][-1] == 2  # BOS ... EOS


def test_mixture_table_and_blends(finished_run):
    [row] = read_manifest(finished_run.output_dir, "mixture")
    mixture = json.loads((Path(row["output"]) / "mixture.json").read_text())
    table = mixture["table"]
    assert set(table) == {"common_crawl", "wikipedia", "arxiv", "stackexchange", "github", "books"}
    assert sum(r["share"] for r in table.values()) == pytest.approx(1.0)
    # LLaMA's weights, renormalised over the six sources: Common Crawl takes 82%.
    assert table["common_crawl"]["share"] == pytest.approx(0.82)
    train = finished_run.stages.train
    assert mixture["token_budget"] == train.steps * train.batch_size * train.seq_len
    for source, r in table.items():
        assert r["epochs"] == pytest.approx(r["share"] * mixture["token_budget"] / r["tokens"])
        assert row["counters"][f"tokens_{source}"] == r["tokens"]
    words = (Path(row["output"]) / "megatron_data_path.txt").read_text().split()
    weights, prefixes = [float(w) for w in words[::2]], words[1::2]
    assert sum(weights) == pytest.approx(1.0)
    assert all((finished_run.output_dir / (p + ".idx")).is_file() for p in prefixes)  # relative to the run
    assert "| common_crawl |" in format_run(finished_run.output_dir, stage="mixture")
    assert "tokens" in format_run(finished_run.output_dir, stage="tokenize")


def test_training_loss_falls_and_checkpoint_is_saved(finished_run):
    [row] = read_manifest(finished_run.output_dir, "train")
    assert Path(row["output"]).is_file() and row["tokens"] > 0
    log = [json.loads(line) for line in (Path(row["output"]).parent / "train_log.jsonl").read_text().splitlines()]
    losses = [entry["loss"] for entry in log]
    assert sum(losses[-3:]) / 3 < sum(losses[:3]) / 3
    assert all(entry["tokens_per_s"] > 0 for entry in log)
    summary = format_run(finished_run.output_dir, stage="train")
    assert f"training  {len(log)} steps; loss {log[0]['loss']:.3f} -> {log[-1]['loss']:.3f}" in summary


def test_rerun_recomputes_nothing_even_with_other_thread_counts_and_batches(finished_run):
    before = {stage: read_manifest(finished_run.output_dir, stage) for stage in STAGE_ORDER}
    stages = finished_run.stages
    faster = finished_run.model_copy(update={"stages": stages.model_copy(update={
        "tokenize": stages.tokenize.model_copy(update={"num_threads": 2, "batch_docs": 64}),
        "near_dedup": stages.near_dedup.model_copy(update={"batch_size": 7}),
    })})
    run_pipeline(faster)
    assert {stage: read_manifest(finished_run.output_dir, stage) for stage in STAGE_ORDER} == before


def test_manifests_open_without_this_project(finished_run, tmp_path, monkeypatch):
    """Every stage's manifest at once, in each common reader: the documents dropped by reason add up
    to docs_in - docs_out."""
    import datasets
    import polars as pl
    import pyarrow.dataset as ds

    pattern = str(finished_run.output_dir / "manifests" / "*.parquet")
    columns = {"stage", "shard", "inputs", "output", "docs_in", "docs_out", "dropped", "bytes_out", "seconds",
               "config_hash", "status", "counters"}
    frame = pd.concat([pd.read_parquet(p) for p in sorted(glob.glob(pattern))])
    assert columns <= set(frame.columns)
    dropped_docs = int(frame.docs_in.sum() - frame.docs_out.sum())
    assert dropped_docs > 0
    assert sum(item["count"] for items in frame.dropped for item in items) == dropped_docs

    assert duckdb.sql(f"SELECT sum(docs_in) - sum(docs_out) FROM '{pattern}'").fetchall()[0][0] == dropped_docs
    by_reason = duckdb.sql(f"SELECT sum(d.count) FROM (SELECT unnest(dropped) AS d FROM '{pattern}')").fetchall()
    assert by_reason[0][0] == dropped_docs

    lazy = pl.scan_parquet(pattern).explode("dropped").select(pl.col("dropped").struct.field("count").sum())
    assert lazy.collect().item() == dropped_docs

    table = ds.dataset(sorted(glob.glob(pattern)), format="parquet").to_table()
    assert sum(item["count"] for items in table["dropped"].to_pylist() for item in items) == dropped_docs

    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    rows = datasets.load_dataset("parquet", data_files=pattern, split="train")
    assert columns <= set(rows.column_names) and rows.num_rows == len(frame)
    assert sum(item["count"] for items in rows["dropped"] for item in items) == dropped_docs


def test_inspect_prints_the_funnel(finished_run, tmp_path):
    from pipeline.registry import PHASES

    text = format_run(finished_run.output_dir, shards=True)
    for stage in [s for s in STAGE_ORDER if s not in PHASES and s != "reference_pages"]:  # off without a crawl index
        assert f"\n{stage}: " in f"\n{text}"
    assert "dropped" in text and "shard wget-2024-academic-0" in text
    # A phase shows its own counters, not a funnel of documents it does not pass on.
    [phase] = [line for line in text.splitlines() if line.startswith("  line_dedup_find (a phase of line_dedup): ")]
    assert " in -> " not in phase and "task-s" in phase
    assert text.splitlines()[-1].startswith("task-s: ")

    moved = tmp_path / "moved"
    shutil.copytree(finished_run.output_dir / "manifests", moved / "manifests")
    shutil.copytree(finished_run.output_dir / "train", moved / "train", ignore=shutil.ignore_patterns("checkpoint*"))
    assert f"log {moved / 'train' / 'train_log.jsonl'}" in format_run(moved, stage="train")


def test_crawl_documents_carry_their_perplexity_bucket(finished_run):
    [model] = read_manifest(finished_run.output_dir, "perplexity_model")
    assert model["shard"] == "en" and model["docs_out"] > 0
    [cutoffs_row] = read_manifest(finished_run.output_dir, "perplexity_cutoffs")
    cutoffs = json.loads(Path(cutoffs_row["output"]).read_text())
    assert cutoffs["en"]["from"] == "run" and 1 < cutoffs["en"]["head"] < cutoffs["en"]["tail"]
    rows = read_manifest(finished_run.output_dir, "perplexity")
    buckets = Counter()
    for row in rows:
        buckets.update({k: v for k, v in row["counters"].items() if k.startswith("bucket:")})
        assert set(row["dropped"]) <= {"perplexity_bucket:tail"}
    assert buckets["bucket:en:head"] and buckets["bucket:en:middle"] and buckets["bucket:en:tail"]
    kept = [d for row in read_manifest(finished_run.output_dir, "quality") for d in read_documents(row["output"])]
    assert kept and {d["perplexity_bucket"] for d in kept} <= {"head", "middle"}
    assert all(d["perplexity"] < cutoffs["en"]["tail"] for d in kept)
    assert "bucket:en:head" in format_run(finished_run.output_dir)


def test_changed_parameters_rerun_only_that_stage_and_downstream(finished_run, tmp_path):
    extract_before = read_manifest(finished_run.output_dir, "extract")
    changed = finished_run.model_copy(
        update={"stages": finished_run.stages.model_copy(
            update={"langid": finished_run.stages.langid.model_copy(update={"threshold": 0.9})})}
    )
    run_pipeline(changed, ["langid"])
    assert read_manifest(finished_run.output_dir, "extract") == extract_before
    langid = read_manifest(finished_run.output_dir, "langid")
    assert all(r["dropped"].get("low_language_score", 0) >= 0 for r in langid)
    with pytest.raises(Exception, match="needs the finished output of stage 'langid'"):
        run_pipeline(finished_run, ["line_dedup_hash"])  # langid's output is the changed config's now
    run_pipeline(finished_run, ["langid"])


def test_quality_classifier_trains_on_the_run_and_filters_its_clean_documents(finished_run):
    [model_row] = read_manifest(finished_run.output_dir, "quality_model")
    model_dir = Path(model_row["output"])
    card = json.loads((model_dir / "quality.ftz.json").read_text())
    assert card["data"]["sources"]["positive_source"] == "wikipedia_articles"  # no sample page is cited
    assert model_row["counters"]["wikipedia_fallback"] == 1
    assert model_row["docs_out"] == card["data"]["positives"] + card["data"]["negatives"] > 0
    urls = (model_dir / "reference_urls.txt").read_text().splitlines()
    assert len(urls) == model_row["counters"]["reference_urls"] > 50
    assert f"held-out precision {card['heldout_metrics']['precision']:.3f}" in format_run(
        finished_run.output_dir, stage="quality_model")

    near = {r["shard"]: r for r in read_manifest(finished_run.output_dir, "near_dedup")}
    threshold = finished_run.stages.quality_classifier.threshold
    for row in read_manifest(finished_run.output_dir, "quality_classifier"):
        assert row["docs_in"] == near[row["shard"]]["docs_out"]
        assert sum(v for k, v in row["counters"].items() if k.startswith("score_")) == row["docs_in"]
        assert all(d["quality_score"] >= threshold for d in read_documents(row["output"]))
        assert set(row["dropped"]) <= {"quality_below_threshold"}
        dropped = finished_run.output_dir / "dropped" / "quality_classifier" / f"{row['shard']}.parquet"
        if row["dropped"]:
            assert all(d["quality_score"] < threshold for d in read_documents(dropped))


def test_new_threshold_refilters_without_retraining(finished_run):
    model_before = read_manifest(finished_run.output_dir, "quality_model")
    strict = finished_run.model_copy(update={"stages": finished_run.stages.model_copy(update={
        "quality_classifier": finished_run.stages.quality_classifier.model_copy(update={"threshold": 0.999})})})
    run_pipeline(strict, ["quality_model", "quality_classifier"])
    assert read_manifest(finished_run.output_dir, "quality_model") == model_before
    rows = read_manifest(finished_run.output_dir, "quality_classifier")
    assert sum(r["docs_out"] for r in rows) < sum(r["docs_in"] for r in rows)
    run_pipeline(finished_run, ["quality_classifier"])


def test_a_trained_quality_model_applies_without_wikipedia(finished_run, tmp_path):
    [model_row] = read_manifest(finished_run.output_dir, "quality_model")
    model = str(Path(model_row["output"]) / "quality.ftz")
    config = load_config(write_config(tmp_path, warcs=["wget-2024-academic-0"],
                                      stages={"quality_classifier": {"enabled": True, "model": model}}))
    run_pipeline(config, ["extract", "langid", "line_dedup", "quality", "near_dedup", "quality_model",
                          "quality_classifier", "tokenizer"])
    assert not manifest_path(config.output_dir, "quality_model").exists()
    [row] = read_manifest(config.output_dir, "quality_classifier")
    assert row["inputs"][1] == model
    [tokenizer] = read_manifest(config.output_dir, "tokenizer")
    assert tokenizer["inputs"] == [row["output"]]


def _bad_inputs(directory: Path) -> None:
    directory.mkdir()
    real = (ROOT / "samples" / "warc" / "wget-2024-academic-0.warc.gz").read_bytes()
    (directory / "truncated.warc.gz").write_bytes(real[: len(real) // 2])
    (directory / "empty.warc.gz").write_bytes(b"")
    (directory / "not-a-warc.warc.gz").write_bytes(gzip.compress(b"this is not a WARC file\n" * 50))


def test_bad_input_is_counted_not_fatal(tmp_path):
    _bad_inputs(tmp_path / "bad")
    config = load_config(
        write_config(tmp_path, warcs=[]), inputs={"common_crawl": [str(tmp_path / "bad" / "*.warc.gz")]}
    )
    run_pipeline(config, ["extract"])
    rows = {r["shard"]: r for r in read_manifest(config.output_dir, "extract")}
    assert set(rows) == {"truncated", "empty", "not-a-warc"}
    assert all(r["status"] == "done" for r in rows.values())
    assert rows["truncated"]["docs_out"] > 0, "documents before the damage are kept"
    for row in rows.values():
        assert row["dropped"], f"{row['shard']}: the problem must be a counted reason"


def _outputs(run_dir: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(run_dir)): p.read_bytes()
        for p in sorted(run_dir.rglob("*"))
        if p.is_file() and "manifests" not in p.parts and "logs" not in p.parts and "report" not in p.parts
    }


def test_killed_run_resumes_to_identical_output(tmp_path):
    config_path = write_config(tmp_path, warcs=None)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop("RAY_ADDRESS", None)
    command = [sys.executable, "-m", "pipeline", "run", str(config_path), "--stages", "extract,langid"]
    run_dir = tmp_path / "run"

    process = subprocess.Popen(command, cwd=ROOT, env=env, start_new_session=True,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and len(read_manifest(run_dir, "extract")) < 2:
        time.sleep(0.2)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    finished_before_kill = read_manifest(run_dir, "extract")
    assert 2 <= len(finished_before_kill) < len(WARCS), "the kill should land mid-stage"

    resumed = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    assert f"{len(finished_before_kill)} already done" in resumed.stderr
    assert resumed.stdout.splitlines()[-1] == f"report: {run_dir / 'report' / 'index.html'}", "a run ends by naming its report"
    after = {r["shard"]: r for r in read_manifest(run_dir, "extract")}
    for row in finished_before_kill:
        assert after[row["shard"]]["finished_at"] == row["finished_at"], "finished shards are not recomputed"
    assert not list(run_dir.rglob(".*.tmp-*")), "no temporary files are left behind"

    clean = tmp_path / "clean"
    subprocess.run([*command, "--output", str(clean)], cwd=ROOT, env=env, check=True, capture_output=True)
    assert _outputs(run_dir) == _outputs(clean)


def test_cli_inspect_and_validate(finished_run, capsys):
    from pipeline.cli import main

    assert main(["inspect", str(finished_run.output_dir), "--stage", "langid", "--shards"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("langid: ") and "shard wget-2024-academic-0" in out
    assert main(["inspect", str(finished_run.output_dir / "nothing-here")]) == 0
    assert "no manifests yet" in capsys.readouterr().out


def test_failed_shard_is_recorded_and_only_it_is_retried(tmp_path, caplog):
    from pipeline.runner import StageFailed

    config = load_config(write_config(tmp_path, warcs=["wget-2024-academic-0", "wget-2024-academic-1"]))
    run_pipeline(config, ["extract"])
    damaged = Path(read_manifest(config.output_dir, "extract")[0]["output"])
    damaged.write_bytes(b"not parquet")
    with pytest.raises(StageFailed, match="1 of 2 shards failed"):
        run_pipeline(config, ["langid"])
    rows = {r["shard"]: r for r in read_manifest(config.output_dir, "langid")}
    assert rows["wget-2024-academic-0"]["status"] == "failed" and rows["wget-2024-academic-0"]["error"]
    assert rows["wget-2024-academic-1"]["status"] == "done"

    damaged.unlink()
    run_pipeline(config, ["extract", "langid"])
    after = {r["shard"]: r for r in read_manifest(config.output_dir, "langid")}
    assert all(r["status"] == "done" for r in after.values())
    assert after["wget-2024-academic-1"]["finished_at"] == rows["wget-2024-academic-1"]["finished_at"]


def _html(lines: list[str]) -> str:
    return "<html><body><article>" + "".join(f"<p>{escape(line)}</p>" for line in lines) + "</article></body></html>"


def test_duplicates_across_shards_are_removed_corpus_wide(tmp_path):
    """Shard b repeats shard a's pages: some verbatim (line dedup's job), some re-wrapped so that no
    line matches but the words do (MinHash's job). Only shard b loses documents."""
    extract_warc(str(ROOT / "samples" / "warc" / "wget-2024-academic-0.warc.gz"), str(tmp_path / "real.parquet"))
    texts = sorted((d["text"] for d in read_documents(tmp_path / "real.parquet")), key=len, reverse=True)[:6]
    (tmp_path / "in").mkdir()
    write_warc(tmp_path / "in" / "a.warc.gz", [(f"https://a.example/{i}", _html(t.split("\n"))) for i, t in enumerate(texts)])
    copies = [t.split("\n") if i < 3 else textwrap.wrap(" ".join(t.split()), 70) for i, t in enumerate(texts)]
    write_warc(tmp_path / "in" / "b.warc.gz", [(f"https://b.example/{i}", _html(c)) for i, c in enumerate(copies)])

    config = load_config(
        write_config(tmp_path, warcs=[], stages={"quality": {"c4": None}}),  # C4 drops lines without end punctuation
        inputs={"common_crawl": [str(tmp_path / "in" / "*.warc.gz")]},
    )
    run_pipeline(config, ["extract", "langid", "line_dedup", "quality", "near_dedup"])

    line = {r["shard"]: r for r in read_manifest(config.output_dir, "line_dedup")}
    near = {r["shard"]: r for r in read_manifest(config.output_dir, "near_dedup")}
    assert line["b"]["dropped"].get("too_short_after_line_dedup", 0) >= 3
    assert not line["a"]["dropped"] and not near["a"]["dropped"]
    assert near["b"]["dropped"].get("near_duplicate", 0) >= 1
    dropped = list(read_documents(config.output_dir / "dropped" / "near_dedup" / "b.parquet"))
    kept = {d["cluster_id"]: d for d in read_documents(config.output_dir / "near_dedup" / "a.parquet") if d["cluster_id"]}
    assert dropped and all(d["drop_reason"] == "near_duplicate" and d["cluster_id"] in kept for d in dropped)
    assert all(kept[d["cluster_id"]]["cluster_size"] >= 2 for d in dropped)


def test_wikipedia_dumps_run_as_their_own_stage(tmp_path):
    dumps = ROOT / "samples" / "wikipedia"
    config = load_config(
        write_config(tmp_path, warcs=["cc-main-2024-22-whirlwind"]),
        inputs={"wikipedia": [str(dumps / "bgwiki-*.bz2"), str(dumps / "enwiki-table-markup.xml.bz2")]},
    )
    run_pipeline(config, ["wikipedia"])
    rows = {r["shard"]: r for r in read_manifest(config.output_dir, "wikipedia")}
    assert set(rows) == {"bgwiki-latest-pages-articles-shortened", "enwiki-table-markup"}
    assert rows["bgwiki-latest-pages-articles-shortened"]["dropped"] == {"namespace_4": 2}
    articles = list(read_documents(rows["enwiki-table-markup"]["output"]))
    assert len(articles) == rows["enwiki-table-markup"]["docs_out"] > 0
    assert all(d["source"] == "wikipedia" and "{|" not in d["text"] for d in articles)
    assert (config.output_dir / "wikipedia" / "references" / "enwiki-table-markup.parquet").is_file()


def test_tokenizer_trained_on_the_mix_round_trips_every_source(finished_run):
    """Real text of every source, plus characters the tokenizer never saw: decode(encode(x)) == x
    (identity normalisation: no change at all), every digit its own token, no unknown id; and the
    Hugging Face export gives the same ids."""
    from transformers import AutoTokenizer, LlamaTokenizer

    from classifiers.tokenizer import UNK_ID, load_tokenizer

    [row] = read_manifest(finished_run.output_dir, "tokenizer")
    sp = load_tokenizer(row["output"])
    hf = AutoTokenizer.from_pretrained(Path(row["output"]).parent / "hf")
    # transformers 5's LlamaTokenizer: the same ids too, except before a leading space (README).
    llama = LlamaTokenizer.from_pretrained(Path(row["output"]).parent / "hf")
    texts = []
    for stage in ("quality_classifier", "wikipedia", "arxiv", "stackexchange", "github_dedup", "books_dedup"):
        shard = next(r["output"] for r in read_manifest(finished_run.output_dir, stage) if r["docs_out"])
        texts.append(next(read_documents(shard))["text"][:20_000])
    texts.append("Ἀθῆναι ❄ 漢字 𝔘𝔫𝔦𝔠𝔬𝔡𝔢 in 2024: 1234567 ≥ 3.14159 \t tabs\r\n")
    for text in texts:
        ids = sp.encode(text)
        assert sp.decode(ids) == text
        assert UNK_ID not in ids
        pieces = [sp.id_to_piece(i) for i in ids if not sp.is_byte(i)]  # byte pieces are named <0xNN>
        assert all(sum(c in "0123456789" for c in piece) <= 1 for piece in pieces)
        assert hf(text, add_special_tokens=False).input_ids == ids
        assert hf(text).input_ids == [1, *ids]
        assert llama(text).input_ids == [1, *ids]


def test_the_clean_corpus_of_every_source_loads_as_one_dataset(finished_run, tmp_path, monkeypatch):
    import datasets

    from pipeline.registry import source_documents

    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    import polars as pl

    pattern = str(finished_run.output_dir / "corpus" / "*" / "*.parquet")
    corpus = datasets.load_dataset("parquet", data_files=pattern, split="train")
    assert corpus.column_names == ["id", "source", "text", "url", "metadata"]
    clean = source_documents({stage: read_manifest(finished_run.output_dir, stage) for stage in STAGE_ORDER})
    expected = {source: sum(r["docs_out"] for r in rows) for source, rows in clean.items()}
    assert set(expected) == {"common_crawl", "wikipedia", "arxiv", "stackexchange", "github", "books"}
    assert Counter(corpus["source"]) == expected
    assert dict(duckdb.sql(f"SELECT source, count(*) FROM '{pattern}' GROUP BY source").fetchall()) == expected
    assert dict(pl.scan_parquet(pattern).group_by("source").len().collect().iter_rows()) == expected
    assert Counter(pd.concat([pd.read_parquet(p) for p in glob.glob(pattern)]).source) == expected
    assert len(set(corpus["id"])) == corpus.num_rows
    by_source = {}
    for document in corpus:
        by_source.setdefault(document["source"], document)
    assert by_source["common_crawl"]["url"].startswith("http")
    assert json.loads(by_source["common_crawl"]["metadata"])["language"] == "en"
    assert {"repository", "path", "license"} <= set(json.loads(by_source["github"]["metadata"]))
    assert by_source["github"]["url"] is None
