"""Read a document's pages in a process of its own, ahead of the embedder.

``ingest.read_ahead.PagesAhead`` reads in a thread, but pypdf and the text-layer checks are pure
Python: the reader thread holds the GIL most of the time it runs, so on a 2-core machine the parse
time (1.3 s for the seven shared manuals, against 4.6 s of embedding) mostly added to the
embedding instead of hiding behind it. Embedding on 2 torch threads while another *process*
parsed the same manuals took 1.05-1.20× its time alone. ``PagesInProcess`` keeps ``PagesAhead``'s
contract — pages and ``OcrStarts`` notes in order, a reader error raised where its page would
have come, at most ``ahead`` items read in advance, the file never read after the caller closed —
with ``DocumentReader.pages()`` (OCR included) run in a reader process.

The reader process is ``python -m ingest.reader_process``, spoken to in length-prefixed pickle
frames over its stdin and stdout; not ``multiprocessing``, whose daemonic processes (a Celery
prefork pool process is one) may not have children. Starting Python and importing pypdf costs
more than parsing a short manual, so one reader process per process is started on first use and
kept for the next documents. One that died, or whose document was left unfinished (a cancel, an
embedding error), is killed rather than stopped — stopping would wait for the page in its hand,
seconds when it is an OCR — and the next document starts a fresh one.

Flow control: the reader sends an item only against a credit; the consumer gives ``ahead``
credits with the request and one more for every item it takes, so at most ``ahead`` items wait in
the pipe and one more in the reader's hand, as with the thread's queue.

Frames to the reader: ``("read", path, file_name, ocr_engine, ahead)``, then ``("more",)`` for
every item taken. From the reader: ``("page", Page)`` and ``("ocr", page_number)``, then
``("end", empty_pages, page_sources, page_reasons)`` or ``("error", exception)``.
"""
from __future__ import annotations

import atexit
import logging
import os
import pickle
import select
import signal
import struct
import subprocess
import sys
import threading
from pathlib import Path
from typing import Iterator

from ingest.parse import DocumentReader, Page, PageSink, ParseError
from ingest.read_ahead import OcrStarts

log = logging.getLogger("ingest.reader_process")  # also when run as __main__

ROOT = Path(__file__).resolve().parent.parent
_HEADER = struct.Struct(">I")


# ---------------------------------------------------------------- frames


def _write_frame(fd: int, message) -> None:
    data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    view = memoryview(_HEADER.pack(len(data)) + data)
    while view:
        view = view[os.write(fd, view):]


def _read_frame(fd: int):
    """The next message, or None when the other side is gone."""
    header = _read_exactly(fd, _HEADER.size)
    if header is None:
        return None
    payload = _read_exactly(fd, _HEADER.unpack(header)[0])
    return None if payload is None else pickle.loads(payload)


def _read_exactly(fd: int, size: int) -> bytes | None:
    data = bytearray()
    while len(data) < size:
        part = os.read(fd, size - len(data))
        if not part:
            return None
        data += part
    return bytes(data)


def _readable(fd: int) -> bool:
    """Whether reading ``fd`` would not wait (data, or the end of the pipe). poll, not select:
    a long-running worker's descriptors may go past select's limit of 1024."""
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    return bool(poller.poll(0))


# ---------------------------------------------------------------- the consumer's side


class _ReaderProcess:
    """One reader process and its two pipes."""

    def __init__(self):
        self.owner = os.getpid()
        self.proc = subprocess.Popen([sys.executable, "-m", "ingest.reader_process"], cwd=ROOT,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, bufsize=0)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def send(self, message) -> None:
        _write_frame(self.proc.stdin.fileno(), message)

    def receive(self):
        return _read_frame(self.proc.stdout.fileno())

    def ready(self) -> bool:
        return _readable(self.proc.stdout.fileno())

    def kill(self) -> None:
        if self.alive():
            self.proc.kill()
        self._reap()

    def stop(self) -> None:
        """Close its stdin, which it takes as the end; kill it if it does not end soon."""
        self.proc.stdin.close()
        try:
            self.proc.wait(timeout=2)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self._reap()

    def how_it_ended(self) -> str:
        try:
            code = self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:  # it closed its output but lives on: no use any more
            self.proc.kill()
            code = self.proc.wait()
        if code < 0:
            try:
                return f"killed by {signal.Signals(-code).name}"
            except ValueError:
                return f"killed by signal {-code}"
        return f"exit code {code}"

    def _reap(self) -> None:
        self.proc.wait()
        for pipe in (self.proc.stdin, self.proc.stdout):
            pipe.close()


_idle: list[_ReaderProcess] = []
_idle_lock = threading.Lock()


def _take() -> _ReaderProcess:
    """A waiting reader process of this process, or a new one. Ingests running side by side in
    threads each get their own; one forked from this process leaves its parent's alone."""
    with _idle_lock:
        while _idle:
            process = _idle.pop()
            if process.owner != os.getpid():
                continue
            if process.alive():
                return process
            process.kill()  # died while it waited (an OOM kill): reap it
    return _ReaderProcess()


def _give_back(process: _ReaderProcess) -> None:
    with _idle_lock:
        _idle.append(process)


