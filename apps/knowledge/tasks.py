import logging

from celery import shared_task
from celery.signals import worker_init, worker_process_init, worker_ready

log = logging.getLogger(__name__)


@shared_task(name="knowledge.ingest_document", acks_late=True, bind=True)
def ingest_document_task(self, document_id: int) -> None:
    from apps.knowledge.services import document_ingest

    # The worker's node name goes on the document: who holds it, if this worker dies.
    document_ingest(document_id=document_id, worker=self.request.hostname or "")


@shared_task(name="knowledge.delete_vectors", acks_late=True)
def delete_vectors_task(document_id: int) -> None:
    from apps.knowledge.services import document_vectors_delete

    document_vectors_delete(document_id=document_id)


@worker_ready.connect
def requeue_interrupted_ingests(sender=None, **kwargs) -> None:
    """A worker killed mid-ingest leaves documents in parsing/embedding: start them again,
    unless another worker that still answers holds them."""
    from apps.knowledge.services import documents_requeue_interrupted

    documents_requeue_interrupted(worker=getattr(sender, "hostname", "") or "", workers_alive=workers_answering)


def workers_answering(names: set[str], timeout: float = 3.0) -> set[str]:
    """Which of these Celery workers answer a ping. A prefork worker answers while its pool
    process ingests; a solo pool cannot while it runs a task (run several workers with prefork,
    the default). A broker without broadcast (the embedded filesystem one) gives no answer."""
    from nanosentri_site.celery import app

    try:
        replies = app.control.ping(destination=sorted(names), timeout=timeout) or []
    except Exception as exc:  # noqa: BLE001 - no answer is the answer
        log.warning("could not ping workers %s: %s", sorted(names), exc)
        return set()
    return {name for reply in replies for name in reply} & set(names)


def _pool_forks(pool) -> bool:
    """Whether the worker's pool runs tasks in forked child processes (prefork, Celery's default)."""
    if pool is None:
        return True
    name = pool if isinstance(pool, str) else f"{getattr(pool, '__module__', '')}.{getattr(pool, '__name__', '')}"
    return "prefork" in name.lower()


def embedding_threads_apply() -> int | None:
    """torch threads of the process that runs the ingest tasks (NANOSENTRI_WORKER_EMBEDDING_THREADS)."""
    from django.conf import settings

    from models.embedding import set_torch_threads

    return set_torch_threads(settings.NANOSENTRI_WORKER_EMBEDDING_THREADS)


@worker_init.connect
def embedding_threads_in_worker(sender=None, **kwargs) -> None:
    """solo and threads pools run the tasks in the worker process itself; a prefork pool's
    children set their own (below), and its parent, which embeds nothing, does not load torch."""
    if not _pool_forks(getattr(sender, "pool_cls", "prefork")):
        embedding_threads_apply()


@worker_process_init.connect
def embedding_threads_in_pool_process(**kwargs) -> None:
    embedding_threads_apply()
