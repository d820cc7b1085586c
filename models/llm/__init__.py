"""Language-model backends behind one interface, chosen by NANOSENTRI_LLM_BACKEND.

- ``llamacpp`` (default): a GGUF run in-process by llama-cpp-python.
- ``openai``: an OpenAI-compatible HTTP server, streamed.
- ``mock``: a deterministic fake for fast unit tests.

That model is the **local** route. ``get_site_model`` is the optional **site** route, an
OpenAI-compatible server on the plant's network (``NANOSENTRI_SITE_LLM_URL``); which of the two
answers a question is decided by ``models/llm/routing.py`` and streamed by ``models/llm/router.py``.
"""
from __future__ import annotations

import threading

from django.conf import settings

from models.llm.base import ChatMessage, LanguageModel
from models.llm.queue import GenerationQueue
from models.llm.routing import SiteHealth

__all__ = [
    "ChatMessage", "LanguageModel", "get_language_model", "generation_queue", "reset_language_model",
    "get_site_model", "site_health",
]

_instances: dict[tuple, LanguageModel] = {}
_lock = threading.Lock()
generation_queue = GenerationQueue()


def _settings_key() -> tuple:
    return tuple(
        getattr(settings, name)
        for name in (
            "NANOSENTRI_LLM_BACKEND", "NANOSENTRI_LLM_MODEL", "NANOSENTRI_LLM_CHAT_FORMAT",
            "NANOSENTRI_LLM_CHAT_TEMPLATE", "NANOSENTRI_LLM_CONTEXT", "NANOSENTRI_LLM_SERVER_URL",
            "NANOSENTRI_LLM_SERVER_MODEL", "NANOSENTRI_LLM_STATE_CACHE_MB",
        )
    )


def get_language_model() -> LanguageModel:
    """The process-wide model for the current settings, loaded on first use.

    Raises ModelUnavailable with a reason a user can act on.
    """
    key = _settings_key()
    model = _instances.get(key)
    if model is None:
        with _lock:
            model = _instances.get(key)
            if model is None:
                model = _instances[key] = _build()
                # Answers that may generate at once: one per model server process, else one.
                generation_queue.slots = getattr(model, "parallel", 1)
    return model


def reset_language_model() -> None:
    with _lock:
        _instances.clear()
    _site_health.ok()


_site_health = SiteHealth(retry_s=30.0)


def site_health() -> SiteHealth:
    """The process's view of the site server: failed recently, or worth trying."""
    _site_health.retry_s = settings.NANOSENTRI_SITE_LLM_RETRY_S
    return _site_health


def get_site_model() -> LanguageModel | None:
    """The site model server's client for the current settings, or None when none is configured.

    Building it connects to nothing: a server that is down shows when a question is sent to it.
    """
    url = settings.NANOSENTRI_SITE_LLM_URL
    if not url:
        return None
    key = (
        "site", url, settings.NANOSENTRI_SITE_LLM_MODEL, settings.NANOSENTRI_SITE_LLM_KEY,
        settings.NANOSENTRI_SITE_LLM_TIMEOUT_S, settings.NANOSENTRI_SITE_LLM_CONTEXT,
    )
    model = _instances.get(key)
    if model is None:
        from models.llm.openai_http import OpenAICompatibleLanguageModel

        with _lock:
            model = _instances.get(key)
            if model is None:
                model = _instances[key] = OpenAICompatibleLanguageModel(
                    base_url=url,
                    model=settings.NANOSENTRI_SITE_LLM_MODEL,
                    api_key=settings.NANOSENTRI_SITE_LLM_KEY,
                    context_window=settings.NANOSENTRI_SITE_LLM_CONTEXT,
                    # Also the longest silence between two pieces: a stalled server frees the
                    # thread reading it (the router has given up on it by then).
                    timeout=settings.NANOSENTRI_SITE_LLM_TIMEOUT_S,
                )
    return model


def _build() -> LanguageModel:
    backend = settings.NANOSENTRI_LLM_BACKEND
    if backend == "mock":
        from models.llm.mock import MockLanguageModel

        return MockLanguageModel(context_window=settings.NANOSENTRI_LLM_CONTEXT)
    if backend == "openai":
        from models.llm.openai_http import OpenAICompatibleLanguageModel

        return OpenAICompatibleLanguageModel(
            base_url=settings.NANOSENTRI_LLM_SERVER_URL,
            model=settings.NANOSENTRI_LLM_SERVER_MODEL,
            api_key=settings.NANOSENTRI_LLM_SERVER_API_KEY,
            context_window=settings.NANOSENTRI_LLM_CONTEXT,
            timeout=settings.NANOSENTRI_LLM_SERVER_TIMEOUT,
        )
    from models.llm.llamacpp import LlamaCppLanguageModel
    from models.paths import language_model_path

    return LlamaCppLanguageModel(
        language_model_path(),
        context_window=settings.NANOSENTRI_LLM_CONTEXT,
        n_threads=settings.NANOSENTRI_LLM_THREADS,
        n_threads_batch=settings.NANOSENTRI_LLM_BATCH_THREADS,
        chat_format=settings.NANOSENTRI_LLM_CHAT_FORMAT,
        chat_template_file=settings.NANOSENTRI_LLM_CHAT_TEMPLATE,
        state_cache_mb=settings.NANOSENTRI_LLM_STATE_CACHE_MB,
    )
