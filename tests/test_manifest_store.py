"""manifests.store: a shard's row is recorded alone, read back merged, folded into the table."""

from datetime import datetime, timezone

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from manifests.store import (
    ManifestError, manifest_path, read_manifest, record_row, rows_dir, stages_recorded, write_manifest,
)


def row(shard: str, docs_out: int = 3, **fields) -> dict:
    return {
        "stage": "extract", "shard": shard, "inputs": [f"in/{shard}.warc.gz"], "input_versions": ["2461:1733222333444555666"],
        "output": f"out/{shard}.parquet",
        "docs_in": docs_out + 2, "docs_out": docs_out, "dropped": {"not_html": 2}, "bytes_out": 10, "tokens": None,
        "counters": {"bytes_skipped": 0}, "seconds": 0.5, "config_hash": "abc", "status": "done", "error": None,
        "finished_at": datetime(2026, 12, 3, 12, 0, 1, 234000, tzinfo=timezone.utc), "node": "0a1b", **fields,
    }


def test_recorded_rows_merge_with_the_table_and_fold_into_it(tmp_path):
    write_manifest(tmp_path, "extract", [row("a"), row("b")])
    record_row(tmp_path, "extract", row("b", docs_out=7))  # b recomputed
    record_row(tmp_path, "extract", row("c/with-slash"))
    assert len(list(rows_dir(tmp_path, "extract").iterdir())) == 2
    merged = read_manifest(tmp_path, "extract")
    assert [(r["shard"], r["docs_out"]) for r in merged] == [("a", 3), ("b", 7), ("c/with-slash", 3)]
    assert merged[1] == row("b", docs_out=7)  # the JSON row file round-trips every field

    write_manifest(tmp_path, "extract", merged)
    assert not list(rows_dir(tmp_path, "extract").iterdir())
    assert read_manifest(tmp_path, "extract") == merged
    assert pq.read_table(manifest_path(tmp_path, "extract")).num_rows == 3


def test_a_row_reads_back_the_same_from_its_file_and_from_the_table(tmp_path):
    recorded = row("a", finished_at=datetime(2026, 12, 3, 12, 0, 1, 234567, tzinfo=timezone.utc))
    record_row(tmp_path, "extract", recorded)
    from_file = read_manifest(tmp_path, "extract")
    write_manifest(tmp_path, "extract", from_file)
    assert read_manifest(tmp_path, "extract") == from_file
    assert from_file[0]["finished_at"] == datetime(2026, 12, 3, 12, 0, 1, 234000, tzinfo=timezone.utc)


def test_a_stage_with_only_row_files_is_recorded(tmp_path):
    record_row(tmp_path, "langid", {**row("a"), "stage": "langid"})
    assert stages_recorded(tmp_path) == ["langid"]
    assert [r["shard"] for r in read_manifest(tmp_path, "langid")] == ["a"]


def test_an_unbalanced_row_is_refused(tmp_path):
    with pytest.raises(ManifestError, match="docs_in=5 != docs_out=3 \\+ dropped=0"):
        record_row(tmp_path, "extract", row("a", dropped={}))
    assert read_manifest(tmp_path, "extract") == []


def test_a_table_written_before_input_versions_existed_reads_them_as_unknown(tmp_path):
    write_manifest(tmp_path, "extract", [row("a")])
    path = manifest_path(tmp_path, "extract")
    pq.write_table(pq.read_table(path).drop_columns(["input_versions"]), path)
    assert read_manifest(tmp_path, "extract") == [row("a", input_versions=None)]


def test_a_table_written_with_map_tallies_reads_the_same(tmp_path):
    """Manifests written before `dropped` and `counters` became lists of structs held maps."""
    rows = [row("a"), row("b", dropped={}, counters={"x": 1, "y": 2}, docs_in=3)]
    write_manifest(tmp_path, "extract", rows)
    path = manifest_path(tmp_path, "extract")
    table = pq.read_table(path)
    as_maps = pa.map_(pa.string(), pa.int64())
    for column in ("dropped", "counters"):
        values = [sorted(r[column].items()) for r in rows]
        table = table.set_column(table.schema.get_field_index(column), column, pa.array(values, type=as_maps))
    pq.write_table(table, path)
    assert pq.read_schema(path).field("dropped").type == as_maps
    assert read_manifest(tmp_path, "extract") == rows


def test_folding_rows_removes_what_a_killed_driver_was_writing(tmp_path):
    record_row(tmp_path, "extract", row("a"))
    half_written = [rows_dir(tmp_path, "extract") / ".0123abcd.json.tmp-1a2b3c4d",
                    manifest_path(tmp_path, "extract").with_name(".extract.parquet.tmp-5e6f7a8b")]
    for path in half_written:
        path.write_text("half")
    write_manifest(tmp_path, "extract", read_manifest(tmp_path, "extract"))
    assert not any(path.exists() for path in half_written)
    assert [r["shard"] for r in read_manifest(tmp_path, "extract")] == ["a"]
