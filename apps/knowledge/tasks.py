from celery import shared_task
from celery.signals import worker_init, worker_process_init, worker_ready


@shared_task(name="knowledge.ingest_document", acks_late=True)
def ingest_document_task(document_id: int) -> None:
    from apps.knowledge.services import document_ingest

    document_ingest(document_id=document_id)


@shared_task(name="knowledge.delete_vectors", acks_late=True)
def delete_vectors_task(document_id: int) -> None:
    from apps.knowledge.services import document_vectors_delete

    document_vectors_delete(document_id=document_id)


@worker_ready.connect
def requeue_interrupted_ingests(**kwargs) -> None:
    """A worker killed mid-ingest leaves documents in parsing/embedding: start them again."""
    from apps.knowledge.services import documents_requeue_interrupted

    documents_requeue_interrupted()


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
