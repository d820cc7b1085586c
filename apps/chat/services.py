"""The answer pipeline, shared by the chat websocket and ``manage.py ask``.

``answer_stream`` is a plain (blocking) generator of protocol events — see docs/protocol.md:
evidence first (citations), then the queue position, then tokens, then ``done``. The chat
consumer runs it in a worker thread; the ask command iterates it directly.
"""
from __future__ import annotations

import contextlib
import logging
import threading
import time
from dataclasses import replace
from typing import Iterator

from django.conf import settings
from django.db import close_old_connections, transaction
from django.utils import timezone

from apps.chat.ask_request import AskRefused, InvalidContext, ask_request_clean, question_clean
from apps.chat.conversation import (
    conversation_history,
    follow_up_query,
    follow_up_retry,
    previous_turn,
    remember_turn,
)
from apps.chat.extensions import incident_reads
from apps.chat.extract import answer_extract
from apps.chat.feedback_ranking import feedback_rerank
from apps.chat.grounding import ungrounded_claims
from apps.chat.highlight import key_lines
from apps.chat.inflight import answer_process_key
from apps.chat.model_route import answer_evidence, answer_route, evidence_privacy
from apps.chat.models import Citation, Conversation, Message
from apps.chat.prompting import build_prompt, not_covered_text
from apps.chat.rendering import answer_text, render_answer
from apps.knowledge.retrieval import part_search_texts, passages_retrieve
from models.errors import ModelUnavailable
from models.llm import generation_queue
from models.llm.router import RoutedAnswer
from models.llm.routing import EXTRACT_ONLY, NOT_COVERED, route_without_model

log = logging.getLogger(__name__)

def conversation_for(*, user, conversation_id=None, title: str = "") -> Conversation:
    """The user's conversation ``conversation_id``, or a new one. Others' conversations: DoesNotExist."""
    if conversation_id:
        return Conversation.objects.get(pk=conversation_id, user=user)
    return Conversation.objects.create(user=user if getattr(user, "is_authenticated", False) else None, title=title[:200])


def ask_conversation(*, user, ask) -> Conversation:
    """The conversation an ask request (``apps.chat.ask_request.AskRequest``) continues, or a new
    one titled by its question; the request's local-only choice, when it makes one, kept on it."""
    conversation = ask.conversation or conversation_for(user=user, title=ask.question)
    if ask.local_only is not None:
        conversation_local_only_set(conversation=conversation, local_only=ask.local_only)
    return conversation


def conversation_local_only_set(*, conversation: Conversation, local_only: bool) -> None:
    """The technician's choice: only the local model answers in ``conversation`` (or not any more)."""
    if conversation.local_only != bool(local_only):
        conversation.local_only = bool(local_only)
        Conversation.objects.filter(pk=conversation.pk).update(local_only=conversation.local_only)


def live_context_for(*, question: str, asset=None, context_text: str | None = None):
    """The sensor context of an answer: pasted log text, the chosen asset, or one named in the question."""
    from apps.assets.payloads import PayloadError
    from apps.assets.selectors import asset_live_context, asset_recognise, context_live_context

    if context_text:
        try:
            return context_live_context(context_text, asset=asset)
        except PayloadError as exc:
            raise InvalidContext.unreadable(exc) from exc
    asset = asset or asset_recognise(question)
    return asset_live_context(asset) if asset is not None else None


