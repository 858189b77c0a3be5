import codecs
import json
from pathlib import Path

import pytest

from sleepllm.extract import extract

HOSTILE = Path(__file__).parent / "data" / "hostile.txt"
# wordings and relations the dev set lacks, in its schema (a regression set: written with the
# rules that read it, so passing it says nothing about wordings not yet seen)
OTHER = [Path(__file__).parent / "data" / f for f in (
    "other_facts.jsonl", "more_facts.jsonl", "pets_sports.jsonl", "relatives.jsonl",
    "past_and_leading.jsonl", "new_forms.jsonl", "written_first.jsonl", "habits.jsonl")]
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
    ("We call our cat Mochi.", "user", "name", "cat", "Mochi"),
    ("My favorite TV show is The Wire.", "user", "favorite", "tv show", "The Wire"),
    ("My friend Aria moved to The Hague.", "Aria", "lives_in", "", "The Hague"),
    ("My favorite flower is the tulip.", "user", "favorite", "flower", "tulip"),
    ("My late grandmother's name was Rose.", "user", "name", "grandmother", "Rose"),
    ("These days I live in Porto.", "user", "lives_in", "", "Porto"),
    ("By profession I am an architect.", "user", "works_as", "", "architect"),
    ("My favorite author is Ursula K. Le Guin.", "user", "favorite", "author",
     "Ursula K. Le Guin"),
    ("I go to the gym at Iron Temple.", "user", "attribute", "gym", "Iron Temple"),
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
    ("My sister is called Delphine, she is lovely.", "user", "name", "sister", "Delphine"),
    ("I work as a glassblower, which is fun.", "user", "works_as", "", "glassblower"),
    ("So my boss is called Harriet and she is strict.", "user", "name", "boss", "Harriet"),
    ("My friend Aria lives in Ghent, which she loves.", "Aria", "lives_in", "", "Ghent"),
    # relatives introduced by name are the fact's subject
    ("My wife Lena works as a pilot.", "Lena", "works_as", "", "pilot"),
    ("My son Max plays the cello.", "Max", "plays", "", "cello"),
    ("My husband Omar is allergic to shellfish.", "Omar", "allergic_to", "", "shellfish"),
    ("My mom Ingrid lives in Bergen.", "Ingrid", "lives_in", "", "Bergen"),
    # a named person's possessions and traits, in the families that ask about them
    ("Aria's hobby is knitting.", "Aria", "attribute", "hobby", "knitting"),
    ("Xaver's phone is a Pixel.", "Xaver", "attribute", "phone", "Pixel"),
    ("Aria's native language is Finnish.", "Aria", "speaks", "", "Finnish"),
    ("Tom's birthday is in March.", "Tom", "birth_month", "", "March"),
    ("Aria studied at Uppsala University.", "Aria", "studied_at", "", "Uppsala University"),
    ("Dana studies medicine.", "Dana", "studies", "", "medicine"),
    ("Aria speaks Portuguese.", "Aria", "speaks", "", "Portuguese"),
    ("Dana is a nurse.", "Dana", "works_as", "", "nurse"),
    ("My friend Dana is a beekeeper.", "Dana", "works_as", "", "beekeeper"),
    # more ways of saying the user's own facts
    ("I'm a dentist.", "user", "works_as", "", "dentist"),
    ("I speak Portuguese.", "user", "speaks", "", "Portuguese"),
    ("I have an allergy to penicillin.", "user", "allergic_to", "", "penicillin"),
    ("I'm based in Porto.", "user", "lives_in", "", "Porto"),
    ("I'm employed at Siemens.", "user", "works_at", "", "Siemens"),
    ("I work in a bakery called Crumbs.", "user", "works_at", "", "Crumbs"),
    ("I went to Leiden University.", "user", "studied_at", "", "Leiden University"),
    ("My dog answers to Bolt.", "user", "name", "dog", "Bolt"),
    ("My parrot's called Kiwi.", "user", "name", "parrot", "Kiwi"),
    ("My birthday is on May 3rd.", "user", "attribute", "birthday", "May 3rd"),
    ("I was born in 1990.", "user", "attribute", "birth year", "1990"),
    ("My blood type is O negative.", "user", "attribute", "blood type", "O negative"),
    ("I'm a software engineer.", "user", "works_as", "", "software engineer"),
    ("Dana is a flight attendant.", "Dana", "works_as", "", "flight attendant"),
    ("I grew up in Ghent.", "user", "grew_up_in", "", "Ghent"),
    ("My hometown is Ghent.", "user", "grew_up_in", "", "Ghent"),
    ("My cousin Liv grew up in Cork.", "Liv", "grew_up_in", "", "Cork"),
    ("I studied chemistry.", "user", "majored_in", "", "chemistry"),
    ("I go to Iron Temple gym.", "user", "attribute", "gym", "Iron Temple"),
    ("I live on Elm Street.", "user", "attribute", "street", "Elm Street"),
    ("I'm 34.", "user", "age", "", "34"),
    ("Aria is 34 years old.", "Aria", "age", "", "34"),
    ("Aria is originally from Ghent.", "Aria", "born_in", "", "Ghent"),
    ("Aria, my friend, lives in Ghent.", "Aria", "lives_in", "", "Ghent"),
    ("I've been living in Oslo for five years.", "user", "lives_in", "", "Oslo"),
    ("I drive a red Tesla.", "user", "drives", "", "red Tesla"),
    ("I have a peanut allergy.", "user", "allergic_to", "", "peanut"),
    ("I'm fluent in French.", "user", "speaks", "", "French"),
    ("I speak fluent French.", "user", "speaks", "", "French"),
    ("I'm a student at Oxford.", "user", "studied_at", "", "Oxford"),
    ("I'm married to Sam.", "user", "married_to", "", "Sam"),
    ("Ben is married to Mia.", "Ben", "married_to", "", "Mia"),
    # a value that carries a describing word is still a value
    ("My phone is a new iPhone.", "user", "attribute", "phone", "new iPhone"),
    ("My favourite colour is olive.", "user", "favorite", "color", "olive"),
    ("My lucky number is five.", "user", "attribute", "lucky number", "five"),
    ("I live in the city of Bergen.", "user", "lives_in", "", "Bergen"),
    # pets by kind, sports, pastimes, and an adverb between subject and verb
    ("Xenia has a pet iguana.", "Xenia", "has_pet", "", "iguana"),
    ("I have a ferret.", "user", "has_pet", "", "ferret"),
    ("My pet is a gecko.", "user", "has_pet", "", "gecko"),
    ("I play tennis on weekends.", "user", "sport", "", "tennis"),
    ("Aria plays volleyball.", "Aria", "sport", "", "volleyball"),
    ("I love knitting.", "user", "attribute", "hobby", "knitting"),
    ("Viktor supports Ajax.", "Viktor", "supports", "", "Ajax"),
    ("Freya is 35.", "Freya", "age", "", "35"),
    ("I come from Nairobi.", "user", "born_in", "", "Nairobi"),
    ("Kwame comes from Accra.", "Kwame", "born_in", "", "Accra"),
    ("I currently live in Utrecht.", "user", "lives_in", "", "Utrecht"),
    ("Aria now works at Intel.", "Aria", "works_at", "", "Intel"),
    ("I teach at Hillcrest Elementary.", "user", "works_at", "", "Hillcrest Elementary"),
    ("I speak Dutch natively.", "user", "speaks", "", "Dutch"),
    # a relative the user does not name is the subject "my sister"
    ("My sister lives in Lyon.", "my sister", "lives_in", "", "Lyon"),
    ("My mom is allergic to cats.", "my mother", "allergic_to", "", "cats"),
    ("My sister is a doctor.", "my sister", "works_as", "", "doctor"),
    ("My husband's favorite color is blue.", "my husband", "favorite", "color", "blue"),
    ("My son's school is Westfield Primary.", "my son", "attribute", "school", "Westfield Primary"),
    ("My sister Delphine lives in Lyon.", "Delphine", "lives_in", "", "Lyon"),
    # a request to remember, inverted favourites, "has always been", appositions, typos
    ("Remember that my dog's name is Pepper.", "user", "name", "dog", "Pepper"),
    ("Please remember: I live in Valparaíso.", "user", "lives_in", "", "Valparaíso"),
    ("Don't forget that Lena lives in Zurich.", "Lena", "lives_in", "", "Zurich"),
    ("Green is my favourite colour.", "user", "favorite", "color", "Green"),
    ("Paella is Mateo's favorite food.", "Mateo", "favorite", "food", "Paella"),
    ("My favorite food has always been ramen.", "user", "favorite", "food", "ramen"),
    ("I've got a dog called Brutus.", "user", "name", "dog", "Brutus"),
    ("my brothers name is Teodor", "user", "name", "brother", "Teodor"),
    ("The name of my dog is Lupo.", "user", "name", "dog", "Lupo"),
    ("My dog, Biscuit, is a corgi.", "user", "name", "dog", "Biscuit"),
    ("My cat Pixel is grey.", "user", "name", "cat", "Pixel"),
    ("My sister, Hannah, lives in Leeds.", "Hannah", "lives_in", "", "Leeds"),
    ("I'm currently living in Seoul.", "user", "lives_in", "", "Seoul"),
    ("Lena is currently living in Bern.", "Lena", "lives_in", "", "Bern"),
    ("I'm from Montevideo originally.", "user", "born_in", "", "Montevideo"),
    ("My son goes to Riverside Elementary.", "my son", "attribute", "school", "Riverside Elementary"),
    ("Ravi attends Imperial College.", "Ravi", "studied_at", "", "Imperial College"),
    # a living, a car by its make, a player of an instrument or a sport, a trailing company
    ("Nadia earns a living as a welder.", "Nadia", "works_as", "", "welder"),
    ("I'm employed as a paralegal.", "user", "works_as", "", "paralegal"),
    ("Bruno owns a Peugeot 208.", "Bruno", "drives", "", "Peugeot 208"),
    ("We have a silver Kia.", "user", "drives", "", "silver Kia"),
    ("I drive a Ford F-150.", "user", "drives", "", "Ford F-150"),
    ("Ines is a gifted harpist.", "Ines", "plays", "", "harp"),
    ("I'm a keen squash player.", "user", "sport", "", "squash"),
    ("My friend Ola is a jazz saxophone player.", "Ola", "plays", "", "saxophone"),
    ("Omar plays the oud in an orchestra.", "Omar", "plays", "", "oud"),
    ("Lea named her cat Tofu.", "Lea", "name", "cat", "Tofu"),
    ("Kofi lives in Kumasi with his wife.", "Kofi", "lives_in", "", "Kumasi"),
    ("I call Hobart home.", "user", "lives_in", "", "Hobart"),
    ("I'm a teacher at the local primary school.", "user", "works_as", "", "teacher"),
    ("My degree was in physics.", "user", "majored_in", "", "physics"),
    ("I work at a bakery called Crumbs.", "user", "works_at", "", "Crumbs"),
    ("I just adopted a puppy named Ziggy!", "user", "name", "dog", "Ziggy"),
    ("We rescued a cat last month, her name is Pesto.", "user", "name", "cat", "Pesto"),
    ("I live in a tiny hamlet called Zennor.", "user", "lives_in", "", "Zennor"),
    ("I just turned 33.", "user", "age", "", "33"),
    ("I've been working at Philips for a decade.", "user", "works_at", "", "Philips"),
    ("I own a café called Bluebird.", "user", "works_at", "", "Bluebird"),
    ("I'm a lifelong Celtic supporter.", "user", "supports", "", "Celtic"),
    ("I've been playing the harp since school.", "user", "plays", "", "harp"),
    ("Ada is learning the cello.", "Ada", "plays", "", "cello"),
    ("I'm learning to speak Korean.", "user", "studies", "", "Korean"),
    ("Bea plays cello.", "Bea", "plays", "", "cello"),
    ("Ugo plays the flute beautifully.", "Ugo", "plays", "", "flute"),
    ("Mina moved to Quito in 2021.", "Mina", "lives_in", "", "Quito"),
    ("Rui was born and raised in Braga.", "Rui", "born_in", "", "Braga"),
    ("Tove is employed by Ericsson.", "Tove", "works_at", "", "Ericsson"),
    ("Ola studied geology.", "Ola", "majored_in", "", "geology"),
    ("Ade has a shellfish allergy.", "Ade", "allergic_to", "", "shellfish"),
    ("Sami's cat is a tabby called Miso.", "Sami", "name", "cat", "Miso"),
    ("Lars is Greta's brother.", "Greta", "name", "brother", "Lars"),
    ("I married Tomas.", "user", "married_to", "", "Tomas"),
    ("Sven married Ylva.", "Sven", "married_to", "", "Ylva"),
    ("Our house is on Birch Lane.", "user", "attribute", "street", "Birch Lane"),
    # typed the quick way: "im", "fav", "my cats called", an emoji
    ("im a welder", "user", "works_as", "", "welder"),
    ("My friend Ive lives in Split.", "Ive", "lives_in", "", "Split"),
    ("my fave band is Blur", "user", "favorite", "band", "Blur"),
    ("my cats called Biscuit", "user", "name", "cat", "Biscuit"),
    ("my favourite drink is mango lassi 🥭", "user", "favorite", "drink", "mango lassi"),
    # the user's own name: "my name's", and "I'm" + a name after a greeting
    ("My name's Ingrid.", "user", "attribute", "name", "Ingrid"),
    ("Hi, I'm Ravi.", "user", "attribute", "name", "Ravi"),
    ("Hello! I'm Brian, nice to meet you.", "user", "attribute", "name", "Brian"),
])
def test_wordings(message, subject, relation, noun, obj):
    facts = extract(message)
    assert len(facts) == 1, facts
    f = facts[0]
    assert (f.subject, f.relation, f.noun, f.object) == (subject, relation, noun, obj)


