"""The per-conversation model-state LRU: bounded in bytes, least recently used evicted first."""
from models.llm.state_cache import SessionStateCache

MB = 1024 * 1024


def test_it_evicts_the_least_recently_used_to_stay_within_the_bound():
    cache = SessionStateCache(100 * MB)
    assert cache.put(1, "one", 40 * MB)
    assert cache.put(2, "two", 40 * MB)
    assert cache.get(1) == "one"  # 1 is now the most recently used

    assert cache.put(3, "three", 40 * MB)

    assert cache.keys() == [1, 3]
    assert cache.get(2) is None
    assert cache.size_bytes == 80 * MB <= cache.capacity_bytes
    assert cache.stats.evicted == 1


def test_it_evicts_as_many_as_needed():
    cache = SessionStateCache(100 * MB)
    for key in range(5):
        cache.put(key, key, 20 * MB)

    cache.put("big", "big", 70 * MB)

    assert cache.keys() == [4, "big"]  # 20 + 70: four older ones had to go
    assert cache.size_bytes == 90 * MB


def test_a_new_state_replaces_the_conversations_previous_one():
    cache = SessionStateCache(100 * MB)
    cache.put(1, "turn 1", 30 * MB)
    cache.put(2, "other", 30 * MB)

    cache.put(1, "turn 2", 50 * MB)

    assert cache.get(1) == "turn 2"
    assert cache.size_bytes == 80 * MB
    assert len(cache) == 2


def test_a_state_bigger_than_the_bound_is_refused_and_the_old_one_dropped():
    cache = SessionStateCache(10 * MB)
    cache.put(1, "small", 5 * MB)

    assert not cache.put(1, "huge", 11 * MB)

    assert cache.get(1) is None
    assert cache.size_bytes == 0
    assert cache.stats.refused == 1


def test_zero_turns_it_off():
    cache = SessionStateCache(0)

    assert not cache.enabled
    assert not cache.put(1, "x", 1)
    assert len(cache) == 0
