"""The manifest schema: one parquet file per stage, one row per output shard.

| column        | type               | meaning                                                     |
|---------------|--------------------|-------------------------------------------------------------|
| stage         | string             | stage name                                                  |
| shard         | string             | shard name, unique within the stage                         |
| inputs        | list<string>       | input paths the shard read                                  |
| input_versions | list<string>, nullable | what each input held when the shard was planned (below) |
| output        | string             | the shard's output path (a prefix for .bin/.idx pairs)      |
| docs_in       | int64              | documents (or records) read                                 |
| docs_out      | int64              | documents written                                           |
| dropped       | list<struct<reason: string, count: int64>> | documents dropped, by reason        |
| bytes_out     | int64              | bytes written                                               |
| tokens        | int64, nullable    | tokens written or trained on (token stages only)            |
| counters      | list<struct<name: string, count: int64>> | stage-specific tallies, e.g. lines_removed |
| seconds       | double             | wall time of the shard's task                               |
| config_hash   | string             | digest of the stage's parameters and its upstream stages    |
| status        | string             | "done" or "failed"                                          |
| error         | string, nullable   | the failure, for status "failed"                            |
| finished_at   | timestamp[ms, UTC] | when the row was recorded                                   |
| node          | string, nullable   | the Ray node that ran the shard (its node id)               |

Invariant for every row: docs_in == docs_out + sum of dropped's counts.

`dropped` and `counters` are lists of (name, count) structs, sorted by name, not maps: every common
reader takes them (pandas, polars, duckdb, pyarrow, Hugging Face datasets, which has no map type).
`manifests.store.read_manifest` gives them as dicts; manifests written with the earlier map columns
are read the same.

`input_versions` holds one entry per input, in the order of `inputs`, which resuming compares with
what they hold now: `shard:DIGEST` for one an upstream shard wrote (a digest of that shard's row:
its config hash, input versions and counts, so a shard recomputed from other inputs has another),
`sha256:DIGEST` for a model or list the config names, `SIZE:MTIME_NS` for another file (on object
storage its size and LastModified), `dir:DIGEST` for a folder (its files' names, sizes and times),
"" for an HTTP URL (not checked). Null in rows written before the column existed.
"""

import pyarrow as pa

DROPPED_TYPE = pa.list_(pa.struct([pa.field("reason", pa.string(), nullable=False),
                                   pa.field("count", pa.int64(), nullable=False)]))
COUNTERS_TYPE = pa.list_(pa.struct([pa.field("name", pa.string(), nullable=False),
                                    pa.field("count", pa.int64(), nullable=False)]))
# The (name, count) columns, by the name of their struct's key field.
TALLY_COLUMNS = {"dropped": "reason", "counters": "name"}

DONE = "done"
FAILED = "failed"

MANIFEST_SCHEMA = pa.schema(
    [
        pa.field("stage", pa.string(), nullable=False),
        pa.field("shard", pa.string(), nullable=False),
        pa.field("inputs", pa.list_(pa.string()), nullable=False),
        pa.field("input_versions", pa.list_(pa.string())),
        pa.field("output", pa.string(), nullable=False),
        pa.field("docs_in", pa.int64(), nullable=False),
        pa.field("docs_out", pa.int64(), nullable=False),
        pa.field("dropped", DROPPED_TYPE, nullable=False),
        pa.field("bytes_out", pa.int64(), nullable=False),
        pa.field("tokens", pa.int64()),
        pa.field("counters", COUNTERS_TYPE, nullable=False),
        pa.field("seconds", pa.float64(), nullable=False),
        pa.field("config_hash", pa.string(), nullable=False),
        pa.field("status", pa.string(), nullable=False),
        pa.field("error", pa.string()),
        pa.field("finished_at", pa.timestamp("ms", tz="UTC"), nullable=False),
        pa.field("node", pa.string()),
    ]
)
