from django.utils.functional import SimpleLazyObject


def feedback(request):
    user = getattr(request, "user", None)
    # Shown beside "Review" in the navigation; counted only when a page renders it.
    return {"feedback_to_review": SimpleLazyObject(lambda: _feedback_to_review(user))}


def _feedback_to_review(user) -> int:
    if user is None or not user.has_perm("chat.review_feedback"):
        return 0
    from apps.chat.selectors import feedback_unreviewed_count

    return feedback_unreviewed_count()
