"""Feedback on answers: votes, the JSON endpoint, the review queue and ranking by thumbs-up."""
from __future__ import annotations

import json
import re

import pytest
from django.test import Client
from django.urls import reverse

from apps.chat import feedback_services as services
from apps.chat import selectors
from apps.chat.models import AnswerFeedback, Citation, Conversation, Message
from apps.knowledge.models import Document
from apps.chat.feedback_ranking import FUSED_PER_COSINE, feedback_rerank
from apps.knowledge.retrieval import passages_retrieve
from apps.knowledge.vector_index import get_vector_index
from ingest.chunk import Chunk

pytestmark = pytest.mark.django_db

# With the mock embedder the heater-fuse and the connector pages come first and second for
# PARAPHRASE, close together (which is first is the fused ranking's call, see ``_pair``);
# QUESTION and PARAPHRASE are 0.95 alike, MOUNT 0.30.
FUSE = "Heater has no power: the heater fuse F2 protects the heater supply."
CONNECTOR = "No heater power: check the heater connector and its wiring."
MOUNT_TEXT = "Mounting the sensor on the mast with two clamps."
QUESTION = "the heater has no power what should I check"
PARAPHRASE = "the heater has no power what should I check first"
MOUNT = "how do I mount the sensor on the mast"


def _answer(user, question=QUESTION, *, content="Check the connector [1].", status=Message.Status.COMPLETED, cites=()):
    """A question and its stored answer in ``user``'s conversation, citing ``cites`` (Passages) as [1], [2]…"""
    conversation = Conversation.objects.create(user=user, title=question)
    Message.objects.create(conversation=conversation, role=Message.Role.USER, content=question)
    answer = Message.objects.create(conversation=conversation, role=Message.Role.ASSISTANT, content=content, status=status)
    for rank, p in enumerate(cites, start=1):
        Citation.objects.create(message=answer, rank=rank, document_id=p.document_id, file_name=p.file_name,
                                page=p.page, chunk_index=p.chunk_index, score=p.score, text=p.text)
    return answer


@pytest.fixture
def answer(technician):
    return _answer(technician)


@pytest.fixture
def manual(db):
    """The mock-embedded manual: FUSE (chunk 0), CONNECTOR (chunk 1), MOUNT_TEXT (chunk 2)."""
    from models.embedding import get_embedder

    doc = Document.objects.create(original_name="wxt.pdf", stored_path="wxt.pdf", extension=".pdf",
                                  content_hash="f" * 64, status=Document.Status.INDEXED)
    chunks = [Chunk(page=4, index=0, text=FUSE), Chunk(page=5, index=1, text=CONNECTOR), Chunk(page=1, index=2, text=MOUNT_TEXT)]
    get_vector_index().add(document_id=doc.pk, file_name=doc.original_name, chunks=chunks,
                           embeddings=get_embedder().embed([c.text for c in chunks]))
    return doc


def passages_search(question, **kwargs):
    """Retrieval as the answer pipeline runs it: with the feedback step."""
    found = passages_retrieve(question, rerank=[feedback_rerank], **kwargs)
    return found.passages, found.ms


def _texts(passages):
    return [p.text for p in passages]


# ------------------------------------------------------------------ services


def test_it_sets_replaces_and_takes_back_a_vote(technician, answer):
    up = services.feedback_set(user=technician, message=answer, rating="up")
    assert (up.rating, up.user, up.message) == (1, technician, answer)
    down = services.feedback_set(user=technician, message=answer, rating="down", comment="  wrong fuse  ")
    assert down.pk == up.pk and down.rating == -1 and down.comment == "wrong fuse"
    assert AnswerFeedback.objects.count() == 1
    assert services.feedback_set(user=technician, message=answer, rating="none") is None
    assert not AnswerFeedback.objects.exists()
    assert services.feedback_set(user=technician, message=answer, rating="none") is None  # nothing to take back


def test_the_same_thumb_again_keeps_the_vote_and_updates_the_comment(technician, answer):
    first = services.feedback_set(user=technician, message=answer, rating="up")
    again = services.feedback_set(user=technician, message=answer, rating=1, comment="saved me an hour")
    assert again.pk == first.pk and again.rating == 1 and again.comment == "saved me an hour"


