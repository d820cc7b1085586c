"""A question of several parts: where it is cut, and each part's page among the first passages."""
from ingest.lexical import question_parts


def test_a_second_question_after_a_comma_or_and_is_a_part_of_its_own():
    assert question_parts("What UART baud rate does the PMS5003 use, and which two start bytes begin each frame?") == [
        "What UART baud rate does the PMS5003 use", "which two start bytes begin each frame"]
    assert question_parts("What does ERROR HIGH TEMP mean and when does charging resume?") == [
        "What does ERROR HIGH TEMP mean", "when does charging resume"]
    assert question_parts("Is the fuse blown? How do I replace it safely?") == [
        "Is the fuse blown", "How do I replace it safely"]


def test_a_list_of_things_or_a_bare_follow_on_is_not_cut():
    assert question_parts("What order do I connect the battery, panel and loads?") == [
        "What order do I connect the battery, panel and loads?"]
    assert question_parts("Why does the relay click, and why?") == ["Why does the relay click, and why?"]
    assert question_parts("How do I level the bed?") == ["How do I level the bed?"]
