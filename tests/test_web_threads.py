"""With the local model in the web process, torch keeps to one thread (llama.cpp gets the cores)."""
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


def test_the_web_process_gives_torch_one_thread_when_the_model_runs_in_it(settings, torch_threads):
    settings.NANOSENTRI_LLM_NARRATIVE, settings.NANOSENTRI_LLM_BACKEND = True, "llamacpp"
    _torch_leaves_the_cores_to_the_model()
    assert torch.get_num_threads() == 1


@pytest.mark.parametrize("narrative, backend, threads", [(False, "llamacpp", 1), (True, "openai", 1), (True, "llamacpp", 0)])
def test_otherwise_torch_keeps_its_threads(settings, torch_threads, narrative, backend, threads):
    settings.NANOSENTRI_LLM_NARRATIVE, settings.NANOSENTRI_LLM_BACKEND = narrative, backend
    settings.NANOSENTRI_WEB_EMBEDDING_THREADS = threads
    _torch_leaves_the_cores_to_the_model()
    assert torch.get_num_threads() == 2
