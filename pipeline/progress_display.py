"""How a stage's progress is shown: a live bar in a terminal, a plain line every few seconds elsewhere.

RUN_DIR/logs/pipeline.log gets the plain lines either way: they are logged to `pipeline.progress`,
and while a bar is live the handlers that write to the terminal leave them out, and write through
rich's console, which prints each log line above the bar.
"""

from __future__ import annotations

import logging
import sys
import time
from contextlib import contextmanager

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn
from rich.table import Column

from pipeline.progress import StageProgress

REFRESH_S = 5.0  # between plain lines
LIVE_REFRESH_S = 1.0  # between updates of a live bar

progress_log = logging.getLogger("pipeline.progress")


@contextmanager
def stage_display(progress: StageProgress):
    """A live bar of `progress` when stderr is a terminal, plain lines otherwise."""
    console = Console(stderr=True)
    # rich takes FORCE_COLOR (which some CI sets) for a terminal; redrawing in place needs a real one.
    terminal = sys.stderr.isatty() and console.is_terminal and not console.is_dumb_terminal
    if terminal and progress.total_shards:
        bar = LiveBar(progress, console)
        with bar.live, _terminal_logging_above_bar():
            yield bar
            bar.update()  # the final count stays on screen
    else:
        yield PlainLines(progress)


class PlainLines:
    def __init__(self, progress: StageProgress):
        self.progress = progress
        self.refresh_s = REFRESH_S

    def show(self) -> None:
        progress_log.info(self.progress.line())


class LiveBar:
    """The stage's line, redrawn in place: a bar of its shards, the ETA and the rates."""

    def __init__(self, progress: StageProgress, console: Console):
        self.progress = progress
        self.refresh_s = LIVE_REFRESH_S
        # The counts wrap onto a second line in a narrow terminal, so the name and the bar keep their width.
        self.live = Progress(
            TextColumn("[{task.description}]", markup=False, table_column=Column(no_wrap=True)),
            BarColumn(bar_width=20),
            TextColumn("{task.completed}/{task.total} shards · ETA {task.fields[eta]} · {task.fields[rates]}",
                       markup=False, table_column=Column(no_wrap=False)),
            console=console, redirect_stdout=sys.stdout.isatty(), refresh_per_second=4,
        )
        self.task = self.live.add_task(progress.name, total=progress.total_shards, eta="?", rates=progress.rates())
        self.logged = time.monotonic()

    def update(self) -> None:
        self.live.update(self.task, completed=self.progress.done_shards, eta=self.progress.eta(),
                         rates=self.progress.rates())

    def show(self) -> None:
        self.update()
        if time.monotonic() - self.logged >= REFRESH_S:
            progress_log.info(self.progress.line())
            self.logged = time.monotonic()


@contextmanager
def _terminal_logging_above_bar():
    """Point the log handlers that write to sys.stdout or sys.stderr at rich's stand-ins for them,
    which print above the bar, while it is live (they hold the streams they were made with)."""
    proxies = {getattr(stream, "rich_proxied_file", stream): stream for stream in (sys.stdout, sys.stderr)}
    handlers = {
        handler: handler.stream
        for logger in (logging.getLogger(), logging.getLogger("pipeline")) for handler in logger.handlers
        if type(handler) is logging.StreamHandler and handler.stream in proxies
    }
    for handler, stream in handlers.items():
        handler.setStream(proxies[stream])
        handler.addFilter(_not_progress)
    try:
        yield
    finally:
        for handler, stream in handlers.items():
            handler.setStream(stream)
            handler.removeFilter(_not_progress)


def _not_progress(record: logging.LogRecord) -> bool:
    return record.name != progress_log.name
