"""Hybrid retrieval on the fast fakes (mock embedder, in-memory Chroma): fusion, named manuals,
"not covered", the lexical index following writes and deletes, and the generation counter."""
import pytest

from apps.knowledge.models import Document, IndexGeneration
from apps.knowledge.retrieval import distinctive_title_words, passages_retrieve
from apps.knowledge.vector_index import get_vector_index, open_search_index
from ingest.chunk import Chunk
from ingest.lexical import query_terms
from models.embedding import get_embedder

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _mock_embedder_scale(settings):
    """The hashed bag-of-words embedder gives lower cosines than MiniLM: scale the bars to it."""
    settings.NANOSENTRI_RETRIEVAL_MIN_SCORE = 0.1
    settings.NANOSENTRI_RETRIEVAL_COVERED_SCORE = 0.5


def indexed(name: str, pages: list[str], title: str = "") -> Document:
    """A document indexed as the worker does it (chunks with their title)."""
    doc = Document.objects.create(
        original_name=name, stored_path=name, extension=".pdf", content_hash=name, status=Document.Status.INDEXED,
        title=title or name,
    )
    chunks = [Chunk(page=i + 1, index=i, text=text) for i, text in enumerate(pages)]
    embedder = get_embedder()
    from ingest.index import chunk_entries

    entries = chunk_entries(document_id=doc.pk, file_name=name, chunks=chunks, title=title or name)
    get_vector_index().add_entries(entries, embedder.embed([e.embed_text for e in entries]))
    return doc


def lexical_documents(index, question: str) -> set[str]:
    return {h.metadata["document_id"] for h in index.lexical_search(query_terms(question), top_k=10)}


@pytest.fixture
def library():
    evse = indexed("SmartEVSE_Manual.pdf", [
        "Set the charging current and the mains limit in the menu.",
        "ERROR HIGH TEMP The temperature inside the module has reached 65 Celsius. Charging is stopped. "
        "Once the temperature has dropped below 55C charging is started again.",
    ], "SmartEVSE Manual")
    evb = indexed("Olimex_ESP32-EVB_Manual.pdf", [
        "The board has two relays. Each relay can switch up to 10A at 250VAC.",
        "The CAN interface uses GPIO35 and GPIO5.",
    ], "Olimex ESP32-EVB Manual")
    poe = indexed("Olimex_ESP32-POE_Manual.pdf", [
        "The board is powered over Ethernet. The relay header is not populated.",
        "Button BUT1 is connected to GPIO34.",
    ], "Olimex ESP32-POE Manual")
    return {"evse": evse, "evb": evb, "poe": poe}


def test_an_error_code_question_cites_the_page_with_the_code(library):
    found = passages_retrieve("What does ERROR HIGH TEMP mean?")
    assert found.covered
    assert (found.passages[0].document_id, found.passages[0].page) == (library["evse"].pk, 2)
    assert found.passages[0].lexical > 0 and found.passages[0].rank_score > 0


def test_a_pin_name_finds_its_page(library):
    found = passages_retrieve("GPIO34")
    assert (found.passages[0].document_id, found.passages[0].page) == (library["poe"].pk, 2)


def test_a_question_naming_a_manual_prefers_it(library):
    found = passages_retrieve("How much can the relay switch on the ESP32-EVB?")
    assert found.named_documents == {library["evb"].pk}
    assert found.passages[0].document_id == library["evb"].pk


def test_a_question_naming_a_manual_is_searched_in_it_by_what_it_asks_not_by_the_name(library):
    """The name says which manual; the page is the one about what is asked ("relay"), not the one
    that repeats the name, and no other manual is cited."""
    indexed("Olimex_ESP32-EVB_Quick_Notes.pdf", [
        "Olimex ESP32-EVB: the ESP32-EVB ships with the ESP32-EVB demo firmware on the ESP32-EVB.",
    ], "Olimex ESP32-EVB Quick Notes")
    from apps.knowledge.retrieval import _without_names

    found = passages_retrieve("What can the relay of the ESP32-EVB switch?")
    named = found.named_documents
    assert library["evb"].pk in named
    assert {p.document_id for p in found.passages} <= named
    assert (found.passages[0].document_id, found.passages[0].page) == (library["evb"].pk, 1)
    terms = query_terms("What can the relay of the ESP32-EVB switch?")
    kept = _without_names(terms, named)
    assert "relay" in kept and not {"esp32evb", "evb"} & set(kept)
    assert not any("evb" in t.split("_") for t in kept)
    assert _without_names(query_terms("EVB"), named) == query_terms("EVB")  # nothing but the name: kept


