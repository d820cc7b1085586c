"""Where each role lands after logging in, and which links the navigation offers it."""
import pytest


@pytest.mark.parametrize(
    "user_fixture,start",
    [("admin_user", "/documents/"), ("supervisor", "/incidents/dashboard/"), ("technician", "/chat/")],
)
def test_it_sends_each_role_to_its_work(client, request, user_fixture, start):
    client.force_login(request.getfixturevalue(user_fixture))

    response = client.get("/")

    assert response.status_code == 302
    assert response["Location"] == start


def test_it_tells_an_account_without_a_role_to_ask_for_one(client, outsider):
    client.force_login(outsider)

    response = client.get("/")

    assert response.status_code == 403
    assert "ask your administrator" in response.content.decode()


@pytest.mark.parametrize(
    "user_fixture,shown,hidden",
    [
        ("technician", ["Chat", "Incidents", "Assets"], ["Dashboard", "Documents", "Review", "System"]),
        ("supervisor", ["Chat", "Incidents", "Assets", "Dashboard", "Review"], ["Documents", "System"]),
        ("admin_user", ["Chat", "Incidents", "Assets", "Dashboard", "Review", "Documents", "System"], []),
    ],
)
def test_the_navigation_offers_what_the_role_may_open(client, request, user_fixture, shown, hidden):
    client.force_login(request.getfixturevalue(user_fixture))

    nav = client.get("/assets/").content.decode().split('<ul class="nav-links">')[1].split("</ul>")[0]

    for label in shown:
        assert f">{label}</a>" in nav or f">{label} <span" in nav
    for label in hidden:
        assert f">{label}</a>" not in nav


def test_review_shows_how_many_thumbs_down_await_review(client, supervisor, technician):
    from apps.chat.models import AnswerFeedback, Conversation, Message

    answer = Message.objects.create(conversation=Conversation.objects.create(user=technician), role="assistant",
                                    content="...")
    AnswerFeedback.objects.create(message=answer, user=technician, rating=-1)
    client.force_login(supervisor)

    nav = client.get("/assets/").content.decode().split('<ul class="nav-links">')[1].split("</ul>")[0]

    assert '>Review <span class="nav-count" title="Thumbs-down answers awaiting review">1</span></a>' in nav
