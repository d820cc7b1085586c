"""The web process embeds one question at a time: torch keeps to one thread (llama.cpp, when it runs
there, gets the cores; a second thread only adds contention)."""
import ast

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


_WHICH_OPENMP = """
import os, sys
os.environ["DJANGO_SETTINGS_MODULE"] = "nanosentri_site.settings"
import nanosentri_site.asgi  # noqa: F401  (as daphne loads the web process)
import torch  # noqa: F401
import llama_cpp  # noqa: F401
print(sorted({line.split()[-1] for line in open("/proc/self/maps") if "libgomp" in line}))
"""


@pytest.mark.skipif(not __import__("os").path.exists("/proc/self/maps"), reason="reads /proc (Linux)")
@pytest.mark.parametrize("backend", ["llamacpp", "openai"])
def test_the_local_model_in_the_web_process_runs_on_its_own_openmp_not_torchs_copy(backend):
    """torch's wheel carries an older libgomp; loaded first it would serve llama.cpp too. Measured
    in docs/benchmarks.md (issue 10, step 1): the raw llama.cpp arm runs on the system's."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL", "CELERY_BROKER_URL")}
    env["NANOSENTRI_LLM_BACKEND"] = backend
    out = subprocess.run([sys.executable, "-c", _WHICH_OPENMP], env=env, cwd=Path(__file__).parents[1],
                         capture_output=True, text=True, timeout=120, check=True).stdout
    loaded = ast.literal_eval(out.strip().splitlines()[-1])
    assert len(loaded) == 1  # one OpenMP runtime in the process, whichever it is
    torch_copy = "site-packages/torch/lib/" in loaded[0]
    assert torch_copy == (backend != "llamacpp")
