from django.db.models import Prefetch
from django.http import Http404
from django.shortcuts import render

from apps.accounts.decorators import perm_required
from apps.chat.models import AnswerFeedback, Conversation
from apps.incidents.selectors import conversation_incidents


@perm_required("chat.add_conversation")
def chat(request, pk=None):
    conversations = Conversation.objects.filter(user=request.user)[:50]
    current = None
    if pk is not None:
        current = (
            Conversation.objects.filter(pk=pk, user=request.user)
            .prefetch_related("messages__citations", _own_feedback(request.user))
            .first()
        )
        if current is None:
            raise Http404("no such conversation")
    from apps.assets.models import Asset

    context = {
        "conversations": conversations,
        "current": current,
        "assets": Asset.objects.select_related("device_type").all()[:500],
        "selected_asset": request.GET.get("asset") or _last_asset(current),
        "incidents": conversation_incidents(request.user, current),
    }
    return render(request, "chat/chat.html", context)


def _own_feedback(user) -> Prefetch:
    """Each message's ``my_feedback``: the user's own vote on it ([] or [AnswerFeedback])."""
    return Prefetch("messages__feedback", queryset=AnswerFeedback.objects.filter(user=user), to_attr="my_feedback")


def _last_asset(conversation) -> str:
    """The asset the conversation was last about, so a reloaded chat keeps asking about it."""
    if conversation is None:
        return ""
    for message in reversed(conversation.messages.all()):  # prefetched, oldest first
        if message.live_context and message.live_context.get("asset"):
            return message.live_context["asset"]
    return ""
