from celery import shared_task
from celery.signals import worker_ready


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
