"""The multi-phase deduplication steps: each builds the stages of one corpus-wide dedup."""

from __future__ import annotations

from collections.abc import Callable

from pipeline.config import RunConfig
from pipeline.registry.runs import run_minhash, run_minhash_clusters, run_minhash_pairs, run_near_dedup
from pipeline.registry.spec import ShardTask, StageSpec, Upstream, dropped_path, section_of


def _partitions(config: RunConfig, section: str) -> list[str]:
    return [f"part-{p:05d}" for p in range(section_of(config, section).partitions)]


def hash_dedup(
    name: str,
    documents: str,
    section: str,
    runs: tuple[Callable, Callable, Callable],
    *,
    enabled: Callable[[RunConfig], bool] = lambda config: True,
    settings: tuple[str, ...] | None = None,
) -> list[StageSpec]:
    """The three phases of corpus-wide exact dedup by hash over the shards of stage `documents`:
    `<name>_hash` (per shard: hashes split by partition), `<name>_find` (per partition: the
    duplicates of each shard) and `<name>` (per shard: the deduplicated documents), under
    `RUN_DIR/<name>/`. `runs` are the three phases' run functions."""

    def plan_hash(config: RunConfig, rows: Upstream) -> list[ShardTask]:
        out = config.output_dir / name / "hashes"
        return [ShardTask(r["shard"], [r["output"]], str(out / r["shard"]), i) for i, r in enumerate(rows[documents])]

    def plan_find(config: RunConfig, rows: Upstream) -> list[ShardTask]:
        out = config.output_dir / name / "duplicates"
        hashes = [r["output"] for r in rows[f"{name}_hash"]]
        return [ShardTask(part, [*(f"{h}/{part}.npy" for h in hashes), *_metas(hashes)], str(out / part), p)
                for p, part in enumerate(_partitions(config, section))]

    def plan_removal(config: RunConfig, rows: Upstream) -> list[ShardTask]:
        out = config.output_dir / name
        duplicates = [r["output"] for r in rows[f"{name}_find"]]
        return [
            ShardTask(r["shard"], [r["output"], *(f"{d}/shard-{i:05d}.npy" for d in duplicates), *_metas(duplicates)],
                      str(out / f"{r['shard']}.parquet"), i, dropped_path(config, name, r["shard"]))
            for i, r in enumerate(rows[documents])
        ]

    run_hash, run_find, run_remove = runs
    return [
        StageSpec(f"{name}_hash", section, (documents,), plan_hash, run_hash, enabled=enabled, settings=settings),
        StageSpec(f"{name}_find", section, (f"{name}_hash",), plan_find, run_find, enabled=enabled, settings=settings),
        StageSpec(name, section, (documents, f"{name}_find"), plan_removal, run_remove, enabled=enabled,
                  settings=settings),
    ]


def _metas(directories: list[str]) -> list[str]:
    """The meta.json each hash or duplicates file is checked against, read from beside it: listed
    as inputs, as everything a run function reads must be, so a remote shard is staged whole."""
    from stages.line_dedup import META

    return [f"{d}/{META}" for d in directories]


def minhash_dedup(name: str, documents: str, section: str, enabled: Callable[[RunConfig], bool]) -> list[StageSpec]:
    """The four phases of MinHash near-duplicate removal over the shards of stage `documents`, with
    the settings of `stages.<section>`: `<name>_signatures` (per shard), `<name>_pairs` (per band-key
    partition), `<name>_clusters` (one task) and `<name>` (per shard: the deduplicated documents),
    writing under `RUN_DIR/<name>/`."""

    def plan_signatures(config: RunConfig, rows: Upstream) -> list[ShardTask]:
        out = config.output_dir / name / "signatures"
        return [ShardTask(r["shard"], [r["output"]], str(out / f"{r['shard']}.npy"), i)
                for i, r in enumerate(rows[documents])]

    def plan_pairs(config: RunConfig, rows: Upstream) -> list[ShardTask]:
        out = config.output_dir / name / "pairs"
        signatures = [r["output"] for r in rows[f"{name}_signatures"]]
        return [ShardTask(part, signatures, str(out / f"{part}.npy"), p)
                for p, part in enumerate(_partitions(config, section))]

    def plan_clusters(config: RunConfig, rows: Upstream) -> list[ShardTask]:
        pairs = [r["output"] for r in rows[f"{name}_pairs"]]
        return [ShardTask("clusters", pairs, str(config.output_dir / name / "clusters"))]

    def plan_removal(config: RunConfig, rows: Upstream) -> list[ShardTask]:
        out = config.output_dir / name
        clusters = rows[f"{name}_clusters"][0]["output"]
        return [
            ShardTask(r["shard"], [r["output"], f"{clusters}/shard-{i:05d}.npy"], str(out / f"{r['shard']}.parquet"), i,
                      dropped_path(config, name, r["shard"]))
            for i, r in enumerate(rows[documents])
        ]

    # How many documents are hashed at once: each document's signature is its own.
    unhashed = ("batch_size",)
    return [
        StageSpec(f"{name}_signatures", section, (documents,), plan_signatures, run_minhash, enabled=enabled,
                  unhashed=unhashed),
        StageSpec(f"{name}_pairs", section, (f"{name}_signatures",), plan_pairs, run_minhash_pairs, enabled=enabled,
                  unhashed=unhashed),
        StageSpec(f"{name}_clusters", section, (f"{name}_pairs",), plan_clusters, run_minhash_clusters, enabled=enabled,
                  unhashed=unhashed),
        StageSpec(name, section, (documents, f"{name}_clusters"), plan_removal, run_near_dedup, enabled=enabled,
                  unhashed=unhashed),
    ]