def answer_stream(
    *,
    question: str,
    conversation: Conversation,
    cancel: threading.Event | None = None,
    asset=None,
    context_text: str | None = None,
    evidence_phase: contextlib.ExitStack | None = None,
) -> Iterator[dict]:
    """Answer ``question`` in ``conversation``, yielding protocol events as they happen.

    ``evidence_phase`` (``evidence_phase_start()``): the chat's evidence phase, when the caller
    began it on receiving the question; it ends here once the evidence is out.

    ``asset`` (an Asset) or ``context_text`` (a pasted log line, parsed but not stored) add
    live sensor readings and diagnostic findings; otherwise an asset named in the question is
    used when there is one.
    """
    cancel = cancel or threading.Event()
    # While this chat gathers its evidence, the local model (another chat's answer) gives way.
    evidence_phase = evidence_phase or evidence_phase_start()
    try:
        received = time.perf_counter()
        question = question_clean(question)
        live = live_context_for(question=question, asset=asset, context_text=context_text)
        previous = previous_turn(conversation)
        # One write transaction, not three: fifty chats asking at once queue for SQLite's write lock.
        with transaction.atomic():
            Message.objects.create(conversation=conversation, role=Message.Role.USER, content=question)
            answer = Message.objects.create(conversation=conversation, role=Message.Role.ASSISTANT,
                                            status=Message.Status.PENDING,
                                            process_key=answer_process_key())  # if this process dies, another fails it
            if not conversation.title:
                conversation.title = question[:200]
            conversation.save(update_fields=["title", "updated"])
        yield {"type": "accepted", "conversation": conversation.pk, "message": answer.pk}

        # 1. Evidence first: passages and live findings reach the screen before the model is asked.
        findings = live.findings if live else []
        manuals = _linked_manuals(live)
        # "And if that doesn't help?" is searched with the question it follows.
        query, prefer = follow_up_query(question, previous)
        asked = query  # what the extract answers: a follow-up with the question it follows
        if manuals:
            # Within the asset's own manuals, what the findings point at ("heater supply") finds the page.
            query = " ".join([query] + [f.manual_query for f in findings[:2] if f.manual_query])
        min_score = None
        if findings and not manuals:
            # The findings are about one device; a page that only loosely matches, possibly from
            # another device's manual, would mislead more than it helps.
            min_score = max(settings.NANOSENTRI_RETRIEVAL_MIN_SCORE, settings.NANOSENTRI_RETRIEVAL_MIN_SCORE_WITH_FINDINGS)
        found = passages_retrieve(
            query, document_ids=manuals or None, min_score=min_score, prefer=prefer, rerank=[feedback_rerank]
        )
        retry = None
        # Not answerable alone: read it with the one before? Not when the manual it names lacks its
        # words: the question before cannot put them in the manual.
        if not found.covered and query == question and not found.unmentioned:
            retry = follow_up_retry(question, previous, found.named_documents)
        if retry is not None:
            again = passages_retrieve(
                retry[0], document_ids=manuals or None, min_score=min_score, prefer=retry[1],
                rerank=[feedback_rerank],
            )
            if again.covered:
                found = replace(again, ms=found.ms + again.ms)
                asked = retry[0]
        passages, retrieval_ms = found.passages, found.ms
        citations = _citations_save(answer, passages, question)
        yield {
            "type": "citations",
            "message": answer.pk,
            "items": [c.as_dict() for c in citations],
            "retrieval_ms": round(retrieval_ms, 1),
        }
        timings = {"retrieval_ms": round(retrieval_ms, 1)}
        # The answer in the manual's own words, before any token.
        extract = answer_extract(asked, passages)
        yield {"type": "extract", "message": answer.pk, "items": extract}
        # Past incidents of the chat's asset type first: what fixed this fault before.
        similar, timings["similar_ms"] = _similar_incidents(question, asset=asset or (live and live.asset), live=live)
        _similar_links_limit(similar, user=conversation.user)
        yield {"type": "similar_incidents", "message": answer.pk, "items": similar}
        stored = {"extract": extract, "similar_incidents": similar}
        if live is not None:
            stored["live_context"] = snapshot = live.as_dict()
            yield {"type": "live_context", "message": answer.pk, **snapshot}
        Message.objects.filter(pk=answer.pk).update(**stored)  # the evidence kept with the answer, in one write

        if not passages and not findings and not similar:  # a past incident is evidence too
            refusal = not_covered_text(found.unknown_codes, found.unmentioned, found.unmentioned_in)
            yield {"type": "token", "message": answer.pk, "text": refusal}
            yield _finish(answer, refusal, Message.Status.NOT_COVERED, timings, received, 0,
                          route=route_without_model(NOT_COVERED))
            return
        if not settings.NANOSENTRI_LLM_NARRATIVE:  # extract only (docs/benchmarks.md says why)
            yield _finish(answer, "", Message.Status.COMPLETED, timings, received, 0, route=route_without_model(EXTRACT_ONLY))
            return
        evidence = _evidence_texts(question, passages, live, similar)

        # 2. Which model: the site server when the evidence allows and it answers, else the local one.
        in_prompt = similar[: settings.NANOSENTRI_SIMILAR_INCIDENTS_IN_PROMPT]
        sources = answer_evidence(conversation=conversation, answer=answer, passages=passages, live=live, incidents=in_prompt)
        route = answer_route(conversation=conversation, evidence=sources)
        answer.privacy = evidence_privacy(sources)
        Message.objects.filter(pk=answer.pk).update(privacy=answer.privacy)
        history = conversation_history(conversation, previous)
        evidence_phase.close()  # the evidence is out: the model may take the cores
        generation = _routed_generation(
            route, cancel=cancel, session=conversation.pk,
            prompt_for=lambda model: build_prompt(
                question, passages, model, max_new_tokens=settings.NANOSENTRI_LLM_MAX_TOKENS,
                live_block=live.prompt_block() if live else "", incidents=in_prompt, history=history,
            ),
        )

        # 3. Stream it (waiting for the local model's turn when it answers: one generation at a time).
        def finish(status, **kwargs):
            timings.update(_generation_timings(generation, received))
            return _finish(answer, "".join(generation.pieces), status, timings, received, len(generation.pieces),
                           generation.first_token_at, route=generation.route_taken, evidence=evidence,
                           last_token_at=generation.last_token_at, **kwargs)

        try:
            for event in generation.events():
                if event[0] == "token":
                    yield {"type": "token", "message": answer.pk, "text": event[1]}
                elif event[0] == "queued":
                    yield {"type": "queued", "message": answer.pk, "position": event[1]}
                elif event[0] == "route":
                    yield _route_start(answer, event[1], restart=event[2], prompt=generation.prompt, timings=timings)
        except ModelUnavailable as exc:
            yield {"type": "error", "message": answer.pk, "code": "model_unavailable", "detail": str(exc)}
            yield finish(Message.Status.FAILED, error=str(exc))
            return
        except Exception as exc:
            log.exception("generation failed for message %s", answer.pk)
            yield {"type": "error", "message": answer.pk, "code": "generation_failed", "detail": f"{exc.__class__.__name__}: {exc}"}
            yield finish(Message.Status.FAILED, error=str(exc))
            return
        if generation.stopped_before_model:
            yield finish(Message.Status.STOPPED)
            return
        # The model's text is whole: the client gets its last tokens now, not after the check below.
        yield {"type": "generated", "message": answer.pk, "tokens": len(generation.pieces)}
        timings.update(generation.model.prompt_stats())  # prompt tokens taken from the KV cache / evaluated
        # The next follow-up's prompt starts with this one and its answer, as generated.
        remember_turn(conversation.pk, answer.pk, generation.prompt, "".join(generation.pieces))
        yield finish(Message.Status.STOPPED if cancel.is_set() else Message.Status.COMPLETED)
    finally:
        evidence_phase.close()