def test_the_vote_keeps_the_questions_embedding(technician, answer):
    from models.embedding import get_embedder

    vote = services.feedback_set(user=technician, message=answer, rating="up")
    assert vote.embedding_model == get_embedder().name
    assert vote.question_embedding == pytest.approx(get_embedder().embed([QUESTION])[0], abs=1e-5)


def test_a_technician_cannot_rate_someone_elses_answer_but_a_supervisor_can(technician, supervisor, django_user_model):
    from django.contrib.auth.models import Group

    other = django_user_model.objects.create_user("dave", password="pw")
    other.groups.add(Group.objects.get(name="technician"))
    theirs = _answer(other)
    with pytest.raises(services.FeedbackNotAllowed):
        services.feedback_set(user=technician, message=theirs, rating="up")
    assert services.feedback_set(user=supervisor, message=theirs, rating="down").rating == -1


def test_an_outsider_cannot_rate_even_their_own_conversation(outsider):
    with pytest.raises(services.FeedbackNotAllowed):
        services.feedback_set(user=outsider, message=_answer(outsider), rating="up")


def test_only_finished_answers_can_be_rated(technician):
    pending = _answer(technician, status=Message.Status.PENDING)
    with pytest.raises(services.InvalidFeedback):
        services.feedback_set(user=technician, message=pending, rating="up")
    question = Message.objects.get(conversation=pending.conversation, role=Message.Role.USER)
    with pytest.raises(services.FeedbackNotAllowed):
        services.feedback_set(user=technician, message=question, rating="up")
    for status in (Message.Status.NOT_COVERED, Message.Status.STOPPED):
        assert services.feedback_set(user=technician, message=_answer(technician, status=status), rating="down")


@pytest.mark.parametrize("rating", ["sideways", 2, True, ["up"]])
def test_a_bad_rating_is_refused(technician, answer, rating):
    with pytest.raises(services.InvalidFeedback) as exc:
        services.feedback_set(user=technician, message=answer, rating=rating)
    assert exc.value.field == "rating"


def test_a_too_long_comment_is_refused_and_nothing_changes(technician, answer):
    services.feedback_set(user=technician, message=answer, rating="up", comment="fine")
    with pytest.raises(services.InvalidFeedback) as exc:
        services.feedback_set(user=technician, message=answer, rating="down", comment="x" * 2001)
    assert exc.value.field == "comment" and "2000" in str(exc.value)
    vote = AnswerFeedback.objects.get()
    assert (vote.rating, vote.comment) == (1, "fine")
    assert services.feedback_set(user=technician, message=answer, rating="down", comment="x" * 2000).comment == "x" * 2000


def test_a_changed_thumbs_down_goes_back_to_the_queue_with_its_note(technician, supervisor, answer):
    vote = services.feedback_set(user=technician, message=answer, rating="down", comment="wrong page")
    services.feedback_review(feedback=vote, reviewer=supervisor, note="manual is outdated")
    services.feedback_set(user=technician, message=answer, rating="down", comment="wrong page")  # unchanged
    assert AnswerFeedback.objects.get().reviewed_at is not None
    services.feedback_set(user=technician, message=answer, rating="down", comment="wrong page, and wrong fuse")
    vote = AnswerFeedback.objects.get()
    assert vote.reviewed_at is None and vote.reviewed_by is None and vote.review_note == "manual is outdated"


def test_review_needs_the_permission_and_a_short_note(technician, supervisor, answer):
    vote = services.feedback_set(user=technician, message=answer, rating="down")
    with pytest.raises(services.FeedbackNotAllowed):
        services.feedback_review(feedback=vote, reviewer=technician, note="")
    with pytest.raises(services.InvalidFeedback):
        services.feedback_review(feedback=vote, reviewer=supervisor, note="n" * 2001)
    vote.refresh_from_db()
    assert vote.reviewed_at is None
    services.feedback_review(feedback=vote, reviewer=supervisor, note="ok")
    vote.refresh_from_db()
    assert vote.reviewed_by == supervisor and vote.review_note == "ok" and vote.reviewed_at