def test_prefer_puts_a_follow_ups_manual_first_when_the_question_names_none(library):
    found = passages_retrieve("relay board", prefer={library["poe"].pk})
    assert found.passages[0].document_id == library["poe"].pk


def test_asset_manuals_restrict_both_halves(library):
    found = passages_retrieve("relay GPIO", document_ids={library["poe"].pk})
    assert found.passages and {p.document_id for p in found.passages} == {library["poe"].pk}


def test_an_unrelated_question_is_not_covered_and_cites_nothing(library):
    found = passages_retrieve("Bearings pump motor replacement interval")
    assert not found.covered and found.passages == []


def test_a_code_no_manual_mentions_is_not_covered_though_its_words_match(library):
    near = passages_retrieve("What does ERROR HIGH TEMP mean?")
    assert near.covered and near.unknown_codes == []

    found = passages_retrieve("What does ERROR F21 HIGH TEMP mean?")

    assert not found.covered and found.passages == [] and found.unknown_codes == ["F21"]
    # A code the library has keeps the question covered.
    assert passages_retrieve("Which button is on GPIO34?").covered


def test_only_indexed_documents_are_cited(library):
    Document.objects.filter(pk=library["evse"].pk).update(status=Document.Status.EMBEDDING)
    found = passages_retrieve("What does ERROR HIGH TEMP mean?")
    assert all(p.document_id != library["evse"].pk for p in found.passages)


def test_rerank_steps_run_in_order_on_the_covered_passages(library):
    seen = []

    def reverse(passages, vector):
        seen.append(len(vector))
        return list(reversed(passages))

    plain = passages_retrieve("relay relays switch", top_k=10)
    reranked = passages_retrieve("relay relays switch", top_k=10, rerank=[reverse])
    assert seen == [get_embedder().dimension]
    assert [p.chunk_index for p in reranked.passages] == [p.chunk_index for p in reversed(plain.passages)]


def test_deleting_a_document_removes_its_vectors_and_terms_together(library):
    index = get_vector_index()
    poe = str(library["poe"].pk)
    assert poe in lexical_documents(index, "GPIO34")
    index.delete_document(library["poe"].pk)
    assert poe not in lexical_documents(index, "GPIO34")
    embedding = get_embedder().embed(["GPIO34 button"])[0]
    assert all(h.metadata["document_id"] != str(library["poe"].pk)
               for h in index.vector_search(embedding, top_k=10))


def test_vector_hits_come_from_memory_when_current_and_from_the_store_after_a_write(library, settings):
    index = get_vector_index()
    embedding = get_embedder().embed(["relay switch 10A"])[0]
    from_store = index.vector_search(embedding, top_k=4)  # nothing in memory yet: texts read from Chroma
    index.lexical_stats()  # the current generation's entries are now in memory
    assert index._lexical is not None
    collection = index._store.client
    asked = []
    real_query = collection.query
    collection.query = lambda **kwargs: asked.append(kwargs["include"]) or real_query(**kwargs)
    try:
        from_memory = index.vector_search(embedding, top_k=4)
    finally:
        del collection.query
    assert asked == [["distances"]]  # ids and distances only: texts and metadata from memory
    assert [(h.node_id, h.text, h.metadata, round(h.score, 6)) for h in from_memory] == [
        (h.node_id, h.text, h.metadata, round(h.score, 6)) for h in from_store
    ]
    # Another process re-indexes a chunk with a new text: the memory is no longer current, and the
    # hit shows the stored text, never the remembered one.
    writer = open_search_index(settings.NANOSENTRI_CHROMA_COLLECTION)
    from ingest.index import chunk_entries

    evb = library["evb"]
    entries = chunk_entries(document_id=evb.pk, file_name=evb.original_name, title=evb.title,
                            chunks=[Chunk(page=1, index=0, text="Each relay can switch up to 16A at 250VAC now.")])
    writer.add_entries(entries, get_embedder().embed([e.embed_text for e in entries]))
    hits = index.fresh().vector_search(embedding, top_k=4)
    texts = {h.node_id: h.text for h in hits}
    assert texts[entries[0].node_id] == "Each relay can switch up to 16A at 250VAC now."