@pytest.mark.parametrize("message,facts", [
    ("My sister is called Delphine, she is a nurse.",
     [("user", "name", "Delphine"), ("my sister", "works_as", "nurse")]),
    ("My friend Aria lives in Ghent. She works as a florist.",
     [("Aria", "lives_in", "Ghent"), ("Aria", "works_as", "florist")]),
    ("My brother Tom moved to Oslo and he plays the cello.",
     [("Tom", "lives_in", "Oslo"), ("Tom", "plays", "cello")]),
    ("My wife's name is Mia and she's a pilot.",
     [("user", "name", "Mia"), ("my wife", "works_as", "pilot")]),
    # no one to refer to, or nothing stated about them: the pronoun's clause gives nothing
    ("She is a nurse.", []),
    ("I live in Oslo. She works as a nurse.", [("user", "lives_in", "Oslo")]),
    ("My dog is called Rex, he is a beagle.", [("user", "name", "Rex")]),
    ("My friend Aria lives in Ghent. She isn't a nurse.", [("Aria", "lives_in", "Ghent")]),
    ("My friend Aria lives in Ghent. She might move to Oslo.", [("Aria", "lives_in", "Ghent")]),
    ("Aria said she is moving to Oslo.", []),
])
def test_she_and_he_refer_to_the_person_just_mentioned(message, facts):
    assert [(f.subject, f.relation, f.object) for f in extract(message)] == facts