def test_the_queue_has_thumbs_down_only_unreviewed_first_with_the_question(technician, supervisor):
    old = services.feedback_set(user=technician, message=_answer(technician, "first question"), rating="down")
    services.feedback_set(user=technician, message=_answer(technician, "liked question"), rating="up")
    new = services.feedback_set(user=technician, message=_answer(technician, "second question"), rating="down")
    services.feedback_review(feedback=new, reviewer=supervisor, note="")
    queue = list(selectors.feedback_review_queue())
    assert [f.pk for f in queue] == [old.pk, new.pk]
    assert [f.question for f in queue] == ["first question", "second question"]
    assert [f.pk for f in selectors.feedback_review_queue(reviewed=False)] == [old.pk]
    assert [f.pk for f in selectors.feedback_review_queue(reviewed=True)] == [new.pk]
    assert selectors.feedback_unreviewed_count() == 1


# ------------------------------------------------------------------ the JSON endpoint


def _post(client, message, payload, **extra):
    return client.post(reverse("chat:feedback", args=[message.pk]), json.dumps(payload),
                       content_type="application/json", **extra)


def test_it_votes_and_returns_the_new_state(client, technician, answer):
    client.force_login(technician)
    response = _post(client, answer, {"rating": "up"})
    assert response.status_code == 200
    assert response.json() == {"message": answer.pk, "rating": "up", "comment": "", "ups": 1, "downs": 0}
    response = _post(client, answer, {"rating": "down", "comment": "wrong page"})
    assert response.json() == {"message": answer.pk, "rating": "down", "comment": "wrong page", "ups": 0, "downs": 1}
    response = _post(client, answer, {"rating": "none"})
    assert response.json()["rating"] is None and not AnswerFeedback.objects.exists()


def test_a_form_post_works_too(client, technician, answer):
    client.force_login(technician)
    response = client.post(reverse("chat:feedback", args=[answer.pk]), {"rating": "down", "comment": "hm"})
    assert response.status_code == 200 and response.json()["rating"] == "down"


def test_it_needs_the_csrf_token(technician, answer):
    client = Client(enforce_csrf_checks=True)
    client.force_login(technician)
    assert _post(client, answer, {"rating": "up"}).status_code == 403
    assert not AnswerFeedback.objects.exists()
    page = client.get(reverse("chat:conversation", args=[answer.conversation_id]))
    token = page.cookies["csrftoken"].value
    assert _post(client, answer, {"rating": "up"}, HTTP_X_CSRFTOKEN=token).status_code == 200
    assert AnswerFeedback.objects.get().rating == 1


def test_invalid_input_is_a_clear_400_and_changes_nothing(client, technician, answer):
    client.force_login(technician)
    _post(client, answer, {"rating": "up", "comment": "good"})
    response = _post(client, answer, {"rating": "down", "comment": "x" * 2001})
    assert response.status_code == 400
    assert response.json()["field"] == "comment" and "2000" in response.json()["error"]
    assert _post(client, answer, {"rating": "meh"}).json()["field"] == "rating"
    bad = client.post(reverse("chat:feedback", args=[answer.pk]), "{not json", content_type="application/json")
    assert bad.status_code == 400
    vote = AnswerFeedback.objects.get()
    assert (vote.rating, vote.comment) == (1, "good")


def test_anonymous_gets_401_outsider_403_others_404(client, outsider, supervisor, technician, answer):
    assert _post(client, answer, {"rating": "up"}).status_code == 401
    client.force_login(outsider)
    assert _post(client, answer, {"rating": "up"}).status_code == 403
    theirs = _answer(supervisor)
    client.force_login(technician)
    assert _post(client, theirs, {"rating": "up"}).status_code == 404
    assert client.post(reverse("chat:feedback", args=[999999]), {"rating": "up"}).status_code == 404
    assert client.get(reverse("chat:feedback", args=[answer.pk])).status_code == 405
    assert not AnswerFeedback.objects.exists()