def test_a_filtered_search_is_exact_in_memory_and_agrees_with_the_store(library):
    """An asset's manuals or the manuals a question names: searched in memory (Chroma's metadata
    pre-filter was the slowest step at 100,000 passages), with the same hits as Chroma's own."""
    index = get_vector_index()
    embedding = get_embedder().embed(["relay switch 10A"])[0]
    evb, poe = str(library["evb"].pk), str(library["poe"].pk)
    where = {"document_id": [evb, poe]}
    from_store = index.vector_search(embedding, top_k=5, where=where)  # nothing in memory yet: Chroma filters
    index.lexical_stats()
    collection = index._store.client
    asked = []
    real_query = collection.query
    collection.query = lambda **kwargs: asked.append(kwargs) or real_query(**kwargs)
    try:
        in_memory = index.vector_search(embedding, top_k=5, where=where)
        one = index.vector_search(embedding, top_k=50, where={"document_id": evb})
        nothing = index.vector_search(embedding, top_k=5, where={"document_id": "999999"})
    finally:
        del collection.query
    assert asked == []  # Chroma was not asked
    assert [(h.node_id, h.text, round(h.score, 5)) for h in in_memory] == [
        (h.node_id, h.text, round(h.score, 5)) for h in from_store
    ]
    assert one and {h.metadata["document_id"] for h in one} == {evb}
    assert [h.score for h in one] == sorted((h.score for h in one), reverse=True)
    assert nothing == []
    # BM25 with the same filter: only those manuals' chunks, best first.
    lexical = index.lexical_search(["relay"], top_k=5, where={"document_id": evb})
    assert lexical and {h.metadata["document_id"] for h in lexical} == {evb}
    assert index.lexical_search(["relay"], top_k=5, where={"document_id": "999999"}) == []


def test_a_reader_in_another_process_sees_the_writers_changes_through_the_generation(library, settings):
    reader = get_vector_index()
    poe = str(library["poe"].pk)
    assert poe in lexical_documents(reader, "GPIO34")
    before = IndexGeneration.objects.get().value
    # Another process (the worker) writes: simulated by a second index object over the same store.
    writer = open_search_index(settings.NANOSENTRI_CHROMA_COLLECTION)
    writer.delete_document(library["poe"].pk)
    assert IndexGeneration.objects.get().value == before + 1
    # The reader's BM25 statistics are stale until it checks the generation.
    assert poe in lexical_documents(reader, "GPIO34")
    assert poe not in lexical_documents(reader.fresh(), "GPIO34")


def test_distinctive_title_words_leave_out_shared_and_generic_words():
    words = distinctive_title_words({
        1: "Olimex ESP32-POE User Manual rev2.6",
        2: "Olimex ESP32-EVB User Manual rev1.0",
        3: "SmartEVSE v3 Installation Manual v1.01 sw3.00",
        4: "Plantower PMS5003 Data Manual v2.3",
    })
    assert words[1] == {"olimex", "esp32poe", "esp32", "poe"}
    assert words[3] == {"smartevse"}
    assert words[4] == {"plantower", "pms5003"}
    assert "manual" not in set().union(*words.values())


def test_the_most_specific_name_wins_over_a_shared_one(library):
    found = passages_retrieve("What does the ESP32-POE button do?")
    assert found.named_documents == {library["poe"].pk}


