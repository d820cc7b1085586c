"""Read a document's pages in a thread of their own, ahead of the embedder.

Parsing (pypdf, the text-layer checks, OCR) and embedding used to take turns: while a window of
pages was embedded, nothing read the next one, and the ingest took the parse time on top of the
embedding time. ``PagesAhead`` reads up to ``ahead`` pages in a background thread while the
caller embeds, so on a multi-core machine the parse time hides behind the embedding.

What the reader reports is kept in order with the pages: an "OCR of page n starts" note arrives
before page n. An exception in the reader (a corrupt page, a missing OCR engine) is raised in the
caller at the point where the page would have come. Closing (also on error or cancel) stops the
reader at its next page and waits for it, so the file is never read after the ingest ended.

pypdf is pure Python, so this thread and the caller take turns on the GIL; ``ingest.reader_process``
keeps the same contract with the pages read in a process of its own (the worker's default).
"""
from __future__ import annotations

import queue
import threading
from dataclasses import dataclass
from typing import Callable, Iterable, Iterator

from ingest.parse import Page


class ReaderStopped(Exception):
    """The consumer closed the reader; raised inside the reader thread only."""


@dataclass(frozen=True)
class OcrStarts:
    """The reader is about to OCR ``page`` (progress shows the step)."""

    page: int


_END = object()
_POLL_SECONDS = 0.1


class PagesAhead:
    """Iterate ``read()``'s pages, read by a background thread at most ``ahead`` items in advance.

    ``read`` is called in the reader thread with a ``note_ocr(page_number)`` callback to pass on OCR
    notes; iterating yields ``Page`` and ``OcrStarts`` items in the order the reader produced them.
    """

    def __init__(self, read: Callable[[Callable[[int], None]], Iterable[Page]], *, ahead: int):
        self._read = read
        self._items: queue.Queue = queue.Queue(maxsize=max(1, ahead))
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="ingest-reader", daemon=True)
        self._started = False

    def __enter__(self) -> PagesAhead:
        self._thread.start()
        self._started = True
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def close(self) -> None:
        self._stop.set()
        if self._started:
            self._thread.join()

    def ready(self) -> bool:
        """Whether the next item (or the end) is there, so taking it does not wait for the reader."""
        return not self._items.empty()

    def __iter__(self) -> Iterator[Page | OcrStarts]:
        while True:
            item = self._items.get()
            if item is _END:
                return
            if isinstance(item, BaseException):
                raise item
            yield item

    # ---------------------------------------------------------------- reader thread

    def _run(self) -> None:
        try:
            for page in self._read(self._note_ocr):
                self._put(page)
            self._put(_END)
        except ReaderStopped:
            return
        except BaseException as exc:  # handed to the consumer, raised there
            try:
                self._put(exc)
            except ReaderStopped:
                return

    def _note_ocr(self, page_number: int) -> None:
        self._put(OcrStarts(page_number))

    def _put(self, item) -> None:
        while True:
            if self._stop.is_set():
                raise ReaderStopped()
            try:
                self._items.put(item, timeout=_POLL_SECONDS)
                return
            except queue.Full:
                continue