def test_she_in_the_next_message_is_whom_the_last_one_was_about():
    from sleepllm.extract import person_after

    first = extract("My sister is called Delphine.")
    assert person_after(first) == "my sister"
    got = extract("She works as a nurse.", person_after(first))
    assert [(f.subject, f.relation, f.object) for f in got] == [("my sister", "works_as", "nurse")]
    assert person_after(extract("Tell me a joke.")) is None      # the thread is lost
    assert extract("She works as a nurse.", None) == []
    assert person_after(extract("My friend Aria lives in Ghent.")) == "Aria"
    assert person_after(extract("I live in Oslo."), "Aria") == "Aria"


def test_two_facts_in_one_message():
    facts = extract("My dog's name is Rex. I live in Oslo.")
    assert [f.object for f in facts] == ["Rex", "Oslo"]
    facts = extract("I live in Oslo and I work as a nurse.")
    assert [(f.relation, f.object) for f in facts] == [("lives_in", "Oslo"), ("works_as", "nurse")]


def test_a_sentence_that_says_two_things_gives_both():
    facts = extract("I studied law at Leiden University.")
    assert sorted((f.relation, f.object) for f in facts) == [("majored_in", "law"),
                                                              ("studied_at", "Leiden University")]
    for msg in ["I work at Google as an engineer.", "I'm an engineer at Google.",
                "I work as an engineer at Google."]:
        facts = extract(msg)
        assert sorted((f.relation, f.object) for f in facts) == [("works_as", "engineer"),
                                                                  ("works_at", "Google")], msg
    facts = extract("My friend Kemal is a chef at Noma.")
    assert sorted((f.subject, f.relation, f.object) for f in facts) == [
        ("Kemal", "works_as", "chef"), ("Kemal", "works_at", "Noma")]
    facts = extract("Nadia works as a nurse for Médecins Sans Frontières.")
    assert sorted((f.subject, f.relation, f.object) for f in facts) == [
        ("Nadia", "works_as", "nurse"), ("Nadia", "works_at", "Médecins Sans Frontières")]
    facts = extract("I'm doing a master's in geology at Uppsala University.")
    assert sorted((f.relation, f.object) for f in facts) == [("studied_at", "Uppsala University"),
                                                              ("studies", "geology")]