def test_an_empty_library_is_not_covered_and_does_not_fail():
    found = passages_retrieve("What does ERROR HIGH TEMP mean?")
    assert not found.covered and found.passages == []
    assert get_vector_index().lexical_search(query_terms("ERROR HIGH TEMP"), top_k=5) == []


def test_searches_use_the_previous_statistics_while_another_thread_rebuilds_them(library):
    """At 100,000 passages a rebuild takes seconds: a question asked meanwhile must not wait for it,
    and must not show a passage deleted since (its text is read from the store, not the old copy)."""
    import threading

    from ingest.index import SearchIndex

    index = get_vector_index()
    assert str(library["poe"].pk) in lexical_documents(index, "GPIO34")
    started, release = threading.Event(), threading.Event()
    real_load = SearchIndex._load_lexical

    def slow_load(store):
        started.set()
        assert release.wait(10)
        return real_load(store)

    index.delete_document(library["poe"].pk)  # a write: the statistics are out of date
    SearchIndex._load_lexical = staticmethod(slow_load)
    try:
        rebuilder = threading.Thread(target=index.lexical_stats)
        rebuilder.start()
        assert started.wait(10)
        # The rebuild is stuck: a question still gets BM25 candidates at once, from the old statistics ...
        assert str(library["poe"].pk) in lexical_documents(index, "GPIO34")
        # ... but the deleted passage cannot come back: fetching it goes to the store, which lacks it.
        stale_ids = [h.node_id for h in index.lexical_search(query_terms("GPIO34"), top_k=10)]
        assert all(not i.startswith(f"doc{library['poe'].pk}-") for i in index.fetch(stale_ids))
        assert passages_retrieve("Which button is on GPIO34?").passages == [] or all(
            p.document_id != library["poe"].pk for p in passages_retrieve("Which button is on GPIO34?").passages
        )
    finally:
        release.set()
        rebuilder.join(10)
        SearchIndex._load_lexical = staticmethod(real_load)
    # Once rebuilt, the statistics are current.
    assert str(library["poe"].pk) not in lexical_documents(index, "GPIO34")


# ------------------------------------------------------------------ a section that ends on the next page

def indexed_pages(name: str, pages: list[list[str]], title: str) -> Document:
    """Like ``indexed``, with several chunks per page (``pages``: each page's chunk texts)."""
    doc = Document.objects.create(
        original_name=name, stored_path=name, extension=".pdf", content_hash=name, status=Document.Status.INDEXED,
        title=title,
    )
    chunks, index = [], 0
    for number, texts in enumerate(pages, 1):
        for text in texts:
            chunks.append(Chunk(page=number, index=index, text=text))
            index += 1
    from ingest.index import chunk_entries

    entries = chunk_entries(document_id=doc.pk, file_name=name, chunks=chunks, title=title)
    get_vector_index().add_entries(entries, get_embedder().embed([e.embed_text for e in entries]))
    return doc


CONNECTION_ORDER = (
    "4.1 Connection order\n1. Connect the battery to the battery port.\n"
    "2. Cover the solar panel and afterwards connect the wires to the PV input terminal.\n"
    "3. As a last step, connect the loads to the load output."
)
SPILLED = "MPPT 1210 HUS 2021-05-02\nDisconnection should be done in opposite order.\n"
NEXT_SECTION = "4.2 Compatible batteries\nThis charge controller can charge any battery with a nominal voltage of 12 V."


def test_a_section_ending_at_the_top_of_the_next_page_is_cited_there_right_after_it(library):
    solar = indexed_pages("Solar_Manual.pdf", [["Safety first. Read the whole manual."], [CONNECTION_ORDER],
                                               [SPILLED + NEXT_SECTION]], "Solar charge controller manual")

    found = passages_retrieve("In what order do I connect the battery, the panel and the loads?")

    cited = [(p.document_id, p.page) for p in found.passages]
    assert cited[:2] == [(solar.pk, 2), (solar.pk, 3)], cited
    tail = found.passages[1]
    # Only the lines that end the section, not the next section's text.
    assert tail.text == SPILLED.strip() and "Compatible batteries" not in tail.text
    assert tail.chunk_index == found.passages[0].chunk_index + 1
    assert tail.score == found.passages[0].score  # it stands with the passage it ends
    assert cited.count((solar.pk, 3)) == 1 and len(cited) <= 4


