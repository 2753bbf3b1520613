"""The report's Markdown: the step tables, C4's line deletion, and the drop samples (drops/*.md)
for a person to judge."""

from __future__ import annotations

import random
import re
import textwrap
from collections import Counter, defaultdict
from pathlib import Path

from bench.crawl_filters.corpus import CORPORA, CORPUS
from bench.crawl_filters.run import Outcome

SAMPLES_PER_RULE = 20
PREVIEW_CHARS = 600
WRAP = 100
SHRINK = 0.5  # C4: list the documents whose text shrinks by more than this
TYPOGRAPHIC_QUOTE_END = re.compile(r"[.!?][\u201d\u2019\u00bb]$")


# ---------------------------------------------------------------------------------------------
# Tables


def pct(x: float) -> str:
    return f"{x:.1f}%"


def corpus_cell(summary: dict, corpus: str) -> str:
    return f"{summary['in_by_corpus'].get(corpus, 0)} → {summary['kept_by_corpus'].get(corpus, 0)}"


def step_table(outcomes: list[Outcome], chars_columns: bool) -> list[str]:
    head = "| step | rule | docs in | kept | dropped | % dropped | eval | warc |"
    rule = "|---|---|---:|---:|---:|---:|---:|---:|"
    if chars_columns:
        head += " chars in | chars out | % chars out |"
        rule += "---:|---:|---:|"
    lines = [head, rule]
    for o in outcomes:
        s = o.summary
        row = (f"| **{o.step.name}** | *all* | {s['docs_in']:,} | {s['kept']:,} | {s['dropped']:,} | "
               f"{pct(s['pct_dropped'])} | {corpus_cell(s, 'eval')} | {corpus_cell(s, 'warc')} |")
        if chars_columns:
            share = 100 * s["chars_out"] / s["chars_in"] if s["chars_in"] else 0.0
            row += f" {s['chars_in']:,} | {s['chars_out']:,} | {pct(share)} |"
        lines.append(row)
        for r in o.rules:
            cells = [f"−{r['dropped_by_corpus'].get(c, 0)}" for c in CORPORA]
            row = (f"| | `{r['rule']}` | {r['docs_in']:,} | {r['kept']:,} | {r['dropped']:,} | {pct(r['pct_dropped'])} "
                   f"| {cells[0]} | {cells[1]} |")
            lines.append(row + (" | | |" if chars_columns else ""))
    return lines


def c4_report(outcome: Outcome, label: str) -> tuple[list[str], dict, list[dict]]:
    """Lines, numbers and the shortened documents of C4's line deletion in one outcome. Characters
    removed: from the documents kept (the stage's counters). Shortened by more than SHRINK: every
    document whose lines C4 judged, kept or dropped (a dropped one by what its line rules leave,
    e.g. `c4:most_text_removed`), with its outcome."""
    counters = outcome.result.counters
    before = {d["id"]: d for d in outcome.inputs}
    kept = outcome.result.kept
    judged = [(doc, doc["text"], "kept") for doc in kept]
    judged += [(doc, outcome.result.details[doc["id"]]["after"], f"dropped: `{reason}`")
               for doc, reason in outcome.result.dropped
               if (outcome.result.details.get(doc["id"]) or {}).get("after") is not None]
    shrunk = []
    for doc, after, fate in judged:
        old, new = len(before[doc["id"]]["text"]), len(after)
        if old and (old - new) / old > SHRINK:
            shrunk.append({"id": doc["id"], "url": doc.get("url"), "corpus": CORPUS[doc["id"]], "chars_before": old,
                           "chars_after": new, "outcome": fate, "before": before[doc["id"]]["text"], "after": after})
    shrunk.sort(key=lambda r: (r["chars_after"] / r["chars_before"], r["url"] or ""))
    changed = sum(len(d["text"]) != len(before[d["id"]]["text"]) for d in kept)
    kept_in = sum(len(before[d["id"]]["text"]) for d in kept)
    # Lines that end a sentence inside a typographic closing quote: C4's END_PUNCTUATION has only
    # the ASCII quotes, so its no_terminal_punc rule deletes them.
    quoted = [(doc["id"], line) for doc, _, _ in judged for line in before[doc["id"]]["text"].splitlines()
              if TYPOGRAPHIC_QUOTE_END.search(line.strip()) and len(line.split()) >= 3]
    lines_removed = {k.split(":", 1)[1]: v for k, v in sorted(counters.items()) if k.startswith("c4_lines_removed:")}
    numbers = {
        "documents_kept": len(kept), "documents_changed": changed, "chars_in_kept_documents": kept_in,
        "c4_chars_removed": counters.get("c4_chars_removed", 0), "lines_removed_in_kept_documents": lines_removed,
        "documents_judged_line_by_line": len(judged),
        "shrunk_over_half": len(shrunk),
        "shrunk_over_half_by_outcome": dict(Counter(r["outcome"] for r in shrunk)),
        "shrunk_over_half_by_corpus": dict(Counter(r["corpus"] for r in shrunk)),
        "typographic_quote_lines_removed": len(quoted),
        "typographic_quote_chars_removed": sum(len(line) for _, line in quoted),
        "typographic_quote_documents": len({i for i, _ in quoted}),
    }
    removed = numbers["c4_chars_removed"]
    outcomes = ", ".join(f"{n} {o}" for o, n in sorted(numbers["shrunk_over_half_by_outcome"].items()))
    corpora = ", ".join(f"{c} {n}" for c, n in sorted(numbers["shrunk_over_half_by_corpus"].items()))
    text = [
        f"- {label}: of {len(kept):,} documents kept, {changed:,} lost lines; C4's line rules removed "
        f"{removed:,} of their {kept_in:,} characters ({pct(100 * removed / kept_in if kept_in else 0)}); "
        "lines removed by rule: " + ", ".join(f"{k} {v:,}" for k, v in lines_removed.items()) + ".",
        f"- Of the {len(judged):,} documents whose lines C4 judged, {len(shrunk)} lose more than {SHRINK:.0%} of their "
        f"text to its line rules" + (f" ({outcomes}; {corpora}); listed below." if shrunk else "."),
        f"- {len(quoted):,} lines of those documents ({numbers['typographic_quote_chars_removed']:,} chars, in "
        f"{numbers['typographic_quote_documents']} documents) end a sentence inside a typographic quote "
        "(`.”`, `?’`, `.»`): C4's end-punctuation list (`. ! ? \" '`) does not accept them, so they are deleted.",
    ]
    return text, numbers, shrunk


