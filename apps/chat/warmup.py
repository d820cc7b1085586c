"""Load the models in the background when the server starts, so the first question is fast."""
import logging
import threading

from django.conf import settings

log = logging.getLogger(__name__)

# "idle" (no warm-up asked), "loading", "ready" or "failed: <reason>"; shown by /healthz/.
state = {"models": "idle"}


def start_warmup() -> threading.Thread:
    def work():
        state["models"] = "loading"
        try:
            from apps.knowledge.vector_index import get_vector_index, incident_index
            from models.embedding import get_embedder
            from models.llm import get_language_model

            get_embedder().embed(["warm up"])
            get_vector_index().fresh().lexical_stats()
            incident_index().fresh()
            if settings.NANOSENTRI_LLM_NARRATIVE:
                log.info("models ready: %s", get_language_model().name)
            else:  # the extract is the whole answer: no model is asked, none is loaded
                log.info("models ready: embedder only (NANOSENTRI_LLM_NARRATIVE is off)")
            state["models"] = "ready"
            _follow_index()
        except Exception as exc:  # the chat reports the problem to the user when asked
            state["models"] = f"failed: {exc}"
            log.warning("model warm-up failed: %s", exc)

    thread = threading.Thread(target=work, name="warmup", daemon=True)
    thread.start()
    return thread


def _follow_index(every: float = 1.0) -> None:
    """Re-open the store and rebuild the BM25 statistics as soon as the worker indexes a document,
    not at the next question: the first question about a new manual then gets its citations at once."""
    import time

    from django.db import close_old_connections

    from apps.knowledge.vector_index import manual_index_fresh

    while True:
        try:
            manual_index_fresh().lexical_stats()
        except Exception as exc:  # keep following; questions refresh on their own anyway
            log.debug("index refresh failed: %s", exc)
        finally:
            close_old_connections()
        time.sleep(every)
