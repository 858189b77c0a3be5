import codecs
import json
from pathlib import Path

import pytest

from sleepllm.extract import extract

HOSTILE = Path(__file__).parent / "data" / "hostile.txt"
DEV = Path(__file__).resolve().parents[2] / "shared" / "eval" / "dev_facts.jsonl"


def hostile_lines():
    out = []
    for line in HOSTILE.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            out.append(codecs.decode(line, "unicode_escape") if "\\" in line else line)
    return out


def test_hostile_corpus_stores_nothing():
    lines = hostile_lines()
    assert len(lines) >= 100
    stored = {line: extract(line) for line in lines}
    assert {k: v for k, v in stored.items() if v} == {}


@pytest.mark.parametrize("message,subject,relation,noun,obj", [
    ("I have a dog called Biscuit.", "user", "name", "dog", "Biscuit"),
    ("Biscuit is my dog's name", "user", "name", "dog", "Biscuit"),
    ("we named our dog Biscuit", "user", "name", "dog", "Biscuit"),
    ("We named the new puppy Biscuit!", "user", "name", "dog", "Biscuit"),
    ("actually my dog is called Rex", "user", "name", "dog", "Rex"),
    ("Oh by the way, I moved to Bergen last month.", "user", "lives_in", "", "Bergen"),
    ("my friend Aria moved to Ghent", "Aria", "lives_in", "", "Ghent"),
    ("My mum's name is Ingrid.", "user", "name", "mother", "Ingrid"),
    ("My favourite colour is teal.", "user", "favorite", "color", "teal"),
    ("I work as a nurse these days.", "user", "works_as", "", "nurse"),
    ("Xaver's car is a Saab.", "Xaver", "drives", "", "Saab"),
    ("My colleague Tomas plays the cello.", "Tomas", "plays", "", "cello"),
    # a fact followed by a remark: the clause that states it is enough
    ("I moved to Bergen last spring, lovely city.", "user", "lives_in", "", "Bergen"),
    ("My sister is called Delphine, she is a nurse.", "user", "name", "sister", "Delphine"),
    ("I work as a glassblower, which is fun.", "user", "works_as", "", "glassblower"),
    ("So my boss is called Harriet and she is strict.", "user", "name", "boss", "Harriet"),
    ("My friend Aria lives in Ghent, which she loves.", "Aria", "lives_in", "", "Ghent"),
])
def test_wordings(message, subject, relation, noun, obj):
    facts = extract(message)
    assert len(facts) == 1, facts
    f = facts[0]
    assert (f.subject, f.relation, f.noun, f.object) == (subject, relation, noun, obj)


def test_two_facts_in_one_message():
    facts = extract("My dog's name is Rex. I live in Oslo.")
    assert [f.object for f in facts] == ["Rex", "Oslo"]
    facts = extract("I live in Oslo and I work as a nurse.")
    assert [(f.relation, f.object) for f in facts] == [("lives_in", "Oslo"), ("works_as", "nurse")]


def test_a_refused_sentence_is_not_rescued_by_its_clauses():
    for msg in ["If I had a dog, I would call him Rex.", "Maybe, my dog is called Rex.",
                "My dog is not called Rex, my dog is called Max.",
                "She said my cat is called Tom, I live in Oslo."]:
        assert extract(msg) == [], msg


@pytest.mark.skipif(not DEV.exists(), reason="shared eval set not present")
def test_dev_statements_extracted_with_right_object():
    import re

    facts = [json.loads(l) for l in DEV.read_text().splitlines() if l.strip()]
    ok = 0
    for f in facts:
        got = extract(f["statement"])
        ok += bool(got) and bool(re.search(r"(?<!\w)" + re.escape(f["object"]) + r"(?!\w)",
                                           got[0].object, re.I))
    assert ok / len(facts) >= 0.95
