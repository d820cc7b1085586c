from apps.chat.highlight import key_lines, sentences

SMARTEVSE_ERRORS = """Error Messages
If an error occurs, the SmartEVSE will stop charging, and display one of the
following messages:
ERROR NO SERIAL COM CHECK WIRING No signal from the Sensorbox or
other SmartEVSE (when load balancing is used) has been received for 10
seconds. Please check the wiring to the Sensorbox or other SmartEVSE.
ERROR NO CURRENT There is not enough current available to start charging.
The SmartEVSE will try again in 60 seconds.
ERROR HIGH TEMP The temperature inside the module has reached 65º
Celsius. Charging is stopped.
Once the temperature has dropped below 55ºC charging is started again."""


def test_it_finds_the_lines_that_answer_the_question():
    lines = key_lines("What does ERROR HIGH TEMP mean and when does charging resume?", SMARTEVSE_ERRORS)
    assert lines[0].startswith("ERROR HIGH TEMP")
    assert any("55ºC" in line for line in lines)


def test_it_follows_the_question_to_another_part_of_the_passage():
    lines = key_lines("no signal from the sensorbox", SMARTEVSE_ERRORS)
    assert any("No signal from the Sensorbox" in line for line in lines)
    assert not any("HIGH TEMP" in line for line in lines)


def test_pdf_line_breaks_do_not_cut_sentences():
    assert "ERROR HIGH TEMP The temperature inside the module has reached 65º Celsius." in sentences(SMARTEVSE_ERRORS)


def test_nothing_matching_gives_nothing():
    assert key_lines("sourdough recipe", SMARTEVSE_ERRORS) == []
    assert key_lines("the and of", SMARTEVSE_ERRORS) == []
    assert key_lines("error", "") == []


def test_the_limit_is_respected():
    assert len(key_lines("charging error temperature", SMARTEVSE_ERRORS, limit=1)) == 1
