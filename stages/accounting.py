"""Per-shard accounting: every document that enters a shard either leaves it or is dropped for a named reason."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field


class AccountingError(RuntimeError):
    """A shard's counts do not add up: documents were lost or invented."""


@dataclass
class ShardStats:
    docs_in: int = 0
    docs_out: int = 0
    dropped: Counter = field(default_factory=Counter)
    bytes_out: int = 0
    tokens: int | None = None
    # Stage-specific tallies that are not documents, e.g. lines_removed, emails_redacted.
    counters: Counter = field(default_factory=Counter)

    def drop(self, reason: str, count: int = 1) -> None:
        if count:
            self.dropped[reason] += count

    def check(self) -> "ShardStats":
        if self.docs_in != self.docs_out + sum(self.dropped.values()):
            raise AccountingError(
                f"docs_in={self.docs_in} != docs_out={self.docs_out} + dropped={dict(self.dropped)}"
            )
        return self
