"""The file-watching loop around ``Watcher.sync``, built on the ``watchfiles`` library
(inotify on Linux, through its Rust core): no polling, and its debouncing groups the
writes of one save."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from pathlib import Path

from spawn_db.watch.reads import content_digest
from spawn_db.watch.watcher import Watcher

# A save often arrives as several writes (editors write a temporary file and rename it):
# changes less than QUIET_MS apart make one sync, and a stream of changes is cut after
# MAX_GROUP_MS so a busy folder cannot postpone the sync for ever.
QUIET_MS = 100
MAX_GROUP_MS = 1600


def prime(watcher: Watcher) -> None:
    """Remember what every relevant file holds now, so the first save of a file that did
    not change its content (a touch) runs nothing."""
    for root in watcher.roots():
        for folder, dirs, files in os.walk(root):
            dirs[:] = [d for d in dirs if watcher.relevant(Path(folder, d))]
            for file in files:
                path = Path(folder, file)
                if watcher.relevant(path):
                    watcher.digests[path] = content_digest(path)


def follow(watcher: Watcher, *, stop: threading.Event | None = None,
           ready: Callable[[], None] | None = None) -> None:
    """Sync after every change until ``stop`` is set or Ctrl-C (``KeyboardInterrupt``)."""
    import watchfiles

    prime(watcher)
    watcher.sync(None)
    if ready is not None:
        ready()
    for changes in watchfiles.watch(*watcher.roots(), step=QUIET_MS, debounce=MAX_GROUP_MS,
                                    stop_event=stop, raise_interrupt=True):
        changed = watcher.really_changed(Path(path) for _, path in changes)
        if changed:
            watcher.sync(changed)
