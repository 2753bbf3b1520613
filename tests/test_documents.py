import pytest

from stages.accounting import AccountingError, ShardStats
from stages.documents import WEB_DOCUMENT_SCHEMA, DroppedDocuments, ShardWriter, atomic_dir, read_documents

DOC = {"id": "a", "source": "common_crawl", "url": "http://x", "warc_record_id": None, "date": None, "text": "hi"}


def test_shard_appears_only_when_complete(tmp_path):
    path = tmp_path / "shard.parquet"
    with pytest.raises(RuntimeError):
        with ShardWriter(path, WEB_DOCUMENT_SCHEMA) as writer:
            writer.write(DOC)
            raise RuntimeError("killed mid-shard")
    assert list(tmp_path.iterdir()) == []
    with ShardWriter(path, WEB_DOCUMENT_SCHEMA) as writer:
        writer.write(DOC)
    assert list(read_documents(path)) == [DOC] and writer.bytes_written == path.stat().st_size


def test_dropped_documents_carry_their_reason_or_are_not_written(tmp_path):
    with DroppedDocuments(tmp_path / "dropped.parquet", WEB_DOCUMENT_SCHEMA) as dropped:
        dropped.add(DOC, "too_short")
    assert list(read_documents(tmp_path / "dropped.parquet")) == [{**DOC, "drop_reason": "too_short"}]
    with DroppedDocuments(None, WEB_DOCUMENT_SCHEMA) as dropped:
        dropped.add(DOC, "too_short")
    assert [p.name for p in tmp_path.iterdir()] == ["dropped.parquet"]


def test_accounting_refuses_lost_documents():
    stats = ShardStats(docs_in=3, docs_out=1)
    stats.drop("a")
    with pytest.raises(AccountingError):
        stats.check()
    stats.drop("b")
    assert stats.check() is stats


def test_directory_replaced_whole_or_not_at_all(tmp_path):
    out = tmp_path / "parts"
    with atomic_dir(out) as tmp:
        (tmp / "a").write_text("first")
    with pytest.raises(RuntimeError):
        with atomic_dir(out) as tmp:
            (tmp / "a").write_text("half")
            raise RuntimeError("killed")
    assert (out / "a").read_text() == "first"
    with atomic_dir(out) as tmp:
        (tmp / "b").write_text("second")
    assert sorted(p.name for p in out.iterdir()) == ["b"]
    assert [p.name for p in tmp_path.iterdir()] == ["parts"], "no temporaries left"
