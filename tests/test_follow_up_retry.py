"""When a short question the manuals do not answer alone is searched again with the one before it."""
from apps.chat.conversation import MAX_FOLLOW_UP_WORDS, Turn, follow_up_retry

PREVIOUS = Turn(question="Ender-3 screen shows Min temp. What's causing it?", answer="…", documents={2})
QUESTION = "The plug looks seated fine though. What then?"


def test_a_short_question_after_an_answered_one_is_searched_with_it_in_that_answers_manuals():
    assert follow_up_retry(QUESTION, PREVIOUS, named=set()) == (f"{PREVIOUS.question} {QUESTION}", {2})


def test_it_names_the_same_manual_as_the_previous_answer():
    assert follow_up_retry(QUESTION, PREVIOUS, named={2, 5}) is not None


def test_not_a_question_about_another_device():
    assert follow_up_retry("How do I update the firmware on the SmartEVSE?", PREVIOUS, named={7}) is None


def test_not_a_long_question_nor_the_first_of_a_conversation_nor_after_an_answer_without_citations():
    long_question = " ".join(["word"] * (MAX_FOLLOW_UP_WORDS + 1))
    assert follow_up_retry(long_question, PREVIOUS, named=set()) is None
    assert follow_up_retry(QUESTION, None, named=set()) is None
    assert follow_up_retry(QUESTION, Turn(question="q", answer="not covered", documents=set()), named=set()) is None
