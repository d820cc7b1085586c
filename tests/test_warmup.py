"""The server's warm-up loads what answers need: the language model only when the narrative is on."""
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