@pytest.mark.parametrize("pages, why", [
    ([[CONNECTION_ORDER], [SPILLED.strip()]], "no heading after the lines: the section may go on"),
    ([[CONNECTION_ORDER], ["MPPT 1210 HUS 2021-05-02\n" + NEXT_SECTION]], "a running header alone"),
    ([[CONNECTION_ORDER], [SPILLED + "More about the wiring follows here. " * 10 + "\n" + NEXT_SECTION]],
     "more than a few lines"),
    ([[CONNECTION_ORDER], [], [SPILLED + NEXT_SECTION]], "the next chunk is two pages on"),
    ([[CONNECTION_ORDER, "Keep the terminals clean and dry."], [SPILLED + NEXT_SECTION]],
     "the passage is not its page's last chunk"),
])
def test_no_continuation_is_cited_unless_the_section_ends_in_a_few_lines_on_the_next_page(library, pages, why):
    solar = indexed_pages("Solar_Manual.pdf", pages, "Solar charge controller manual")

    found = passages_retrieve("In what order do I connect the battery, the panel and the loads?")

    first = found.passages[0]
    assert (first.document_id, first.page, first.chunk_index) == (solar.pk, 1, 0), why
    assert not any(p.chunk_index == 1 and p.score == first.score and p.document_id == solar.pk
                   for p in found.passages[1:]), why


def test_a_continuation_already_cited_is_not_cited_twice(library):
    solar = indexed_pages("Solar_Manual.pdf", [[CONNECTION_ORDER],
                                               [SPILLED + "4.2 Connection of the battery\nConnect the battery first."]],
                          "Solar charge controller manual")

    found = passages_retrieve("In what order do I connect the battery?")

    cited = [(p.document_id, p.page) for p in found.passages]
    assert cited.count((solar.pk, 2)) == 1, cited


# ------------------------------------------------------------------ a named manual asked for what it never says

def test_a_question_asking_a_named_manual_for_words_it_never_has_is_not_covered(library):
    found = passages_retrieve("How do I update the firmware on the ESP32-EVB?")

    assert not found.covered and found.passages == []
    assert found.unmentioned == ["update", "firmware"]
    assert found.unmentioned_in == ["Olimex ESP32-EVB Manual"]


def test_a_word_only_another_manual_has_does_not_cover_the_named_one(library):
    """"Charging" is in the SmartEVSE manual, not in the EVB's: asked of the EVB, it is not covered."""
    assert passages_retrieve("What charging current does the SmartEVSE allow?").covered
    found = passages_retrieve("What charging current does the ESP32-EVB allow?")
    assert not found.covered and found.unmentioned == ["charging", "current", "allow"]


@pytest.mark.parametrize("question", [
    "What can the relays switch on the ESP32-EVB?",  # asks with the manual's own word
    "Which GPIO pins does the ESP32-EVB CAN interface use?",  # one word of several is enough
    "ESP32-EVB",  # only the name: nothing else is asked
])
def test_a_question_sharing_a_word_with_the_named_manual_is_not_refused_for_its_words(library, question):
    found = passages_retrieve(question)
    assert found.unmentioned == [] and found.covered, found


def test_a_question_naming_no_manual_is_never_refused_for_its_words(library):
    found = passages_retrieve("How do I update the firmware?")
    assert found.unmentioned == [] and found.named_documents == set()


def test_a_word_the_manual_has_a_longer_or_shorter_form_of_counts_as_mentioned(library):
    sensor = indexed("Plantower_PMS5003.pdf", ["Send the wakeup command 0xE4 to leave sleep mode."], "Plantower PMS5003")

    found = passages_retrieve("How do I wake the PMS5003?")

    assert found.unmentioned == [] and found.passages[0].document_id == sensor.pk
    # A synonym the manual never uses is refused, and named.
    assert passages_retrieve("How do I reboot the ESP32-EVB?").unmentioned == ["reboot"]
