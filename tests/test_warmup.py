"""The server's warm-up loads what answers need: the language model only when the narrative is on."""
import gc
import weakref

import pytest

from apps.chat import warmup


@pytest.fixture
def no_following(monkeypatch):
    monkeypatch.setattr(warmup, "_follow_index", lambda: None)


@pytest.mark.django_db(transaction=True)
def test_with_the_narrative_off_no_model_is_loaded(settings, monkeypatch, no_following):
    settings.NANOSENTRI_LLM_NARRATIVE = False
    monkeypatch.setattr("models.llm.get_language_model", lambda: pytest.fail("the model was loaded"))

    warmup.start_warmup().join(timeout=60)

    assert warmup.state["models"] == "ready"


@pytest.mark.django_db(transaction=True)
def test_with_the_narrative_on_the_model_is_loaded(settings, monkeypatch, no_following):
    settings.NANOSENTRI_LLM_NARRATIVE = True
    loaded = []

    class Model:
        name = "fake"

    monkeypatch.setattr("models.llm.get_language_model", lambda: loaded.append(1) or Model())

    warmup.start_warmup().join(timeout=60)

    assert warmup.state["models"] == "ready" and loaded == [1]


@pytest.fixture
def unfrozen():
    gc.unfreeze()
    yield
    gc.unfreeze()  # the rest of the test run collects as before


@pytest.mark.django_db(transaction=True)
def test_what_the_warm_up_loaded_is_left_out_of_full_garbage_collections(settings, no_following, unfrozen):
    settings.NANOSENTRI_LLM_NARRATIVE = False
    assert gc.get_freeze_count() == 0

    warmup.start_warmup().join(timeout=60)

    assert warmup.state["models"] == "ready"
    from models.embedding import get_embedder

    embedder = get_embedder()
    assert gc.get_freeze_count() > 10_000  # modules and models, not only a few objects
    assert not gc.is_tracked(embedder) or not _in_a_collected_generation(embedder)


def test_objects_made_after_the_freeze_are_still_collected(unfrozen):
    warmup.freeze_loaded()

    class Node:
        pass

    a, b = Node(), Node()
    a.other, b.other = b, a  # a cycle: only the cyclic collector frees it
    ref = weakref.ref(a)
    del a, b
    gc.collect()
    assert ref() is None


def _in_a_collected_generation(obj) -> bool:
    return any(obj is o for generation in range(3) for o in gc.get_objects(generation))