def _routed_generation(route, *, cancel: threading.Event, session, prompt_for):
    from models.llm import get_language_model, get_site_model, site_health

    return RoutedAnswer(
        route,
        local=get_language_model,
        site=get_site_model(),
        prompt_for=prompt_for,
        max_tokens=settings.NANOSENTRI_LLM_MAX_TOKENS,
        temperature=settings.NANOSENTRI_LLM_TEMPERATURE,
        should_stop=cancel.is_set,
        session=session,  # the local runtime keeps this conversation's KV cache
        queue=generation_queue,
        evidence_wait_s=settings.NANOSENTRI_EVIDENCE_FIRST_WAIT_S,
        first_token_timeout=settings.NANOSENTRI_SITE_LLM_FIRST_TOKEN_TIMEOUT_S,
        stall_timeout=settings.NANOSENTRI_SITE_LLM_TIMEOUT_S,
        health=site_health(),
    )


def _route_start(answer: Message, route, *, restart: bool, prompt, timings: dict) -> dict:
    """A model is about to answer: record which and why, and tell the client (the ``route`` frame)."""
    answer.model_name = route.model
    timings["prompt_tokens"] = prompt.prompt_tokens
    Message.objects.filter(pk=answer.pk).update(
        status=Message.Status.STREAMING, model_name=route.model, route=route.via, route_reason=route.reason,
        route_detail=route.detail,
    )
    return {"type": "route", "message": answer.pk, **route.as_dict(), "restart": restart}


