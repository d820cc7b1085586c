import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "nanosentri_site.settings")
django_asgi_app = get_asgi_application()

from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.security.websocket import AllowedHostsOriginValidator  # noqa: E402

from apps.assets.routing import websocket_urlpatterns as assets_ws  # noqa: E402
from apps.chat.routing import websocket_urlpatterns as chat_ws  # noqa: E402
from apps.knowledge.routing import websocket_urlpatterns as knowledge_ws  # noqa: E402

application = ProtocolTypeRouter(
    {
        "http": django_asgi_app,
        "websocket": AllowedHostsOriginValidator(AuthMiddlewareStack(URLRouter(chat_ws + knowledge_ws + assets_ws))),
    }
)



def _daphne_without_form_parsing() -> None:
    """Twisted, under daphne, parses every multipart POST body a second time, in memory, only to
    throw the result away (Django parses uploads itself, streaming them to disk): a 120 MB upload
    took the web process from 120 MB to 1.5 GB, so a batch of manuals could kill it. It also
    answers a bare 400 to a body it cannot parse, before the app can say why. Turn it off."""
    try:
        from daphne.http_protocol import WebRequest
    except ImportError:  # another ASGI server
        return
    if getattr(WebRequest, "_form_parsing_off", False):
        return
    init = WebRequest.__init__

    def __init__(self, *args, **kwargs):
        kwargs["parsePOSTFormSubmission"] = False  # twisted.web.http.Request's own switch
        init(self, *args, **kwargs)

    WebRequest.__init__ = __init__
    WebRequest._form_parsing_off = True


_daphne_without_form_parsing()


def _one_openmp_runtime_for_the_model() -> None:
    """llama.cpp and torch both run on GNU OpenMP and both ask for ``libgomp.so.1``: whichever is
    loaded first serves the process. torch's wheel carries its own, older copy, so when torch came
    first (it did: the line below imports it) the local model ran on that copy, while llama.cpp on
    its own (and the bench's raw arm) runs on the system's. Load the model's library first, so the
    web process runs llama.cpp exactly as llama.cpp alone does; torch works with either."""
    from django.conf import settings

    if settings.NANOSENTRI_LLM_BACKEND != "llamacpp":
        return
    try:
        import llama_cpp  # noqa: F401  (loads libllama, libggml and the libgomp they were built with)
    except ImportError:  # reported when the model is first asked for
        return


_one_openmp_runtime_for_the_model()


def _torch_leaves_the_cores_to_the_model() -> None:
    """The web process embeds one short question at a time, where a second OpenMP thread saves
    nothing and costs much when the cores are busy: with the local model in the same process,
    torch's threads compete with llama.cpp's (tokens/s 0.64x raw with torch's default), and on a
    loaded machine a question's embedding took 180-230 ms with 2 threads, 30-35 ms with one
    (docs/benchmarks.md)."""
    from django.conf import settings

    threads = settings.NANOSENTRI_WEB_EMBEDDING_THREADS
    if threads > 0:
        try:
            import torch
        except ImportError:  # no torch, no competition
            return
        torch.set_num_threads(threads)


_torch_leaves_the_cores_to_the_model()

# Answers this process writes are its own; the heartbeat also fails those a dead process left
# streaming (apps/chat/inflight.py), first at startup: a restarted web process cleans up after itself.
from apps.chat.inflight import heartbeat_start  # noqa: E402

heartbeat_start()

if os.environ.get("NANOSENTRI_WARMUP") == "1":
    from apps.chat.warmup import start_warmup

    start_warmup()