def test_the_chat_page_shows_the_thumbs_with_the_users_vote(client, technician, answer):
    services.feedback_set(user=technician, message=answer, rating="down", comment="wrong <b>page</b>")
    client.force_login(technician)
    html = client.get(reverse("chat:conversation", args=[answer.conversation_id])).content.decode()
    assert f'data-feedback-url="{reverse("chat:feedback", args=[answer.pk])}"' in html
    assert 'data-rating="down"' in html
    assert re.search(r'<button[^>]*data-rating="down"[^>]*aria-pressed="true"', html)
    assert re.search(r'<button[^>]*data-rating="up"[^>]*aria-pressed="false"', html)
    assert "wrong &lt;b&gt;page&lt;/b&gt;" in html  # the comment, escaped
    assert 'id="feedback-template"' in html  # the blank copy for live answers


# ------------------------------------------------------------------ the review queue


@pytest.fixture
def complaint(technician, manual):
    cites, _ = passages_search(QUESTION)
    answer = _answer(technician, content="Replace the **fuse** [1].", cites=cites)
    return services.feedback_set(user=technician, message=answer, rating="down", comment="It was the connector")


def test_supervisors_see_the_thumbs_down_with_question_answer_pages_and_comment(client, supervisor, complaint):
    client.force_login(supervisor)
    response = client.get(reverse("chat:review"))
    assert response.status_code == 200
    html = response.content.decode()
    assert QUESTION in html
    assert "<strong>fuse</strong>" in html  # the answer, rendered
    assert f'href="#cite-{complaint.message_id}-1"' in html  # [1] points at this answer's citation
    citation = complaint.message.citations.first()
    assert f'href="{citation.url}"' in html and "wxt.pdf — page 4" in html
    assert "It was the connector" in html and "bob" in html
    assert f"/incidents/new/?message={complaint.message_id}&amp;feedback={complaint.pk}" in html


def test_the_queue_filters_and_paginates(client, supervisor, technician):
    votes = [services.feedback_set(user=technician, message=_answer(technician, f"question {i}"), rating="down")
             for i in range(23)]
    services.feedback_review(feedback=votes[0], reviewer=supervisor, note="seen")
    client.force_login(supervisor)
    first = client.get(reverse("chat:review")).content.decode()  # unreviewed by default
    assert "question 22" in first and "question 3" in first and "question 2<" not in first
    assert "Page 1 of 2" in first
    second = client.get(reverse("chat:review") + "?status=unreviewed&page=2").content.decode()
    assert "question 2<" in second and "question 1<" in second and "question 0<" not in second
    reviewed = client.get(reverse("chat:review") + "?status=reviewed").content.decode()
    assert "question 0<" in reviewed and "question 1<" not in reviewed and "seen" in reviewed


def test_a_supervisor_marks_one_reviewed_with_a_note(client, supervisor, complaint):
    client.force_login(supervisor)
    url = reverse("chat:review_item", args=[complaint.pk])
    response = client.post(url, {"note": "Connector page added to the manual", "next": reverse("chat:review") + "?status=all"})
    assert response.status_code == 302 and response["Location"] == reverse("chat:review") + "?status=all"
    complaint.refresh_from_db()
    assert complaint.reviewed_by == supervisor and complaint.review_note == "Connector page added to the manual"
    assert client.get(url).status_code == 200
    assert client.post(url, {"note": "x", "next": "https://evil.example/"})["Location"] == reverse("chat:review")


def test_a_too_long_note_is_shown_again_with_the_error(client, supervisor, complaint):
    client.force_login(supervisor)
    note = "a long note " * 200
    response = client.post(reverse("chat:review_item", args=[complaint.pk]), {"note": note})
    assert response.status_code == 400
    html = response.content.decode()
    assert "at most 2000" in html and note.strip() in html and 'aria-invalid="true"' in html
    complaint.refresh_from_db()
    assert complaint.reviewed_at is None