@atexit.register
def _stop_idle() -> None:
    with _idle_lock:
        processes = [p for p in _idle if p.owner == os.getpid()]
        _idle.clear()
    for process in processes:
        process.stop()


class PagesInProcess:
    """Iterate ``reader``'s pages, read by a reader process at most ``ahead`` items in advance.

    ``reader`` is the caller's open ``DocumentReader`` (its page count, title and opening errors
    are the caller's business); the reader process opens the same file again and reads its pages.
    When the pages are through, ``reader.empty_pages``, ``page_sources`` and ``page_reasons`` are
    set to what the reader process found, as if ``reader.pages()`` had run here.
    """

    def __init__(self, reader: DocumentReader, *, ahead: int):
        self._reader = reader
        self._ahead = max(1, ahead)
        self._process: _ReaderProcess | None = None
        self._finished = False

    def __enter__(self) -> PagesInProcess:
        self._process = _take()
        reader = self._reader
        self._send(("read", os.path.abspath(reader.path), reader.name, reader.ocr_engine, self._ahead))
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def close(self) -> None:
        """Give the reader process back for the next document, or kill it if it is still reading
        this one: the file is never read after the caller closed."""
        process, self._process = self._process, None
        if process is None:
            return
        if self._finished:
            _give_back(process)
        else:
            process.kill()

    def ready(self) -> bool:
        """Whether the next item (or the end) is there, so taking it does not wait for the reader."""
        return self._process is not None and self._process.ready()

    def __iter__(self) -> Iterator[Page | OcrStarts]:
        while not self._finished:
            message = self._receive()
            kind = message[0]
            if kind == "end":
                _, self._reader.empty_pages, self._reader.page_sources, self._reader.page_reasons = message
                self._finished = True
            elif kind == "error":
                self._finished = True  # the reader process is ready for the next document
                raise message[1]
            else:
                self._send(("more",))  # this item is taken: the reader may read one more
                yield message[1] if kind == "page" else OcrStarts(message[1])

    def _send(self, message) -> None:
        try:
            self._process.send(message)
        except OSError:
            self._lost()

    def _receive(self):
        try:
            message = self._process.receive()
        except OSError:
            message = None
        if message is None:
            self._lost()
        return message

    def _lost(self):
        process, self._process = self._process, None
        how = process.how_it_ended()
        process.kill()
        raise ParseError(f"the page reader stopped unexpectedly ({how}) while reading this document; "
                         "re-index it to try again")


# ---------------------------------------------------------------- the reader process


class _Parent:
    """The reader process's end of the pipes: requests and credits in, frames out."""

    def __init__(self, frames_in: int, frames_out: int):
        self._in, self._out = frames_in, frames_out

    def receive(self):
        message = _read_frame(self._in)
        if message is None:  # the consumer's process is gone
            raise SystemExit(0)
        return message

    def waiting(self) -> bool:
        return _readable(self._in)

    def send(self, message) -> None:
        try:
            _write_frame(self._out, message)
        except BrokenPipeError:  # the consumer's process is gone
            raise SystemExit(0) from None


def _read_document(parent: _Parent, path: str, file_name: str, ocr_engine: str | None, ahead: int) -> None:
    credits = ahead

    def send(message) -> None:
        nonlocal credits
        # Take the credits that came meanwhile, so they never pile up in the pipe; wait for one
        # when there is none left.
        while parent.waiting() or not credits:
            if parent.receive()[0] == "more":
                credits += 1
        credits -= 1
        parent.send(message)

    try:
        reader = DocumentReader(Path(path), file_name, ocr_engine=ocr_engine,
                                sink=PageSink(on_ocr=lambda number: send(("ocr", number))))
        for page in reader.pages():
            send(("page", page))
    except Exception as exc:  # handed to the consumer, raised there
        if not isinstance(exc, ParseError):
            log.error("reading %s failed", file_name, exc_info=exc)  # the traceback stays here
        parent.send(("error", _portable(exc)))
        return
    parent.send(("end", reader.empty_pages, reader.page_sources, reader.page_reasons))


def _portable(exc: Exception) -> Exception:
    """``exc`` if it survives pickling (an exception whose constructor takes other arguments than
    it keeps may not), else a RuntimeError that says what it was."""
    try:
        pickle.loads(pickle.dumps(exc))
        return exc
    except Exception:
        return RuntimeError(f"{type(exc).__name__}: {exc}")


def main() -> None:
    """Read the documents asked for, one after the other, until the consumer's process is gone."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is for the worker; this process ends with its pipes
    frames_out = os.dup(1)
    os.dup2(2, 1)  # whatever a library prints goes to stderr, never into the frames
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s (page reader %(process)d): %(message)s")
    # As the app's LOGGING has it: pypdf warns once per odd object of a PDF's syntax.
    logging.getLogger("pypdf").setLevel(logging.ERROR)
    parent = _Parent(0, frames_out)
    while True:
        request = parent.receive()
        if request[0] == "read":  # else a credit left over from the last document
            _read_document(parent, *request[1:])


if __name__ == "__main__":
    main()