def test_a_degree_and_what_one_is_learning_now_do_not_supersede_each_other():
    degree = [extract(m)[0] for m in ["My degree is in linguistics.", "I majored in history.",
                                      "I studied chemistry."]]
    now = [extract(m)[0] for m in ["I am learning Finnish.", "I'm studying law."]]
    assert {f.relation for f in degree} == {"majored_in"}
    assert {f.relation for f in now} == {"studies"}
    assert not {f.key() for f in degree} & {f.key() for f in now}


def test_a_favourite_team_is_the_team_one_supports():
    for msg in ["My favorite team is Ajax.", "My favourite football team is Ajax."]:
        assert [(f.relation, f.object) for f in extract(msg)] == [("supports", "Ajax")], msg


def test_the_users_own_verb_for_a_thing_is_kept_and_worded():
    """ "I use a Nokia phone": the user said how the phone is theirs, so the memory is also
    worded with that verb ("The phone I use is a"; "What phone do I use?" among the questions
    the v* search trains); a statement without one ("My phone is a Nokia") has no such
    wordings. The verb is not part of what the fact is about: "My phone is a Pixel" supersedes
    it. A ledger written before the verb loads."""
    from sleepllm.relations import Fact, others_wordings, questions, variants, wordings

    told = {"I use a Nokia phone.": "use a", "I train at Steelhaus gym.": "train at",
            "We go to the gym at Iron Temple.": "go to", "I live on Elm Street.": "live on",
            "My phone is a Nokia.": ""}
    for msg, verb in told.items():
        (fact,) = extract(msg)
        assert (fact.relation, fact.verb) == ("attribute", verb), msg
        assert Fact.from_dict(fact.to_dict()) == fact
        texts = [t for t, _ in variants(fact)]
        if verb:
            said = verb.removesuffix(" a")        # the article goes before the object
            assert f"The {fact.noun} I {said} is{verb[len(said):]}" in texts
            assert f"What {fact.noun} do I {said}?" in [q for q, _ in questions(fact)[:3]]
            assert not any(verb in t for t in wordings(Fact(**fact.to_dict() | {"verb": ""}))[0])
        else:
            assert not any(" use" in t for t in texts)
    (phone,) = extract("I use a Nokia phone.")
    assert phone.key() == extract("My phone is a Pixel.")[0].key()
    assert "verb" not in extract("My phone is a Pixel.")[0].to_dict()   # the old ledger's form
    assert "The phone she uses is a" in others_wordings(phone)[0]   # said of someone else: shut
    assert extract("I love playing badminton.")[0].verb == ""       # other families: none