def test_technicians_and_anonymous_cannot_open_the_queue(client, technician, complaint):
    assert client.get(reverse("chat:review"))["Location"].startswith(reverse("login"))
    client.force_login(technician)
    assert client.get(reverse("chat:review")).status_code == 403
    assert client.get(reverse("chat:review_item", args=[complaint.pk])).status_code == 403
    assert client.post(reverse("chat:review_item", args=[complaint.pk]), {"note": "x"}).status_code == 403
    complaint.refresh_from_db()
    assert complaint.reviewed_at is None


def test_thumbs_up_are_not_in_the_queue(client, supervisor, technician):
    liked = services.feedback_set(user=technician, message=_answer(technician), rating="up")
    client.force_login(supervisor)
    assert client.get(reverse("chat:review_item", args=[liked.pk])).status_code == 404


# ------------------------------------------------------------------ ranking by thumbs-up (mock embedder)


def _pair() -> list[str]:
    """The first two pages for PARAPHRASE before any vote: [leader, runner-up]."""
    texts = _texts(passages_search(PARAPHRASE)[0])[:2]
    assert sorted(texts) == sorted([FUSE, CONNECTOR])
    return texts


def _liked(user, manual, *, content="It is this page [2].", question=QUESTION, pair=None):
    """An answer to ``question`` citing the leader [1] and the runner-up [2]; it refers to [2]."""
    leader, runner_up = pair or _pair()
    found = {p.text: p for p in passages_search(question, min_score=0.0)[0]}
    return _answer(user, question, content=content, cites=[found[leader], found[runner_up]])


def test_a_thumbs_up_lifts_the_page_it_cited_for_a_similar_question_and_taking_it_back_undoes_it(technician, manual):
    before, _ = passages_search(PARAPHRASE)
    leader, runner_up = _pair()
    liked = _liked(technician, manual)
    services.feedback_set(user=technician, message=liked, rating="up")

    after, _ = passages_search(PARAPHRASE)
    assert _texts(after)[:2] == [runner_up, leader]
    lifted, other = after[0], after[1]
    assert other.boost == 0  # the answer did not refer to [1]
    assert 0 < lifted.boost <= 0.08
    assert lifted.score == pytest.approx(before[1].score)  # the similarity itself is untouched

    services.feedback_set(user=technician, message=liked, rating="none")
    again, _ = passages_search(PARAPHRASE)
    assert _texts(again) == _texts(before) and all(p.boost == 0 for p in again)


def test_an_answer_without_markers_lifts_all_it_cited(technician, manual):
    pair = _pair()
    liked = _liked(technician, manual, content="Check the fuse and the connector.")
    services.feedback_set(user=technician, message=liked, rating="up")
    passages, _ = passages_search(PARAPHRASE)
    assert _texts(passages)[:2] == pair  # both lifted alike: the order stays
    assert passages[0].boost == passages[1].boost > 0


def test_the_boost_is_capped(technician, supervisor, admin_user, manual, settings):
    settings.NANOSENTRI_FEEDBACK_BOOST_WEIGHT = 1.0
    pair = _pair()
    liked = _liked(technician, manual, pair=pair)
    for user in (technician, supervisor, admin_user):
        services.feedback_set(user=user, message=liked, rating="up")
    _liked(technician, manual, pair=pair)  # a second liked answer citing the same page
    services.feedback_set(user=technician, message=Message.objects.filter(role="assistant").last(), rating="up")
    passages, _ = passages_search(PARAPHRASE)
    assert passages[0].text == pair[1] and passages[0].boost == settings.NANOSENTRI_FEEDBACK_BOOST_CAP == 0.08


def test_more_votes_lift_more_and_a_thumbs_down_cancels_a_thumbs_up(technician, supervisor, admin_user, manual):
    pair = _pair()
    liked = _liked(technician, manual)
    services.feedback_set(user=technician, message=liked, rating="up")
    one = passages_search(PARAPHRASE)[0][0].boost
    services.feedback_set(user=supervisor, message=liked, rating="up")
    assert passages_search(PARAPHRASE)[0][0].boost > one
    services.feedback_set(user=supervisor, message=liked, rating="down")
    services.feedback_set(user=admin_user, message=liked, rating="down")  # net -1: no effect, no penalty
    passages, _ = passages_search(PARAPHRASE)
    assert _texts(passages)[:2] == pair and all(p.boost == 0 for p in passages)


