"""Where a run's inputs and its run directory live: a local disk, or any store pyarrow reaches.

    locations     URIs (`s3://`, `gs://`, `https://`, local paths) to a filesystem and a path on it;
                  `Location`, a URI that joins with `/` as a Path does; the store's settings
    files         what the driver and the manifests do on any location: exists, list, read, write
                  (whole objects, so a reader never sees half of one), remove; the sizes and
                  versions (content identities) of many files from one listing per folder
    staging       a shard's remote inputs copied to a local scratch folder, its outputs published
                  back, so the stages keep taking local paths and stay free of storage concerns

Local paths take none of these detours: a run on one machine reads and writes its files in place.
"""

from pipeline.storage.files import (
    content_digest,
    existing,
    exists,
    glob,
    list_files,
    open_input_file,
    read_bytes,
    read_text,
    remove,
    sizes,
    versions,
    write_bytes,
    write_text,
)
from pipeline.storage.locations import Location, StorageSettings, configure, is_remote, location, resolve
from pipeline.storage.staging import Scratch

__all__ = [
    "Location",
    "Scratch",
    "StorageSettings",
    "configure",
    "content_digest",
    "existing",
    "exists",
    "glob",
    "is_remote",
    "list_files",
    "open_input_file",
    "location",
    "read_bytes",
    "read_text",
    "remove",
    "resolve",
    "sizes",
    "versions",
    "write_bytes",
    "write_text",
]
