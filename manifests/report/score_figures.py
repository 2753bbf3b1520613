"""How the crawl's documents score: languages, language ID scores, perplexity, quality classifier
scores and near-duplicate cluster sizes. Exact where the manifests count them, else sampled."""

from __future__ import annotations

import json
from collections import Counter

import plotly.graph_objects as go

from manifests.report.figure import COLORS, Figure, styled
from manifests.report.run_data import RunData
from manifests.report.shard_samples import perplexity_cutoffs, perplexity_histograms, sample_stage
from pipeline import storage
from pipeline.storage import location

LANGUAGES_SHOWN = 25
PERPLEXITY_LANGUAGES = 4


def language_figure(run: RunData) -> Figure | None:
    langid = run.get("langid")
    if not langid:
        return None
    dropped = Counter({r.removeprefix("language:"): n for r, n in langid.dropped.items() if r.startswith("language:")})
    kept_sample = sample_stage(run, "langid", ["language"])
    kept = Counter(kept_sample.values["language"])
    shown = [lang for lang, _ in (dropped + kept).most_common(LANGUAGES_SHOWN)]
    plot = go.Figure([
        go.Bar(x=shown, y=[kept[lang] for lang in shown], name=f"kept ({kept_sample.basis})",
               marker_color=COLORS["kept"]),
        go.Bar(x=shown, y=[dropped[lang] for lang in shown], marker_color=COLORS["dropped"],
               name=f"dropped as language:xx (all {langid.done:,} shards)"),
    ])
    low = langid.dropped.get("low_language_score", 0)
    caption = (f"Crawl documents by the language fastText gives them: kept {kept_sample.basis}, dropped from the "
               f"langid manifest; {low:,} more dropped as low_language_score (no language scored high enough). "
               f"The {LANGUAGES_SHOWN} most frequent languages.")
    return Figure("languages", "Languages (Common Crawl)", caption,
                  styled(plot, barmode="group", xaxis_title="language", yaxis_title="documents"))


def language_score_figure(run: RunData) -> Figure | None:
    if not run.get("langid"):
        return None
    kept = sample_stage(run, "langid", ["language_score"])
    dropped = sample_stage(run, "langid", ["language_score"], dropped=True)
    bins = dict(start=0, end=1.0001, size=0.02)
    plot = go.Figure([
        go.Histogram(x=kept.values["language_score"], xbins=bins, name=f"kept ({kept.basis})",
                     marker_color=COLORS["kept"], opacity=0.7),
        go.Histogram(x=dropped.values["language_score"], xbins=bins, name=f"dropped ({dropped.basis})",
                     marker_color=COLORS["dropped"], opacity=0.7),
    ])
    caption = f"fastText's score for each document's top language: kept {kept.basis}, dropped {dropped.basis}"
    caption += "." if dropped.shards_read else " (no dropped documents: run.keep_dropped was off)."
    return Figure("language-score", "Language ID score", caption,
                  styled(plot, barmode="overlay", xaxis_title="language_score", yaxis_title="documents"))


def perplexity_figure(run: RunData) -> Figure | None:
    histograms, sample = perplexity_histograms(run)
    if not histograms:
        return None
    languages = sorted(histograms, key=lambda lang: -sum(histograms[lang].values()))[:PERPLEXITY_LANGUAGES]
    plot = go.Figure([go.Bar(x=sorted(histograms[lang]), y=[histograms[lang][k] for k in sorted(histograms[lang])],
                             name=lang, opacity=0.8) for lang in languages])
    cutoffs = perplexity_cutoffs(run)
    for lang in languages[:1]:
        for bucket, value in [(b, cutoffs.get(lang, {}).get(b)) for b in ("head", "tail")]:
            if value is not None:
                plot.add_vline(x=value, line_dash="dash", line_color=COLORS["line"],
                               annotation_text=f"{lang} {bucket} cutoff {value:,.0f}", annotation_position="top")
    buckets = run.get("perplexity").counters if run.get("perplexity") else Counter()
    counted = ", ".join(f"{k.removeprefix('bucket:')} {n:,}" for k, n in sorted(buckets.items())
                        if k.startswith("bucket:"))
    caption = (f"KenLM perplexity of every scored crawl document, {sample.basis} of perplexity_score "
               f"(lower reads more like Wikipedia); the head and tail cutoffs are the run's. "
               f"Buckets, all shards: {counted or 'none recorded'}.")
    return Figure("perplexity", "Perplexity", caption,
                  styled(plot, barmode="overlay", bargap=0, xaxis_title="perplexity", yaxis_title="documents"))


def _quality_threshold(run: RunData) -> float | None:
    model = run.get("quality_model")
    if not model or not model.sample:
        return None
    card = str(location(model.sample[0]["output"]) / "quality.ftz.json")
    return json.loads(storage.read_text(card))["threshold"] if storage.exists(card) else None


def quality_figure(run: RunData) -> Figure | None:
    classifier = run.get("quality_classifier")
    bins = sorted(k for k in classifier.counters if k.startswith("score_")) if classifier else []
    if not bins:
        return None
    lows = [float(k.removeprefix("score_")) for k in bins]
    plot = go.Figure(go.Bar(x=[low + 0.05 for low in lows], y=[classifier.counters[k] for k in bins], width=0.1,
                            marker_color=COLORS["kept"], customdata=[f"{low:.1f}-{low + 0.1:.1f}" for low in lows],
                            hovertemplate="p(reference) %{customdata}: %{y:,} documents<extra></extra>"))
    threshold = _quality_threshold(run)
    if threshold is not None:
        plot.add_vline(x=threshold, line_dash="dash", line_color=COLORS["dropped"],
                       annotation_text=f"threshold {threshold:.2f}", annotation_position="top")
    caption = (f"The quality classifier's p(reference) for every crawl document it scored (the manifest's score_* "
               f"counters, all {classifier.done:,} shards); documents under the threshold are dropped.")
    return Figure("quality-score", "Quality classifier score", caption,
                  styled(plot, xaxis=dict(title="p(reference)", range=[0, 1]), yaxis_title="documents"))


def cluster_size_figure(run: RunData) -> Figure | None:
    traces, bases = [], []
    for stage in ("near_dedup", "books_dedup"):
        if not run.get(stage):
            continue
        sample = sample_stage(run, stage, ["cluster_size"])
        sizes = Counter(size or 1 for size in sample.values["cluster_size"])
        traces.append(go.Bar(x=sorted(sizes), y=[sizes[k] for k in sorted(sizes)], name=stage))
        clusters = run.get(f"{stage}_clusters")
        largest = clusters.counters.get("largest_cluster", 0) if clusters else 0
        bases.append(f"{stage} {sample.basis} (largest cluster in the run: {largest:,})")
    if not traces:
        return None
    caption = ("Near-duplicate clusters by size, one per kept document (1: a document with no near-duplicate): "
               + "; ".join(bases) + ".")
    return Figure("cluster-size", "Near-duplicate cluster sizes", caption,
                  styled(go.Figure(traces), barmode="group", xaxis_title="documents in the cluster",
                         yaxis=dict(title="clusters", type="log")))


def score_figures(run: RunData) -> list[Figure]:
    figures = [language_figure(run), language_score_figure(run), perplexity_figure(run), quality_figure(run),
               cluster_size_figure(run)]
    return [f for f in figures if f is not None]