def _generation_timings(generation, received: float) -> dict:
    timings = {}
    if generation.queue_ms is not None:
        timings["queue_ms"] = generation.queue_ms
    if generation.first_token_at is not None:
        timings["ttft_ms"] = round((generation.first_token_at - received) * 1000, 1)
        timings["model_ttft_ms"] = round((generation.first_token_at - generation.generation_started) * 1000, 1)
    if generation.site_ttft_ms is not None:
        timings["site_ttft_ms"] = generation.site_ttft_ms
    if generation.site_failed_at is not None:
        # From giving up on the site server to the local model's first token.
        timings["fallback_ms"] = (
            round((generation.first_token_at - generation.site_failed_at) * 1000, 1)
            if generation.first_token_at is not None and generation.first_token_at > generation.site_failed_at else None
        )
        timings["discarded_tokens"] = generation.discarded_tokens
    return timings


def _evidence_texts(question: str, passages, live, similar: list[dict]) -> list[str]:
    """Everything the model was given as fact: what its text is checked against."""
    texts = [question] + [p.text for p in passages]
    if live is not None:
        texts.append(live.prompt_block())
    texts += [" ".join(str(item.get(k, "")) for k in ("title", "cause", "remedy")) for item in similar]
    return texts


def _similar_incidents(question: str, *, asset, live) -> tuple[list[dict], float]:
    """Similar past incidents (same device type first) and the milliseconds it took; [] on failure."""
    incidents = incident_reads()
    started = time.perf_counter()
    try:
        items = incidents.similar(question, asset=asset, device_type=live.device_type if live else None) if incidents else []
    except Exception:  # an unreadable incident index must not cost the technician the answer
        log.exception("similar incidents failed for %r", question[:80])
        items = []
    return items, round((time.perf_counter() - started) * 1000, 1)


def _similar_links_limit(items: list[dict], *, user) -> None:
    """Keep the link only on incidents the asker may open; the title, cause and remedy stay.

    A technician sees their own and their assets' incidents; a sibling asset's fix is still
    worth knowing, but its page is not theirs to open.
    """
    incidents = incident_reads()
    ids = [item["id"] for item in items]
    visible = incidents.visible_ids(user, ids) if user and incidents and ids else set()
    for item in items:
        if item["id"] not in visible:
            item["url"] = None


def _linked_manuals(live) -> set[int]:
    if live is None or not live.asset:
        return set()
    from apps.assets.models import Asset

    return set(Asset.objects.filter(asset_id=live.asset).values_list("manuals", flat=True)) - {None}


def _citations_save(answer: Message, passages, question: str) -> list[Citation]:
    from apps.knowledge.models import Document

    existing = set(Document.objects.filter(pk__in=[p.document_id for p in passages]).values_list("pk", flat=True))
    citations = [
        Citation(
            message=answer,
            rank=i + 1,
            document_id=p.document_id if p.document_id in existing else None,
            file_name=p.file_name,
            page=p.page,
            chunk_index=p.chunk_index,
            score=p.score,
            text=p.text,
            highlights=key_lines(question, p.text),
            boost=getattr(p, "boost", 0.0),
            source=getattr(p, "source", "text"),
        )
        for i, p in enumerate(passages)
    ]
    return Citation.objects.bulk_create(citations)


