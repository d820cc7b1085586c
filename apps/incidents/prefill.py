"""A new incident, filled in from a chat: one click from the answer to a report.

``incident_sources`` finds what the click pointed at (and checks the user may use it);
``incident_prefill`` turns it into the form's initial values. Everything here only reads.
"""
from __future__ import annotations

from dataclasses import dataclass

from django.http import Http404

from apps.chat.rendering import answer_text
from apps.chat.models import AnswerFeedback, Conversation, Message

TITLE_CHARS = 120


@dataclass
class ChatSources:
    conversation: Conversation | None = None
    message: Message | None = None
    feedback: AnswerFeedback | None = None


def _int(value) -> int | None:
    if value in (None, ""):
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        raise Http404("not an id") from None


def incident_sources(*, user, conversation_id=None, message_id=None, feedback_id=None) -> ChatSources:
    """The conversation / answer / feedback a new incident comes from, as ids from the query string.

    A technician may only use their own conversations. A reviewer of feedback (supervisors) may
    turn anyone's rated answer into an incident, through the feedback. Anything else is a 404,
    whether it does not exist or is someone else's.
    """
    conversation_id, message_id, feedback_id = _int(conversation_id), _int(message_id), _int(feedback_id)
    sources = ChatSources()
    if feedback_id is not None:
        if not user.has_perm("chat.review_feedback"):
            raise Http404("no such feedback")
        feedback = (
            AnswerFeedback.objects.select_related("message__conversation", "user", "incident")
            .filter(pk=feedback_id)
            .first()
        )
        if feedback is None or (message_id is not None and feedback.message_id != message_id):
            raise Http404("no such feedback")
        sources.feedback = feedback
        sources.message = feedback.message
        sources.conversation = feedback.message.conversation
    elif message_id is not None:
        message = (
            Message.objects.select_related("conversation")
            .filter(pk=message_id, role=Message.Role.ASSISTANT, conversation__user=user)
            .first()
        )
        if message is None:
            raise Http404("no such answer")
        sources.message = message
        sources.conversation = message.conversation
    if conversation_id is not None:
        if sources.conversation is not None:
            if sources.conversation.pk != conversation_id:
                raise Http404("the answer is not part of that conversation")
        else:
            conversation = Conversation.objects.filter(pk=conversation_id, user=user).first()
            if conversation is None:
                raise Http404("no such conversation")
            sources.conversation = conversation
    return sources


def _question_before(message: Message) -> Message | None:
    return (
        Message.objects.filter(conversation_id=message.conversation_id, role=Message.Role.USER, pk__lt=message.pk)
        .order_by("-pk")
        .first()
    )


def _title(question: str) -> str:
    line = " ".join(question.split())
    if len(line) <= TITLE_CHARS:
        return line
    cut = line[: TITLE_CHARS - 1].rsplit(" ", 1)[0]
    return cut + "…"


def _finding_line(f: dict) -> str:
    return f"- [{f.get('severity', '?')}] {f.get('message', '')}".rstrip()


def _draft_summary(*, question: str, findings: list[dict], citations, answer: str, feedback) -> str:
    # No "draft" line in the text itself: the form and the incident page mark it as a draft
    # (Incident.summary_is_draft) until a person edits it, and a saved line would outlive that.
    parts = [f"Question: {question}" if question else "Question: (none)"]
    if findings:
        parts += ["", "Findings from the live readings:", *[_finding_line(f) for f in findings]]
    if citations:
        parts += ["", "Manual pages cited:", *[f"- [{c.rank}] {c.file_name}, page {c.page}" for c in citations]]
    if answer.strip():
        parts += ["", "The answer (the manual's lines, then the assistant's note):", answer.strip()]
    if feedback is not None:
        who = feedback.user.get_username() if feedback.user else "a user"
        verdict = feedback.get_rating_display().lower()
        parts += ["", f"Rated {verdict} by {who}" + (f": {feedback.comment.strip()}" if feedback.comment.strip() else ".")]
    return "\n".join(parts)


def incident_prefill(*, user, conversation=None, message=None, feedback=None) -> dict:
    """Initial values for a new incident from a chat answer (or a conversation's last answer).

    Returns the form's initial values (title, symptom, asset, failure_class, priority, summary)
    plus what the page shows beside the form: ``findings``, ``question``, ``message``,
    ``conversation``, ``citations`` and ``draft_summary`` (to tell later whether a person edited it).
    Sources must come from ``incident_sources``; a conversation of someone else without a
    feedback to review is refused (PermissionError) as a second line of defence.
    """
    from apps.assets.models import Asset

    if message is not None and conversation is None:
        conversation = message.conversation
    if conversation is None:
        return {}
    if conversation.user_id != user.pk and feedback is None:
        raise PermissionError("only your own conversations can become incidents")
    if message is None:
        message = (
            conversation.messages.filter(role=Message.Role.ASSISTANT).order_by("-created", "-pk").first()
        )
    question_msg = _question_before(message) if message is not None else None
    if question_msg is None:
        question_msg = conversation.messages.filter(role=Message.Role.USER).order_by("created", "pk").first()
    question = (question_msg.content if question_msg else conversation.title or "").strip()

    # The answer's own snapshot, or the last one the conversation had before it.
    live = message.live_context if message is not None else None
    if not live:
        earlier = conversation.messages.filter(live_context__isnull=False)
        if message is not None:
            earlier = earlier.filter(pk__lte=message.pk)
        last = earlier.order_by("-pk").first()
        live = last.live_context if last else None
    live = live or {}
    findings = [f for f in live.get("findings") or [] if isinstance(f, dict)]

    asset = Asset.objects.select_related("device_type").filter(asset_id=live.get("asset") or "").first()
    if asset is not None and asset.device_type is not None:
        failure_class = asset.device_type.key
    else:
        failure_class = live.get("device_type") or ""

    # A critical or high finding makes the incident as urgent; anything milder stays "normal".
    severities = {f.get("severity") for f in findings}
    priority = "critical" if "critical" in severities else "high" if "high" in severities else "normal"

    symptom = question
    if findings:
        symptom += "\n\nFindings:\n" + "\n".join(_finding_line(f) for f in findings)

    citations = list(message.citations.all()) if message is not None else []
    answer = answer_text(message.extract or [], message.content) if message is not None else ""
    draft = _draft_summary(question=question, findings=findings, citations=citations, answer=answer, feedback=feedback)
    return {
        "initial": {
            "title": _title(question) or str(conversation),
            "symptom": symptom,
            "asset": asset.pk if asset else None,
            "failure_class": failure_class[:100],
            "priority": priority,
            "summary": draft,
        },
        "draft_summary": draft,
        "question": question,
        "findings": findings,
        "live_context": live or None,
        "citations": citations,
        "conversation": conversation,
        "message": message,
        "feedback": feedback,
    }


def same_text(a: str, b: str) -> bool:
    """Equal as a person would see them in a textarea (line endings and outer blanks aside)."""

    def norm(s: str) -> str:
        return "\n".join(line.rstrip() for line in (s or "").replace("\r\n", "\n").strip().split("\n"))

    return norm(a) == norm(b)
