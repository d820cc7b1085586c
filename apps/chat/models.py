from django.conf import settings
from django.db import models


class Conversation(models.Model):
    user = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="conversations")
    title = models.CharField(max_length=200, blank=True)
    created = models.DateTimeField(auto_now_add=True)
    updated = models.DateTimeField(auto_now=True)
    # The technician chose that only the local model answers in this conversation.
    local_only = models.BooleanField(default=False)

    class Meta:
        ordering = ["-updated"]

    def __str__(self):
        return self.title or f"Conversation {self.pk}"


class Message(models.Model):
    class Role(models.TextChoices):
        USER = "user", "Technician"
        ASSISTANT = "assistant", "Assistant"

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        STREAMING = "streaming", "Streaming"
        COMPLETED = "completed", "Completed"
        NOT_COVERED = "not_covered", "Not covered by the manuals"
        STOPPED = "stopped", "Stopped"
        FAILED = "failed", "Failed"

    conversation = models.ForeignKey(Conversation, on_delete=models.CASCADE, related_name="messages")
    role = models.CharField(max_length=10, choices=Role.choices)
    content = models.TextField(blank=True)
    status = models.CharField(max_length=12, choices=Status.choices, default=Status.COMPLETED)
    error = models.TextField(blank=True)
    model_name = models.CharField(max_length=200, blank=True)
    timings = models.JSONField(default=dict, blank=True)
    # The readings and findings shown beside the answer, as they were at the time.
    live_context = models.JSONField(null=True, blank=True)
    # The similar past incidents shown beside the answer: [{"id", "title", "cause", "remedy", "score", ...}].
    similar_incidents = models.JSONField(default=list, blank=True)
    # The answer in the manual's words, shown before the model's text: [{"text", "n", "document", "page"}].
    extract = models.JSONField(default=list, blank=True)
    # What the model wrote that the evidence does not hold: [{"kind", "text", "start", "end"}].
    ungrounded = models.JSONField(default=list, blank=True)
    # Which model answered and why (models/llm/routing.py): "local", "site" or "none" (no model
    # asked), a reason code, and the sentence the technician was shown.
    route = models.CharField(max_length=8, blank=True)
    route_reason = models.CharField(max_length=32, blank=True)
    route_detail = models.TextField(blank=True)
    # The most private level among the evidence the answer was given (public, internal,
    # restricted): a follow-up carries this turn into its prompt, so it inherits the level.
    privacy = models.CharField(max_length=12, blank=True)
    # The AnswerProcess writing it while pending or streaming: if that process dies mid-answer,
    # another one marks the answer failed (apps/chat/inflight.py).
    process_key = models.CharField(max_length=32, blank=True)
    created = models.DateTimeField(auto_now_add=True)
    completed = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["created", "pk"]
        indexes = [
            # The sweep of orphaned answers reads the few in flight, every few seconds.
            models.Index(fields=["status"], condition=models.Q(status__in=["pending", "streaming"]),
                         name="chat_message_in_flight"),
        ]

    @property
    def route_info(self) -> dict | None:
        """``{via, model, reason, detail, label}`` of an answer, or None when none was recorded."""
        if not self.route_reason:
            return None
        from models.llm.routing import BADGES

        return {
            "via": self.route, "model": self.model_name, "reason": self.route_reason, "detail": self.route_detail,
            "label": BADGES.get(self.route_reason, ""),
        }

    @property
    def answer_html(self) -> str:
        """The answer as sanitized HTML (markdown rendered on the server); its [n] link to #cite-<pk>-n."""
        from apps.chat.rendering import render_answer

        return render_answer(self.content, len(self.citations.all()), scope=self.pk, ungrounded=self.ungrounded)


class AnswerProcess(models.Model):
    """A process that writes answers (a web process, ``manage.py ask``), as long as it beats."""

    key = models.CharField(max_length=32, unique=True)  # one per process run
    host = models.CharField(max_length=255)  # host name and pid namespace (apps/chat/inflight.py)
    pid = models.PositiveIntegerField()
    started = models.DateTimeField(auto_now_add=True)
    seen = models.DateTimeField(db_index=True)  # its last heartbeat

    def __str__(self):
        return f"{self.host} pid {self.pid}"


class Citation(models.Model):
    message = models.ForeignKey(Message, on_delete=models.CASCADE, related_name="citations")
    rank = models.PositiveSmallIntegerField()  # the [n] the answer uses
    document = models.ForeignKey("knowledge.Document", null=True, blank=True, on_delete=models.SET_NULL)
    file_name = models.CharField(max_length=255)
    page = models.PositiveIntegerField()
    chunk_index = models.PositiveIntegerField(default=0)
    score = models.FloatField()
    text = models.TextField()
    highlights = models.JSONField(default=list, blank=True)  # the lines that match the question
    # How much thumbs-up feedback on similar questions raised this passage (docs/feedback.md).
    boost = models.FloatField(default=0.0)
    # "ocr": the passage was recognised from a scanned page, so its words may be misread.
    source = models.CharField(max_length=12, default="text", blank=True)

    class Meta:
        ordering = ["rank"]

    def as_dict(self) -> dict:
        return {
            "n": self.rank,
            "document_id": self.document_id,
            "document": self.file_name,
            "page": self.page,
            "score": round(self.score, 4),
            "text": self.text,
            "highlights": self.highlights,
            "url": self.url,
            "boost": round(self.boost, 4),
            "source": self.source,
        }

    @property
    def is_ocr(self) -> bool:
        return self.source == "ocr"

    @property
    def url(self) -> str | None:
        if not self.document_id:
            return None
        from django.urls import reverse

        url = reverse("knowledge:file", args=[self.document_id])
        return f"{url}#page={self.page}" if self.file_name.lower().endswith(".pdf") else url


class AnswerFeedback(models.Model):
    """A thumbs up or down on an answer, by one user (one vote each; changing it replaces it)."""

    class Rating(models.IntegerChoices):
        UP = 1, "Helpful"
        DOWN = -1, "Not helpful"

    message = models.ForeignKey(Message, on_delete=models.CASCADE, related_name="feedback")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="answer_feedback")
    rating = models.SmallIntegerField(choices=Rating.choices)
    comment = models.TextField(blank=True)
    created = models.DateTimeField(auto_now_add=True)
    updated = models.DateTimeField(auto_now=True)
    # The supervisor's review of a thumbs-down.
    reviewed_at = models.DateTimeField(null=True, blank=True)
    reviewed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    review_note = models.TextField(blank=True)
    incident = models.ForeignKey(
        "incidents.Incident", null=True, blank=True, on_delete=models.SET_NULL, related_name="feedback"
    )
    # The question's embedding, kept so ranking by feedback never re-embeds past questions
    # (apps/chat/feedback_ranking.py); ``embedding_model`` says which embedder made it.
    question_embedding = models.JSONField(null=True, blank=True)
    embedding_model = models.CharField(max_length=200, blank=True)

    class Meta:
        ordering = ["-created", "-pk"]
        constraints = [models.UniqueConstraint(fields=["message", "user"], name="one_feedback_per_user_and_answer")]
        permissions = [("review_feedback", "Can review thumbs-down answers")]

    def __str__(self):
        return f"{self.get_rating_display()} on message {self.message_id}"