def test_a_habit_is_said_asked_and_answered_with_its_own_verb():
    """ "I collect stamps", "I ride a Ducati", "Omar keeps bees": relations the families above
    lack, said with a verb of habit. Each is its own fact (a second one with the same verb
    does not supersede the first: Fact.key has the object); said of someone else it is shut;
    a thing that names nothing ("I keep forgetting things", "I eat a lot") is not one."""
    from sleepllm.relations import anchors, cues, describe, others_wordings, questions

    told = {"I collect stamps.": ("user", "collect", "stamps", "I collect",
                                  ("What do I collect?", "You collect")),
            "I ride a Ducati.": ("user", "ride", "Ducati", "I ride a",
                                 ("What do I ride?", "You ride a")),
            "I listen to the radio every morning.": ("user", "listen to", "radio",
                                                     "I listen to the",
                                                     ("What do I listen to?", "You listen to the")),
            "My friend Omar keeps bees.": ("Omar", "keep", "bees", "Omar keeps",
                                           ("What does Omar keep?", "Omar keeps")),
            "Lorcan owns a Labrador.": ("Lorcan", "own", "Labrador", "Lorcan owns a",
                                        ("What does Lorcan own?", "Lorcan owns a")),
            "My sister volunteers at the animal shelter.": (
                "my sister", "volunteer at", "animal shelter", "My sister volunteers at the",
                ("Where does my sister volunteer?", "Your sister volunteers at the")),
            "I shop at Lidl.": ("user", "shop at", "Lidl", "I shop at",
                                ("Where do I shop?", "You shop at")),
            "I do yoga.": ("user", "practice", "yoga", "I practice",
                           ("What do I practice?", "You practice")),
            "My brother teaches maths.": ("my brother", "teach", "maths", "My brother teaches",
                                          ("What does my brother teach?",
                                           "Your brother teaches"))}
    for msg, (subject, verb, obj, cue, qa) in told.items():
        (fact,) = extract(msg)
        assert (fact.subject, fact.relation, fact.noun, fact.object) == \
            (subject, "habit", verb, obj), msg
        assert cues(fact)[0] == cue and questions(fact)[0] == qa, msg
        assert describe(fact).endswith(f"→ {obj}")
    stamps, coins = extract("I collect stamps.")[0], extract("I collect coins.")[0]
    assert stamps.key() != coins.key() and stamps.key() == extract("I collect stamps!")[0].key()
    assert "She collects" in others_wordings(stamps)[0]
    assert "What does Tom keep?" in others_wordings(extract("Omar keeps bees.")[0])[1]
    # keyed at the verb's first word: a question may end before its preposition
    assert anchors(extract("I shop at Lidl.")[0], unit=True) == ["shop"]
    assert anchors(extract("Ana volunteers at the zoo.")[0], unit=True) == \
        ["Ana volunteers", "Ana volunteer"]
    assert extract("I own a Tesla.")[0].relation == "drives"     # a family says it better
    for msg in ["I keep forgetting things.", "I eat a lot.", "I read it yesterday.",
                "I follow you.", "I keep in touch with Anna.", "I drink too much.",
                "I do my best.", "I do the dishes."]:
        assert extract(msg) == [], msg