def test_an_unrelated_question_is_unaffected(technician, manual):
    before, _ = passages_search(MOUNT)
    services.feedback_set(user=technician, message=_liked(technician, manual), rating="up")
    after, _ = passages_search(MOUNT)
    assert [(p.text, p.score) for p in after] == [(p.text, p.score) for p in before]
    assert all(p.boost == 0 for p in after)


def test_a_boost_never_lets_in_a_page_below_the_floor(technician, manual):
    pair = _pair()
    cosine = {p.text: p.score for p in passages_search(PARAPHRASE, min_score=0.0)[0]}
    low, high = sorted(pair, key=lambda text: cosine[text])
    # The liked answer relied on the page with the lower similarity: it gets the boost.
    liked = _liked(technician, manual, content=f"It is this page [{pair.index(low) + 1}].", pair=pair)
    services.feedback_set(user=technician, message=liked, rating="up")
    boosted = {p.text: p.boost for p in passages_search(PARAPHRASE, min_score=0.0)[0]}
    assert boosted[low] > 0

    passages, _ = passages_search(PARAPHRASE, min_score=cosine[low] + 0.001)
    assert _texts(passages) == [high]


def test_a_rechunked_page_is_not_boosted(technician, manual):
    pair = _pair()
    liked = _liked(technician, manual)
    Citation.objects.filter(message=liked).update(text="an older version of the page")
    services.feedback_set(user=technician, message=liked, rating="up")
    assert _texts(passages_search(PARAPHRASE)[0])[:2] == pair


def test_the_boost_can_be_switched_off(technician, manual, settings):
    pair = _pair()
    services.feedback_set(user=technician, message=_liked(technician, manual), rating="up")
    settings.NANOSENTRI_FEEDBACK_BOOST = False
    passages, _ = passages_search(PARAPHRASE)
    assert _texts(passages)[:2] == pair and all(p.boost == 0 for p in passages)


def test_the_citation_frame_carries_the_boost():
    assert Citation(rank=1, file_name="m.pdf", page=1, score=0.5, text="t", boost=0.031).as_dict()["boost"] == 0.031


# ------------------------------------------------------------------ ranking with real embeddings


@pytest.mark.integration
def test_real_minilm_paraphrase_lifts_the_liked_page_and_unrelated_is_untouched(real_stack, smartevse, technician):
    """SmartEVSE manual, MiniLM, persistent Chroma: "How does the cable locking work?" ranks two
    pages nearly alike; a thumbs-up on an answer to "What is the cable lock?" that relied on the
    second one puts it first, and taking the thumbs-up back restores the order."""
    from apps.knowledge.services import document_add_path, document_ingest

    document, _ = document_add_path(path=smartevse)
    assert document_ingest(document_id=document.pk).status == "indexed"
    question, paraphrase, unrelated = "What is the cable lock?", "How does the cable locking work?", "The nozzle is clogged"

    before, _ = passages_search(paraphrase)
    assert len(before) >= 2
    first, second = before[0], before[1]
    gap = first.rank_score - second.rank_score
    assert gap < FUSED_PER_COSINE * 0.05, "the manual no longer has a near tie here"
    cites, _ = passages_search(question)
    keys = [(p.document_id, p.chunk_index) for p in cites]
    assert (second.document_id, second.chunk_index) in keys
    rank = keys.index((second.document_id, second.chunk_index)) + 1
    liked = _answer(technician, question, content=f"The cable lock holds the plug in the socket [{rank}].", cites=cites)
    unrelated_before, _ = passages_search(unrelated)

    services.feedback_set(user=technician, message=liked, rating="up")
    after, _ = passages_search(paraphrase)
    assert (after[0].chunk_index, after[0].text) == (second.chunk_index, second.text)
    assert 0 < after[0].boost <= 0.08 and after[0].score == pytest.approx(second.score, abs=1e-6)
    assert [(p.chunk_index, p.boost) for p in passages_search(unrelated)[0]] == [
        (p.chunk_index, 0.0) for p in unrelated_before
    ]

    services.feedback_set(user=technician, message=liked, rating="none")
    restored, _ = passages_search(paraphrase)
    assert [p.chunk_index for p in restored] == [p.chunk_index for p in before]
    assert all(p.boost == 0 for p in restored)