def _finish(
    answer, text, status, timings, received, token_count, first_token_at=None, error="", evidence=None, route=None,
    last_token_at=None,
) -> dict:
    now = time.perf_counter()
    timings.setdefault("ttft_ms", None)
    timings["tokens"] = token_count
    last = last_token_at if last_token_at is not None else now  # the rate of the tokens, not of what follows them
    if first_token_at is not None and token_count > 1 and last > first_token_at:
        timings["tokens_per_s"] = round((token_count - 1) / (last - first_token_at), 2)
    else:
        timings["tokens_per_s"] = None
    timings["total_ms"] = round((now - received) * 1000, 1)
    text = text.strip()
    citations = [{"n": c.rank, "document": c.file_name, "page": c.page} for c in answer.citations.all()]
    claims = ungrounded_claims(text, evidence=evidence or [], citations=citations) if text and evidence else []
    ungrounded = [c.as_dict() for c in claims]
    fields = {}
    if route is not None:  # which model answered, and why (models/llm/routing.py)
        fields = {"route": route.via, "route_reason": route.reason, "route_detail": route.detail}
    Message.objects.filter(pk=answer.pk).update(
        content=text, status=status, timings=timings, error=error, completed=timezone.now(), ungrounded=ungrounded,
        **fields,
    )
    return {
        "type": "done",
        "message": answer.pk,
        "status": status,
        "answer": text,
        "html": render_answer(text, len(citations), ungrounded=claims),
        "ungrounded": ungrounded,
        "timings": timings,
        "route": route.as_dict() if route is not None else None,
    }


def evidence_phase_start() -> contextlib.ExitStack:
    """A chat's evidence phase, begun: the local model gives way to it until it is closed."""
    phase = contextlib.ExitStack()
    phase.enter_context(generation_queue.gathering_evidence())
    return phase


def run_ask_in_thread(
    *, user, request: dict, cancel: threading.Event, emit, evidence_phase: contextlib.ExitStack | None = None
) -> threading.Thread:
    """Check an ask request (``ask_request_clean``'s fields), open its conversation and answer it, all
    in a thread of its own: fifty chats asking at once do not queue for the event loop's single
    database thread before their evidence. A refused request is an ``error`` event."""

    def events():
        _question_embedded(request.get("question"))
        if evidence_phase is not None:
            _EVIDENCE_LANES.acquire()
            evidence_phase.callback(_EVIDENCE_LANES.release)
        ask = ask_request_clean(user=user, **request)
        conversation = ask_conversation(user=user, ask=ask)
        yield from answer_stream(
            question=ask.question, conversation=conversation, cancel=cancel, asset=ask.asset,
            context_text=ask.context_text, evidence_phase=evidence_phase,
        )

    return _events_in_thread(events, emit=emit, evidence_phase=evidence_phase)


# Chats gathering their evidence at once in this process. Fifty answer threads running Python
# together starve the event loop (it waits for the GIL after every socket write) and each other;
# two at a time keep both cores busy (one in SQLite or torch, one in Python) and hand the loop the
# GIL between them. The others wait their turn without taking it (issue 10, step 3).
_EVIDENCE_LANES = threading.BoundedSemaphore(max(1, settings.NANOSENTRI_EVIDENCE_LANES))


def _question_embedded(question) -> None:
    """Embed the question the moment it arrives, before the chat waits for an evidence lane: the
    questions of a wave of chats are embedded together in one pass (``models.embedding``), and each
    answer thread then finds its vectors in its own memo (the question's, and the incident search's)."""
    try:
        text = question_clean(question)
    except AskRefused:
        return  # refused below, with the reason
    from apps.knowledge.vector_index import get_vector_index

    reads = incident_reads()
    try:
        embedder = get_vector_index().embedder
        # The question, its further parts (searched on their own) and the text the past-incident
        # search embeds (the question without device names), in one pass.
        incident_text = reads.search_text(text) if reads and reads.search_text else ""
        other = [incident_text] if incident_text and incident_text != text else []
        embedder.embed_queries([text, *part_search_texts(text), *other])
    except Exception:  # the retrieval and the incident search report it, in their place
        log.debug("embedding ahead failed", exc_info=True)


