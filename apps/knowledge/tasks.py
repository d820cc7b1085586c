from celery import shared_task


@shared_task(name="knowledge.ingest_document", acks_late=True)
def ingest_document_task(document_id: int) -> None:
    from apps.knowledge.services import document_ingest

    document_ingest(document_id=document_id)


@shared_task(name="knowledge.delete_vectors", acks_late=True)
def delete_vectors_task(document_id: int) -> None:
    from apps.knowledge.services import document_vectors_delete

    document_vectors_delete(document_id=document_id)