# ------------------------------------------------------------------ in the browser


@pytest.mark.browser
@pytest.mark.integration
def test_thumbs_on_a_live_answer_survive_a_reload_and_reach_the_review_queue(tmp_path_factory):
    """Headless Chromium against ``manage.py runapp`` (no manual: the answer is "not covered")."""
    from playwright.sync_api import expect

    from tests.browser_support import chromium, login, running_app

    with running_app(tmp_path_factory.mktemp("feedback-e2e")) as url, chromium() as browser:
        tech = browser.new_context().new_page()
        errors = []
        tech.on("pageerror", lambda e: errors.append(str(e)))
        login(tech, url, "technician")
        tech.goto(f"{url}/chat/")
        expect(tech.locator("#ask")).to_be_enabled(timeout=15_000)
        tech.fill("#question", "What does ERROR HIGH TEMP mean?")
        tech.click("#ask")
        last = tech.locator("article.msg-assistant").last
        expect(last).to_have_attribute("data-status", re.compile("^(completed|stopped|not_covered)$"), timeout=120_000)
        up = last.locator(".feedback-up")
        up.click()  # on the live answer
        expect(up).to_have_attribute("aria-pressed", "true")
        expect(last.locator(".feedback-status")).to_have_text(re.compile("helpful"))

        tech.reload()
        last = tech.locator("article.msg-assistant").last
        expect(last.locator(".feedback-up")).to_have_attribute("aria-pressed", "true")
        last.locator(".feedback-up").click()  # the same thumb again takes it back
        expect(last.locator(".feedback-up")).to_have_attribute("aria-pressed", "false")
        expect(last.locator(".feedback-status")).to_have_text("Vote removed.")
        last.locator(".feedback-down").click()
        expect(last.locator(".feedback-down")).to_have_attribute("aria-pressed", "true")
        expect(last.locator(".feedback-comment")).to_have_attribute("open", "")
        last.locator(".feedback-form textarea").fill("It should say when charging resumes")
        last.locator(".feedback-form button[type=submit]").click()
        expect(last.locator(".feedback-comment summary")).to_have_text("Your comment")
        assert not errors, errors

        supervisor = browser.new_context().new_page()
        login(supervisor, url, "supervisor")
        supervisor.goto(f"{url}/chat/review/")
        expect(supervisor.locator(".review-item")).to_contain_text("It should say when charging resumes")
        supervisor.fill(".review-item textarea[name=note]", "Manual page 2 covers it")
        supervisor.click(".review-item button[type=submit]")
        expect(supervisor.locator(".flash-success")).to_contain_text("reviewed")
        expect(supervisor.locator(".review-item")).to_have_count(0)


def test_the_passages_thumbs_up_cited_are_read_again_whenever_a_vote_changes(technician, supervisor, manual):
    from apps.chat.feedback_ranking import upvoted_chunks

    assert upvoted_chunks() == frozenset()  # remembered: no vote yet
    liked = _liked(technician, manual)
    cited = {(c.document_id, c.chunk_index) for c in liked.citations.all()}
    services.feedback_set(user=technician, message=liked, rating="up")
    assert upvoted_chunks() == cited
    services.feedback_set(user=supervisor, message=liked, rating="down")  # another vote, same answer
    assert upvoted_chunks() == cited  # a thumbs-up is still on it
    services.feedback_set(user=technician, message=liked, rating="down")  # changed in place
    assert upvoted_chunks() == frozenset()
    services.feedback_set(user=technician, message=liked, rating="up")
    assert upvoted_chunks() == cited
    liked.delete()
    assert upvoted_chunks() == frozenset()
