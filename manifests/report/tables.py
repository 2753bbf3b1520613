"""The page's HTML tables and document samples; every value from the run is escaped."""

from __future__ import annotations

from html import escape

from manifests.report.run_data import RunData, StageSummary
from manifests.report.samples import Document, StageSamples

REASONS_LISTED = 15  # per stage in a source's drop table
ERROR_CHARS = 4_000
SHARDS_NAMED = 20  # per distinct error


def _table(header: list[str], rows: list[list], numeric_from: int = 1) -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in header)
    body = "".join(
        "<tr>" + "".join(f"<td{' class=num' if i >= numeric_from else ''}>{cell}</td>" for i, cell in enumerate(row))
        + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _share(part: int, whole: int) -> str:
    return f"{part / whole:.1%}" if whole else "-"


def drop_table(stages: list[StageSummary]) -> str:
    """Each stage's drops by reason, with their share of what the stage read."""
    rows = []
    for s in stages:
        rows.append([f"<b>{escape(s.stage)}</b>", f"<b>{s.docs_in:,} in, {s.docs_out:,} out</b>",
                     f"<b>{s.docs_in - s.docs_out:,}</b>", f"<b>{_share(s.docs_in - s.docs_out, s.docs_in)}</b>"])
        ranked = s.dropped.most_common()
        for reason, n in ranked[:REASONS_LISTED]:
            rows.append(["", escape(reason), f"{n:,}", _share(n, s.docs_in)])
        if len(ranked) > REASONS_LISTED:
            rest = sum(n for _, n in ranked[REASONS_LISTED:])
            rows.append(["", f"{len(ranked) - REASONS_LISTED} more reasons", f"{rest:,}", _share(rest, s.docs_in)])
    return _table(["stage", "drop reason", "documents", "of the stage's input"], rows, numeric_from=2)


def stage_table(run: RunData) -> str:
    rows = []
    for s in run.stages.values():
        failed = f"<span class=bad>{s.failed_count:,}</span>" if s.failed_count else "0"
        rows.append([escape(s.stage), f"{s.done:,}", failed, f"{s.docs_in:,}", f"{s.docs_out:,}",
                     _share(s.docs_out, s.docs_in), f"{s.bytes_out / 1e6:,.2f}",
                     f"{s.tokens:,}" if s.tokens is not None else "", f"{s.seconds:,.1f}",
                     f"{s.docs_in / s.seconds:,.1f}" if s.seconds else "-"])
    return _table(["stage", "shards done", "failed", "docs in", "docs out", "kept", "MB out", "tokens",
                   "task-s", "docs/s"], rows)


def failure_list(run: RunData) -> str:
    """Failed shards grouped by the last line of their traceback (one cause often fails many), each
    group with the shards it hit and one whole traceback a click away."""
    parts = []
    for s in run.stages.values():
        if not s.failed_count:
            continue
        groups: dict[str, list[dict]] = {}
        for failure in s.failed:
            error = failure["error"].strip()
            groups.setdefault(error.splitlines()[-1] if error else "", []).append(failure)
        items = []
        for last, failures in groups.items():
            shards = ", ".join(f"<code>{escape(f['shard'])}</code>" for f in failures[:SHARDS_NAMED])
            more = f" and {len(failures) - SHARDS_NAMED:,} more" if len(failures) > SHARDS_NAMED else ""
            items.append(f"<li><span class=bad>{escape(last)}</span> ({len(failures):,} shard(s)): {shards}{more}"
                         f"<details><summary>traceback</summary>"
                         f"<pre>{escape(failures[0]['error'].strip()[-ERROR_CHARS:])}</pre></details></li>")
        read = f" (the first {len(s.failed):,} read)" if len(s.failed) < s.failed_count else ""
        parts.append(f"<h3>{escape(s.stage)}: {s.failed_count:,} of {s.shards:,} shards failed{read}</h3>"
                     f"<ul class=failures>{''.join(items)}</ul>")
    return "".join(parts)


def _document(doc: Document) -> str:
    scores = " · ".join(f"{k} {v:.3g}" if isinstance(v, float) else f"{k} {v}" for k, v in doc.scores.items())
    meta = " · ".join(escape(x) for x in (doc.id, doc.label, scores) if x)
    more = f" … ({doc.chars:,} characters)" if doc.chars > len(doc.text) else ""
    text = escape(doc.text) if doc.text else "<i>(its text is not kept)</i>"
    return f"<div class=doc><div class=meta>{meta}</div><pre>{text}<span class=meta>{escape(more)}</span></pre></div>"


def sample_block(samples: StageSamples, summary: StageSummary) -> str:
    if samples.note:
        kept = "".join(_document(d) for d in samples.kept[:3])
        body = f"<p class=note>{escape(samples.note)}.</p>" + (f"<h4>kept</h4>{kept}" if kept else "")
    else:
        pairs = []
        for i, (reason, documents) in enumerate(samples.dropped.items()):
            kept = samples.kept[i * 3:i * 3 + 3] or samples.kept[:3]
            pairs.append(
                f"<div class=pair><div><h4 class=bad>dropped: {escape(reason)} "
                f"({summary.dropped[reason]:,} in all)</h4>{''.join(_document(d) for d in documents)}</div>"
                f"<div><h4 class=good>kept</h4>{''.join(_document(d) for d in kept) or '<p>none</p>'}</div></div>")
        missing = [r for r in samples.reasons if r not in samples.dropped]
        notes = [f"Not among the documents read from {samples.files_read} dropped-document file(s): "
                 f"{', '.join(missing)}." if missing else "",
                 f"{len(summary.dropped) - len(samples.reasons)} rarer reason(s) not shown."
                 if len(summary.dropped) > len(samples.reasons) else ""]
        body = "".join(pairs) + "".join(f"<p class=note>{escape(n)}</p>" for n in notes if n)
    return (f"<details open><summary><b>{escape(samples.stage)}</b>: {sum(summary.dropped.values()):,} dropped "
            f"for {len(summary.dropped)} reason(s)</summary>{body}</details>")
