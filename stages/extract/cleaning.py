"""What extraction leaves that no one wants in training text, removed line by line."""

from __future__ import annotations


def clean_text(text: str) -> str:
    """`text` without whitespace-only lines, each line's trailing whitespace stripped."""
    return "\n".join(line.rstrip() for line in text.splitlines() if line.strip())
