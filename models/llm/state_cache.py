"""A least-recently-used store of per-conversation model states, bounded in bytes.

The llama.cpp runtime keeps one KV cache (what it has evaluated) and reuses its longest prefix
with the next prompt. With several conversations taking turns, each one's KV cache is saved here
after its answer and put back before its next question, so a follow-up evaluates only its new
tokens even when other conversations ran in between. Entries are evicted, least recently used
first, to stay within ``capacity_bytes``; 0 turns the store off.
"""
from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Generic, Hashable, TypeVar

S = TypeVar("S")


@dataclass
class CacheStats:
    hits: int = 0
    misses: int = 0
    stored: int = 0
    evicted: int = 0
    refused: int = 0  # a state bigger than the whole capacity


class SessionStateCache(Generic[S]):
    def __init__(self, capacity_bytes: int):
        self.capacity_bytes = max(0, int(capacity_bytes))
        self._items: OrderedDict[Hashable, tuple[S, int]] = OrderedDict()
        self._size = 0
        self._lock = threading.Lock()
        self.stats = CacheStats()

    @property
    def enabled(self) -> bool:
        return self.capacity_bytes > 0

    @property
    def size_bytes(self) -> int:
        return self._size

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, key: Hashable) -> bool:
        with self._lock:
            return key in self._items

    def keys(self) -> list[Hashable]:
        """Least recently used first."""
        with self._lock:
            return list(self._items)

    def get(self, key: Hashable) -> S | None:
        with self._lock:
            item = self._items.get(key)
            if item is None:
                self.stats.misses += 1
                return None
            self._items.move_to_end(key)
            self.stats.hits += 1
            return item[0]

    def put(self, key: Hashable, state: S, nbytes: int) -> bool:
        """Store ``state`` (``nbytes`` large) for ``key``, replacing its previous one; evict the
        least recently used others until everything fits. False if it cannot fit at all."""
        with self._lock:
            self._pop(key)
            if nbytes > self.capacity_bytes:
                self.stats.refused += 1
                return False
            while self._items and self._size + nbytes > self.capacity_bytes:
                _key, (_state, size) = self._items.popitem(last=False)
                self._size -= size
                self.stats.evicted += 1
            self._items[key] = (state, nbytes)
            self._size += nbytes
            self.stats.stored += 1
            return True

    def pop(self, key: Hashable) -> S | None:
        with self._lock:
            return self._pop(key)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
            self._size = 0

    def _pop(self, key: Hashable) -> S | None:
        item = self._items.pop(key, None)
        if item is None:
            return None
        self._size -= item[1]
        return item[0]
