from django.conf import settings
from django.http import Http404
from django.shortcuts import render

from apps.accounts.decorators import perm_required
from apps.chat import selectors


@perm_required("chat.add_conversation")
def chat(request, pk=None):
    current = None
    if pk is not None:
        current = selectors.conversation_with_messages(user=request.user, pk=pk)
        if current is None:
            raise Http404("no such conversation")
    context = {
        "conversations": selectors.conversations_recent(user=request.user),
        "current": current,
        "assets": selectors.chat_assets(),
        "selected_asset": request.GET.get("asset") or selectors.conversation_last_asset(current),
        # The incidents opened from this chat come from incidents' template tag (chat.html).
        # "Local only" is a choice only when there is a site model server (docs/answers.md §5).
        "site_model": bool(settings.NANOSENTRI_SITE_LLM_URL),
    }
    return render(request, "chat/chat.html", context)
