"""The web process embeds one question at a time: torch keeps to one thread (llama.cpp, when it runs
there, gets the cores; a second thread only adds contention)."""
import pytest
import torch


def _torch_leaves_the_cores_to_the_model():
    # Imported here, not at collection: the ASGI application reads ALLOWED_HOSTS when it is built,
    # and the test environment adds "testserver" to it only once the session starts.
    from nanosentri_site.asgi import _torch_leaves_the_cores_to_the_model as leave

    leave()


@pytest.fixture
def torch_threads():
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(before)


@pytest.mark.parametrize("narrative, backend", [(True, "llamacpp"), (False, "llamacpp"), (True, "openai")])
def test_the_web_process_gives_torch_one_thread(settings, torch_threads, narrative, backend):
    settings.NANOSENTRI_LLM_NARRATIVE, settings.NANOSENTRI_LLM_BACKEND = narrative, backend
    _torch_leaves_the_cores_to_the_model()
    assert torch.get_num_threads() == 1


def test_zero_keeps_torchs_own_thread_count(settings, torch_threads):
    settings.NANOSENTRI_WEB_EMBEDDING_THREADS = 0
    _torch_leaves_the_cores_to_the_model()
    assert torch.get_num_threads() == 2
