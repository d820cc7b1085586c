"""Load the models in the background when the server starts, so the first question is fast."""
import gc
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
            freeze_loaded()
            state["models"] = "ready"
            _follow_index()
        except Exception as exc:  # the chat reports the problem to the user when asked
            state["models"] = f"failed: {exc}"
            log.warning("model warm-up failed: %s", exc)

    thread = threading.Thread(target=work, name="warmup", daemon=True)
    thread.start()
    return thread


def freeze_loaded(*, collect: bool = True) -> int:
    """Keep what is loaded by now (modules, models, the index's statistics: ~640,000 objects with the
    seven manuals) out of the cyclic garbage collector's full passes, which then take a few ms
    instead of ~300 ms. A full pass comes every few thousand allocations in a busy process; one
    during an answer stalled the local model's stream by a third of a second (docs/benchmarks.md §1).
    Frozen objects are still freed when nothing refers to them; only cycles among them stay.
    ``collect`` first clears the garbage there is (not in the follower: a full pass there would
    stall a running answer). Returns how many objects are frozen."""
    if collect:
        gc.collect()
    gc.freeze()
    return gc.get_freeze_count()


def _follow_index(every: float = 1.0) -> None:
    """Re-open the store and rebuild the BM25 statistics as soon as the worker indexes a document,
    not at the next question: the first question about a new manual then gets its citations at once."""
    import time

    from django.db import close_old_connections

    from apps.knowledge.vector_index import manual_index_fresh

    stats = None
    while True:
        try:
            latest = manual_index_fresh().lexical_stats()
            if latest is not stats:  # rebuilt after a write: its objects join the frozen ones
                stats = latest
                freeze_loaded(collect=False)
        except Exception as exc:  # keep following; questions refresh on their own anyway
            log.debug("index refresh failed: %s", exc)
        finally:
            close_old_connections()
        time.sleep(every)