def shrunk_table(shrunk: list[dict]) -> list[str]:
    lines = ["| url | corpus | chars before | chars after | left | outcome |", "|---|---|---:|---:|---:|---|"]
    for r in shrunk:
        lines.append(f"| {r['url']} | {r['corpus']} | {r['chars_before']:,} | {r['chars_after']:,} | "
                     f"{pct(100 * r['chars_after'] / r['chars_before'])} | {r['outcome']} |")
    return lines


# ---------------------------------------------------------------------------------------------
# Drop samples


def block(text: str | None, limit: int = PREVIEW_CHARS) -> list[str]:
    if text is None:
        return ["    (nothing)"]
    shown = text[:limit] + (" […]" if len(text) > limit else "")
    wrapped = []
    for line in shown.split("\n"):
        wrapped += textwrap.wrap(line, WRAP, replace_whitespace=False, break_on_hyphens=False) or [""]
    return ["```text", *(w.replace("```", "`\u200b``") for w in wrapped), "```"]


def safe_name(rule: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", rule.replace(":", "__"))


def funnel_fates(funnel: list[Outcome]) -> dict[str, str]:
    """Document id -> which funnel step dropped it, and why."""
    fate = {}
    for o in funnel:
        for doc, reason in o.result.dropped:
            fate[doc["id"]] = f"dropped by {o.step.name} (`{reason}`)"
    return fate


def _entry(k: int, doc: dict, rule: str, o: Outcome, fate: str, training_ids: set[str]) -> list[str]:
    extra = []
    if doc.get("language") is not None:
        extra.append(f"language {doc['language']} ({doc['language_score']:.2f})")
    if doc.get("quality_score") is not None:
        extra.append(f"p(reference) {doc['quality_score']:.3f}")
    if doc["id"] in training_ids:
        extra.append("**one of the classifier's training pages**")
    lines = [f"### {k}. {doc.get('url')}", "",
             f"corpus **{CORPUS[doc['id']]}** · `{rule}` · {len(doc['text']):,} chars · "
             + "".join(f"{e} · " for e in extra) + f"in the funnel: {fate}", ""]
    lines += block(doc["text"])
    detail = o.result.details.get(doc["id"])
    if detail:
        for note in detail.get("notes", []):
            lines.append(f"- {note}" if not note.endswith(":") else f"\n{note}\n")
        if "after" in detail:
            after = detail["after"]
            label = ("What C4's line rules leave (what its sentence count and the rules after it judge)"
                     if rule.startswith(("c4:", "after_c4_lines:")) else "What is left after the step's edits")
            lines += ["", f"{label}: {len(after or ''):,} chars", ""] + block(after)
    return lines + [""]


def write_drop_samples(out: Path, alone: list[Outcome], funnel: list[Outcome], seed: int,
                       training_ids: set[str]) -> list[dict]:
    """drops/<rule>.md for every rule that drops a document in the funnel or alone: up to
    SAMPLES_PER_RULE random drops of the funnel (what a run loses to the rule), then up to as many of
    the drops of the rule alone that the funnel does not drop by it (what the rule does on raw
    pages: mostly pages an earlier step removes first). Returns the index rows."""
    drops_dir = out / "drops"
    drops_dir.mkdir(parents=True, exist_ok=True)
    for stale in drops_dir.glob("*.md"):
        stale.unlink()
    fates = funnel_fates(funnel)
    sources: dict[str, dict[str, tuple[Outcome, list[dict]]]] = defaultdict(dict)
    for mode, outcomes in (("funnel", funnel), ("alone", alone)):
        for o in outcomes:
            grouped = defaultdict(list)
            for doc, reason in o.result.dropped:
                grouped[reason].append(doc)
            for reason, docs in grouped.items():
                sources[reason].setdefault(mode, (o, docs))
    index = []
    for rule in sorted(sources):
        rng = random.Random(f"{seed}\0{rule}")
        row = {"rule": rule, "file": f"drops/{safe_name(rule)}.md"}
        lines = [f"# `{rule}`", "",
                 "Drops chosen at random (seed {}). Each entry: the page's URL and corpus, what happens to it in "
                 "the funnel, and the first {} characters of the text the step saw (lines wrapped at {} columns "
                 "for reading).".format(seed, PREVIEW_CHARS, WRAP), ""]
        for mode in ("funnel", "alone"):
            if mode not in sources[rule]:
                row[mode], row[f"{mode}_shown"] = 0, 0
                continue
            o, docs = sources[rule][mode]
            same = {d["id"] for d in docs if fates.get(d["id"], "").endswith(f"(`{rule}`)")}
            pool = docs if mode == "funnel" else [d for d in docs if d["id"] not in same]
            chosen = rng.sample(pool, min(SAMPLES_PER_RULE, len(pool)))
            row[mode], row[f"{mode}_shown"] = len(docs), len(chosen)
            if mode == "funnel":
                lines += [f"## In the funnel: {len(chosen)} of its {len(docs)} drops", "",
                          f"Step `{o.step.name}` ({o.step.description}), on what the steps before it kept.", ""]
            else:
                lines += [f"## Alone, on every document: {len(chosen)} of the {len(pool)} drops the funnel does not "
                          f"make by this rule (alone it drops {len(docs)})", "",
                          f"Step `{o.step.name}` ({o.step.description}), on the extracted pages.", ""]
            for k, doc in enumerate(chosen, 1):
                fate = fates.get(doc["id"], "kept to the end")
                lines += _entry(k, doc, rule, o, "dropped by this rule" if doc["id"] in same else fate, training_ids)
        (out / row["file"]).write_text("\n".join(lines) + "\n", encoding="utf-8")
        index.append(row)
    return index


def write_shrunk_samples(out: Path, shrunk_funnel: list[dict], shrunk_alone: list[dict], seed: int) -> str:
    rng = random.Random(f"{seed}\0c4 line deletion")
    lines = [f"# C4 line deletion: documents whose lines C4's rules cut by more than {SHRINK:.0%}", "",
             "Before: the text C4 saw; after: what its line rules keep (lines ending in terminal punctuation, "
             "3+ words, no javascript / cookie / terms-of-use lines). Chosen at random (seed {}).".format(seed), ""]
    in_funnel = {r["id"] for r in shrunk_funnel}
    for title, pool in (("In the funnel (the text after also has PII redacted)", shrunk_funnel),
                        ("C4 alone, on every document, not in the list above",
                         [r for r in shrunk_alone if r["id"] not in in_funnel])):
        if not pool:
            continue
        chosen = rng.sample(pool, min(SAMPLES_PER_RULE, len(pool)))
        lines += [f"## {title}: {len(chosen)} of {len(pool)}", ""]
        for k, r in enumerate(chosen, 1):
            lines += [f"### {k}. {r['url']}", "", f"corpus **{r['corpus']}** · {r['chars_before']:,} → "
                      f"{r['chars_after']:,} chars ({pct(100 * r['chars_after'] / r['chars_before'])} left) · "
                      f"{r['outcome']}", "",
                      "Before:", ""]
            lines += block(r["before"]) + ["", "After:", ""] + block(r["after"]) + [""]
    name = "drops/c4__line_deletion_over_half.md"
    (out / name).write_text("\n".join(lines) + "\n", encoding="utf-8")
    return name