def _events_in_thread(events, *, emit, evidence_phase: contextlib.ExitStack | None) -> threading.Thread:
    """A thread handing every event of ``events()`` to ``emit``, then None (the end of the stream)."""

    def evidence_over():  # the model may go on and the lane is free before the client hears why
        if evidence_phase is not None:
            evidence_phase.close()  # closing twice does nothing

    def work():
        try:
            for event in events():
                emit(event)
        except AskRefused as exc:  # the request, or answer_stream's second look at the question and context
            evidence_over()
            emit({"type": "error", "code": exc.code, "detail": str(exc)})
        except Exception as exc:
            log.exception("answer pipeline failed")
            evidence_over()
            emit({"type": "error", "code": "internal_error", "detail": f"{exc.__class__.__name__}: {exc}"})
        finally:
            evidence_over()
            emit(None)  # end of stream
            close_old_connections()

    thread = threading.Thread(target=work, name="answer", daemon=True)
    thread.start()
    return thread


def answer_result(
    *, question: str, conversation: Conversation, asset=None, context_text: str | None = None, on_event=None
) -> dict:
    """Run the pipeline to the end and return the answer as one JSON-ready dict.

    This is the shape of ``manage.py ask --json`` and of the API's ask endpoint (see
    docs/protocol.md). ``on_event`` sees every event as it happens (the ask command prints them).
    Raises InvalidQuestion / InvalidContext (apps.chat.ask_request) like ``answer_stream``.
    """
    citations, pieces, done, errors, live, similar, extract = [], [], None, [], {}, [], []
    for event in answer_stream(question=question, conversation=conversation, asset=asset, context_text=context_text):
        if on_event is not None:
            on_event(event)
        kind = event["type"]
        if kind == "citations":
            citations = event["items"]
        elif kind == "live_context":
            live = event
        elif kind == "similar_incidents":
            similar = event["items"]
        elif kind == "extract":
            extract = event["items"]
        elif kind == "token":
            pieces.append(event["text"])
        elif kind == "error":
            errors.append(event)
        elif kind == "done":
            done = event
    timings = done["timings"] if done else {}
    narrative = done["answer"] if done else "".join(pieces).strip()
    result = {
        "answer": answer_text(extract, narrative),
        "extract": extract,
        "narrative": narrative,
        "ungrounded": done.get("ungrounded", []) if done else [],
        "citations": [
            {"document": c["document"], "page": c["page"], "score": c["score"], "text": c["text"],
             "source": c.get("source", "text")}
            for c in citations
        ],
        "similar_incidents": [
            {"id": s["id"], "title": s["title"], "cause": s["cause"], "remedy": s["remedy"], "score": s["score"]}
            for s in similar
        ],
        "timings": {
            "retrieval_ms": timings.get("retrieval_ms"),
            "ttft_ms": timings.get("ttft_ms"),
            "tokens_per_s": timings.get("tokens_per_s"),
        },
        "status": done["status"] if done else Message.Status.FAILED.value,
        "findings": [
            {"rule": f["rule"], "severity": f["severity"], "message": f["message"], "sensor": f["sensor"]}
            for f in live.get("findings", [])
        ],
        "readings": live.get("readings", {}),
        "conversation": conversation.pk,
        "message": done["message"] if done else None,
        # Which model answered and why: {via, model, reason, detail} (docs/answers.md §6).
        "route": done.get("route") if done else None,
    }
    if errors:
        result["error"] = errors[-1]["detail"]
        result["error_code"] = errors[-1].get("code")
    return result