def test_every_wording_of_a_fact_is_answered_in_the_words_it_asks_with():
    """relations.every_wording (what sleep's rehearsal asks and trains): every cue and question
    the app knows, once each; a statement cue has no answer's beginning (the object follows),
    a question has its family's answer in the noun it says ("What's my manager called?" →
    "Your manager is called", a further wording → the synonym's first answer), a further
    wording without its own the first question's ("What is my occupation?" → "You work as a")."""
    from sleepllm.relations import Fact, cues, every_wording, questions, wordings

    boss = Fact("user", "name", "Madame Okonkwo", "boss")
    got = dict(every_wording(boss))
    assert len(got) == len(every_wording(boss)) == sum(map(len, wordings(boss)))
    assert all(got[c] is None for c in cues(boss))
    assert got["What's my manager called?"] == "Your manager is called"
    assert got["What did I name my manager?"] == "Your manager's name is"
    assert got["What did I name my boss?"] == "Your boss's name is"
    job = dict(every_wording(Fact("user", "works_as", "glassblower")))
    assert job["What is my occupation?"] == "You work as a" and job["My job is"] is None
    aria = Fact("Aria", "drives", "Mazda")
    assert every_wording(aria) == [(c, None) for c in cues(aria)] + questions(aria)


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


@pytest.mark.skipif(not DEV.exists(), reason="shared eval set not present")
def test_dev_cues_and_questions_store_nothing():
    """The dev set's unfinished cues ("My doctor is Dr.") and its questions are not facts."""
    for line in DEV.read_text().splitlines():
        f = json.loads(line)
        for text in [f["prompt"], *f["questions"], *f["paraphrases"], *f["neighbors"]]:
            assert extract(text) == [], text


def test_other_wordings_extracted_with_right_subject_and_object():
    """Every statement gives the fact it states (a statement that says two things, both); the
    stored object may keep a describing word ("a green Skoda")."""
    import re

    for line in [l for path in OTHER for l in path.read_text().splitlines()]:
        f = json.loads(line)
        named = re.compile(r"(?:^|\w+ )" + re.escape(f["object"]) + "$")
        got = [g for g in extract(f["statement"]) if named.fullmatch(g.object)]
        assert len(got) == 1, (f["statement"], extract(f["statement"]))
        assert got[0].subject == ("user" if f["kind"] == "self" else f["subject"]), got
