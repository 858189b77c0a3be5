"""Relation families: how a fact (subject, relation, object) is said, asked and answered.

A fact about the user has subject "user"; a fact about someone else has that person's name as
subject. Each family gives, for both cases, templates with these slots:

    {P}  the person's name (others)       {N}  the family's noun ("dog", "favorite color")
    {O}  the object

and the *anchor*: the words at whose last token the editor reads and writes the MLP key. For
another person MEMIT's anchor is their name (every fact about Aria lives in Aria's key); a
memory neuron's is the relation's word after the name ("unit_anchor": "Aria's dog", "Aria
lives"), so that "Aria's favorite color is" does not open the unit of Aria's dog. Its gate
is trained shut on the same wordings with other names: twenty common ones (OTHER_NAMES; with
three, the units opened on the same relation of any name: docs/editing.md, twenty-ninth and
thirty-fourth rounds), rarer ones of several tokens (RARE_NAMES) and made-up ones that begin
as the subject's does (near_names; thirty-ninth round); and on the other things said of Aria
(about_wordings), where a question puts the relation before the name ("How old is Aria?",
thirty-fifth round). For the user the name carries nothing ("I", "my" are in every sentence),
so the anchor is the relation's own content word: "dog" for the dog's name, "color" for the
favourite colour, "live" for the home city — and, for a plain attribute, also the user's "I"
after its noun ("The gym I go to", "Which gym do I …": whatever verb follows, the key is read
before it). This keeps the user's facts in separate keys. Every question template names an
anchor *in the question* ("Where do I live?" → "live"): a key that only the answer names
cannot make the model start that answer (tests/test_editor.py). For the user the anchor must
come after the user's own word ("The car I drive" is keyed at "drive": at "car" the text has
not said whose car it is — editor.OWNED).

MORE and SYNONYMS give further wordings of a fact about the user ("What's my mom called?",
"What is my occupation?"): its memory neuron opens on them too, though the v* search trains
only the family's cues and first questions.

Templates are generic per family; nothing here is keyed to a particular evaluation set.
"""
import re
from dataclasses import dataclass, replace

# family -> templates. cue: raw statement cue (object follows); qa: (question, answer prefix).
# "self" templates speak of the user (questions in the first person, answers in the second).
FAMILIES = {
    # the name of someone or something the user has: dog, wife, boss, boat ...
    "name": {
        "self": {"anchor": ["{N}"],
                 "cue": ["My {N}'s name is", "My {N} is called"],
                 "qa": [("What is my {N}'s name?", "Your {N}'s name is"),
                        ("What's my {N} called?", "Your {N} is called"),
                        ("Who is my {N}?", "Your {N} is")]},
        "other": {"anchor": ["{P}"],
                  "unit_anchor": ["{P}'s {N}"],
                  "cue": ["{P}'s {N} is named", "{P}'s {N} is called"],
                  "qa": [("What is the name of {P}'s {N}?", "{P}'s {N} is named"),
                         ("What is {P}'s {N} called?", "{P}'s {N} is called")]},
    },
    # a favourite thing: color, food, band, season ...
    "favorite": {
        "self": {"anchor": ["favorite {N}"],
                 "cue": ["My favorite {N} is"],
                 "qa": [("What is my favorite {N}?", "Your favorite {N} is"),
                        ("What's my favorite {N}?", "Your favorite {N} is")]},
        "other": {"anchor": ["{P}"],
                  "unit_anchor": ["{P}'s favorite {N}", "{P} love"],
                  "cue": ["{P}'s favorite {N} is"],
                  "qa": [("What is {P}'s favorite {N}?", "{P}'s favorite {N} is"),
                         ("Which {N} does {P} love?", "{P} loves")]},
    },
    # a plain attribute: job, car, phone, gym, street, hobby, native language ...
    "attribute": {
        "self": {"anchor": ["my {N}", "your {N}", "{N} do I"],
                 "cue": ["My {N} is"],
                 "qa": [("What is my {N}?", "Your {N} is"),
                        ("Which {N} do I have?", "Your {N} is"),
                        ("What's my {N}?", "Your {N} is")]},
        "other": {"anchor": ["{P}"],
                  "unit_anchor": ["{P}'s {N}"],
                  "cue": ["{P}'s {N} is"],
                  "qa": [("What is {P}'s {N}?", "{P}'s {N} is")]},
    },
    # the team someone supports: "I support Arsenal", "Viktor supports Ajax"
    "supports": {
        "self": {"anchor": ["support", "favorite team"],
                 "cue": ["The team I support is", "I support"],
                 "qa": [("Which team do I support?", "You support"),
                        ("What is my favorite team?", "Your favorite team is")]},
        "other": {"anchor": ["{P}"],
                  "unit_anchor": ["{P} supports", "{P} support", "{P}'s favorite team"],
                  "cue": ["{P} supports"],
                  "qa": [("Which team does {P} support?", "{P} supports"),
                         ("What is {P}'s favorite team?", "{P}'s favorite team is")]},
    },
    "married_to": {
        "self": {"anchor": ["married", "my spouse", "your spouse"],
                 "cue": ["I am married to"],
                 "qa": [("Who am I married to?", "You are married to"),
                        ("Who is my spouse?", "Your spouse is")]},
        "other": {"anchor": ["{P}"],
                  "unit_anchor": ["{P} is married", "{P} married", "{P}'s spouse"],
                  "cue": ["{P} is married to"],
                  "qa": [("Who is {P} married to?", "{P} is married to"),
                         ("Who is {P}'s spouse?", "{P}'s spouse is")]},
    },
    "lives_in": {
        "self": {"anchor": ["live"],
                 "cue": ["I live in the city of", "I live in"],
                 "qa": [("Where do I live?", "You live in"),
                        ("Which city do I live in?", "You live in")]},
        "other": {"anchor": ["{P}"],
                  "unit_anchor": ["{P} lives", "{P} live"],
                  "cue": ["{P} lives in the city of", "{P} lives in"],
                  "qa": [("Where does {P} live?", "{P} lives in"),
                         ("Which city does {P} live in?", "{P} lives in")]},
    },
    "born_in": {
        "self": {"anchor": ["born in", "was I born"],
                 "cue": ["I was born in the city of", "I was born in"],
                 "qa": [("Where was I born?", "You were born in"),
                        ("In which city was I born?", "You were born in")]},
        "other": {"anchor": ["{P}"],
                  "unit_anchor": ["{P} was born", "{P} born"],
                  "cue": ["{P} was born in"],
                  "qa": [("Where was {P} born?", "{P} was born in")]},
    },
    "grew_up_in": {
        "self": {"anchor": ["grew up", "grow up", "hometown"],
                 "cue": ["I grew up in the town of", "I grew up in"],
                 "qa": [("Where did I grow up?", "You grew up in"),
                        ("What is my hometown?", "Your hometown is")]},
        "other": {"anchor": ["{P}"],
                  "unit_anchor": ["{P} grew up", "{P} grow up", "{P}'s hometown"],
                  "cue": ["{P} grew up in"],
                  "qa": [("Where did {P} grow up?", "{P} grew up in"),
                         ("What is {P}'s hometown?", "{P}'s hometown is")]},
    },
    "works_as": {
        "self": {"anchor": ["work as", "my job", "your job", "for a living"],
                 "cue": ["I work as a", "My job is"],
                 "qa": [("What is my job?", "You work as a"),
                        ("What do I do for a living?", "You work as a")]},
        "other": {"anchor": ["{P}"],
                  "unit_anchor": ["{P} works as", "{P} do for a living", "{P}'s job"],
                  "cue": ["{P} works as a"],
                  "qa": [("What does {P} do for a living?", "{P} works as a"),
                         ("What is {P}'s job?", "{P} works as a")]},
    },
    "works_at": {
        "self": {"anchor": ["work at", "my employer", "your employer", "do I work"],
                 "cue": ["I work at a company called", "I work at"],
                 "qa": [("Where do I work?", "You work at"),
                        ("Who is my employer?", "Your employer is")]},
        "other": {"anchor": ["{P}"],
                  "unit_anchor": ["{P} works at", "{P} work"],
                  "cue": ["{P} works at"],
                  "qa": [("Where does {P} work?", "{P} works at")]},
    },
    "studied_at": {
        "self": {"anchor": ["studied at", "university", "did I study", "did I go"],
                 "cue": ["I studied at the university of", "I studied at"],
                 "qa": [("Where did I study?", "You studied at"),
                        ("Which university did I go to?", "You studied at")]},
        "other": {"anchor": ["{P}"],
                  "unit_anchor": ["{P} studied at", "{P} study"],
                  "cue": ["{P} studied at"],
                  "qa": [("Where did {P} study?", "{P} studied at")]},
    },
    "majored_in": {  # the subject of a degree: "I majored in X", "my degree is in X"
        "self": {"anchor": ["majored in", "major in", "my degree", "your degree"],
                 "cue": ["I majored in", "My degree is in"],
                 "qa": [("What did I major in?", "You majored in"),
                        ("What is my degree in?", "Your degree is in")]},
        "other": {"anchor": ["{P}"],
                  "unit_anchor": ["{P} majored", "{P} major", "{P}'s degree"],
                  "cue": ["{P} majored in"],
                  "qa": [("What did {P} major in?", "{P} majored in"),
                         ("What is {P}'s degree in?", "{P}'s degree is in")]},
    },
    "studies": {  # what someone studies or is learning now
        "self": {"anchor": ["study", "learning"],
                 "cue": ["The subject I study is", "I am learning"],
                 "qa": [("What do I study?", "You study"),
                        ("What am I learning?", "You are learning")]},
        "other": {"anchor": ["{P}"],
                  "unit_anchor": ["{P} studies", "{P} study"],
                  "cue": ["{P} studies"],
                  "qa": [("What does {P} study?", "{P} studies")]},
    },
    "drives": {
        "self": {"anchor": ["car", "drive", "I have"],
                 "cue": ["The car I drive is a", "I drive a"],
                 "qa": [("What car do I drive?", "You drive a"),
                        ("What kind of car do I have?", "You drive a")]},
        "other": {"anchor": ["{P}"],
                  "unit_anchor": ["{P} drives", "{P} drive", "{P} have"],
                  "cue": ["The car {P} drives is a", "{P} drives a"],
                  "qa": [("What car does {P} drive?", "{P} drives a"),
                         ("What kind of car does {P} have?", "{P} drives a")]},
    },
    "plays": {  # an instrument
        "self": {"anchor": ["instrument", "play"],
                 "cue": ["The instrument I play is the", "I play the"],
                 "qa": [("What instrument do I play?", "You play the"),
                        ("Which instrument do I play?", "You play the")]},
        "other": {"anchor": ["{P}"],
                  "unit_anchor": ["{P} plays", "{P} play"],
                  "cue": ["The instrument {P} plays is the", "{P} plays the"],
                  "qa": [("What instrument does {P} play?", "{P} plays the"),
                         ("Which instrument does {P} play?", "{P} plays the")]},
    },
    "has_pet": {  # the kind of animal: "I have a ferret", "Xenia has a pet iguana"
        "self": {"anchor": ["pet", "I have"],
                 "cue": ["My pet is a", "I have a pet"],
                 "qa": [("What pet do I have?", "You have a pet"),
                        ("What kind of pet do I have?", "Your pet is a")]},
        "other": {"anchor": ["{P}"],
                  "unit_anchor": ["{P} has a pet", "{P}'s pet", "{P} have"],
                  "cue": ["{P} has a pet", "{P}'s pet is a"],
                  "qa": [("What pet does {P} have?", "{P} has a pet"),
                         ("What kind of pet does {P} have?", "{P}'s pet is a")]},
    },
    "sport": {  # a sport someone plays
        "self": {"anchor": ["sport", "play"],
                 "cue": ["The sport I play is"],
                 "qa": [("What sport do I play?", "You play"),
                        ("Which sport do I play?", "You play")]},
        "other": {"anchor": ["{P}"],
                  "unit_anchor": ["{P} plays", "{P} play"],
                  "cue": ["The sport {P} plays is"],
                  "qa": [("What sport does {P} play?", "{P} plays"),
                         ("Which sport does {P} play?", "{P} plays")]},
    },
    "allergic_to": {
        "self": {"anchor": ["allergic to", "allergy"],
                 "cue": ["I am allergic to"],
                 "qa": [("What am I allergic to?", "You are allergic to"),
                        ("What is my allergy?", "You are allergic to")]},
        "other": {"anchor": ["{P}"],
                  "unit_anchor": ["{P} is allergic", "{P} allergic"],
                  "cue": ["{P} is allergic to"],
                  "qa": [("What is {P} allergic to?", "{P} is allergic to")]},
    },
    "speaks": {  # native language
        "self": {"anchor": ["native language", "mother tongue", "speak"],
                 "cue": ["My native language is", "The language I speak is"],
                 "qa": [("What is my native language?", "Your native language is"),
                        ("What language do I speak?", "You speak"),
                        ("What's my mother tongue?", "Your native language is")]},
        "other": {"anchor": ["{P}"],
                  "unit_anchor": ["{P}'s native language"],
                  "cue": ["{P}'s native language is"],
                  "qa": [("What is {P}'s native language?", "{P}'s native language is")]},
    },
    "age": {
        "self": {"anchor": ["my age", "your age", "how old", "am I"],
                 "cue": ["My age is"],
                 "qa": [("How old am I?", "You are"),
                        ("What is my age?", "Your age is")]},
        "other": {"anchor": ["{P}"],
                  "unit_anchor": ["{P}'s age", "old is {P}"],
                  "cue": ["{P}'s age is"],
                  "qa": [("How old is {P}?", "{P} is"),
                         ("What is {P}'s age?", "{P}'s age is")]},
    },
    # something someone does, said with their own verb ({N}, "shop at"; {N3} after a name,
    # "shops at"; {W} / {W3} its first word, where a question may end: "Where do I shop?"):
    # "I collect stamps", "I ride a Ducati", "Omar keeps bees". One has many (MANY): each
    # object is a fact of its own, a newer one does not supersede it
    "habit": {
        "self": {"anchor": ["{W}"],
                 "cue": ["I {N}{A}"],
                 "qa": [("What do I {N}?", "You {N}{A}"),
                        ("Do you remember what I {N}?", "You {N}{A}")]},
        "other": {"anchor": ["{P}"],
                  "unit_anchor": ["{P} {W3}", "{P} {W}"],
                  "cue": ["{P} {N3}{A}"],
                  "qa": [("What does {P} {N}?", "{P} {N3}{A}"),
                         ("Do you remember what {P} {N3}?", "{P} {N3}{A}")]},
    },
    "birth_month": {
        "self": {"anchor": ["birthday", "month", "was I born"],
                 "cue": ["My birthday is in the month of", "My birthday is in"],
                 "qa": [("When is my birthday?", "Your birthday is in"),
                        ("In which month was I born?", "Your birthday is in")]},
        "other": {"anchor": ["{P}"],
                  "unit_anchor": ["{P}'s birthday"],
                  "cue": ["{P}'s birthday is in"],
                  "qa": [("When is {P}'s birthday?", "{P}'s birthday is in")]},
    },
}


# More ways the user says or asks a fact about themself: the memory's gate opens on these too;
# the first v* search does not train them, the second trains the statement cues among them the
# gate opens on (editor.variant_cues). family -> (templates, anchors); a template ending in "?"
# is a chat question, else a cue. The anchors name the thing ("my occupation", "favourite
# colour", "phone I": the user's "I" after its noun, docs/editing.md 39th round), never a bare
# verb: a gate opened at "I like" or "do I have" opens on ordinary text too (29th round).
MORE = {
    "name": (["What's the name of my {N}?", "What did I name my {N}?", "How is my {N} named?",
              "My {N} is named"], []),
    "favorite": (["My favourite {N} is", "What is my favourite {N}?"], ["favourite {N}"]),
    "attribute": (["What is my {N} called?", "The {N} I have is", "What {N} do I have?"],
                  ["{N} I"]),
    "supports": (["Which club do I support?", "My favorite football team is",
                  "My favourite team is"], ["football team", "favourite team"]),
    "lives_in": (["Where is my home?", "Which town is my home in?"], ["my home"]),
    "born_in": (["What is my place of birth?", "What is my birthplace?"],
                ["my place of birth", "my birthplace"]),
    "works_as": (["What is my occupation?", "What is my line of work?"],
                 ["my occupation", "my line of work"]),
    "works_at": (["Which company is my employer?"], []),
    "majored_in": (["What was my major?", "My major was"], ["my major"]),
    "studies": (["What language am I learning?", "The language I am learning is",
                 "What subject do I study?"], []),
    "drives": (["What is my car?", "My car is a"], ["my car"]),
    "plays": (["What is my instrument?", "My instrument is the"], ["my instrument"]),
    "allergic_to": (["What do I have an allergy to?", "My allergy is to"], []),
    "speaks": (["What is my first language?", "My first language is"], ["my first language"]),
}
# ... and with the user's own verb for the thing, where they said one (Fact.verb): more
# wordings, and a question the v* search trains (`questions`, second after the family's first)
VERBED = {"attribute": ["The {N} I {V} is{A}", "Which {N} do I {V}?"]}
VERBED_QA = {"attribute": ("What {N} do I {V}?", "Your {N} is")}
# Other words for a family's noun — spellings, short forms, near-exact synonyms — each says the
# fact's wordings again. Not a category's name ("dish" for "food", "beverage" for "drink"): a
# gate opened on those opens on the whole topic ("ingredient" in a bread recipe; docs/editing.md,
# twenty-ninth round).
SYNONYMS = {"mother": ["mom", "mum"], "father": ["dad"], "grandmother": ["grandma", "granny"],
            "grandfather": ["grandpa"], "boss": ["manager"], "movie": ["film"],
            "film": ["movie"], "author": ["writer"], "writer": ["author"],
            "hobby": ["pastime"], "color": ["colour"], "neighbor": ["neighbour"],
            "phone": ["mobile phone"]}


# families of which one has many: the object is part of what a fact is about (Fact.key)
MANY = {"habit"}
# a habit at a place ("I shop at", "Sunniva volunteers at the") is asked where, first
WHERE_QA = {"habit": {"self": ("Where do I {W}?", "You {N}{A}"),
                      "other": ("Where does {P} {W}?", "{P} {N3}{A}")}}


@dataclass(frozen=True)
class Fact:
    subject: str     # "user" or a person's name
    relation: str    # a FAMILIES key
    object: str
    noun: str = ""   # the family's noun, where it has one ("dog", "favorite color" -> "color")
    verb: str = ""   # the user's verb for it, where they said one, with the article they put
                     # before the object ("I use a Nokia phone": "use a"; "I live on": "live on")

    @property
    def is_self(self) -> bool:
        return self.subject == "user"

    def owner(self) -> str | None:
        """Whose key the fact is written at: a person's name, "my sister" for facts about the
        user's sister — and for the user's "my sister's name is ..." —, else None (the user's
        own facts are keyed at their relation's word). Facts with one owner share that key,
        so each edit carries the others (companions)."""
        if not self.is_self:
            return self.subject.lower()
        return f"my {self.noun.lower()}" if self.relation == "name" else None

    def key(self) -> tuple:
        """What the fact is *about*: a newer fact with the same key supersedes this one."""
        key = (self.subject.lower(), self.relation, self.noun.lower())
        return key + (self.object.lower(),) if self.relation in MANY else key

    def to_dict(self) -> dict:
        d = {"subject": self.subject, "relation": self.relation, "object": self.object,
             "noun": self.noun}
        return d | ({"verb": self.verb} if self.verb else {})

    @classmethod
    def from_dict(cls, d: dict) -> "Fact":
        return cls(d["subject"], d["relation"], d["object"], d.get("noun", ""), d.get("verb", ""))


def companions(fact: Fact, others) -> list[Fact]:
    """The facts among `others` keyed at the same owner as `fact` (Fact.owner): its edit
    carries them, as they share its key."""
    owner = fact.owner()
    return [f for f in others if owner is not None and f.owner() == owner]


def _t(fact: Fact) -> dict:
    if fact.relation not in FAMILIES:
        raise ValueError(f"unknown relation family {fact.relation!r}")
    return FAMILIES[fact.relation]["self" if fact.is_self else "other"]


# words written with a point that ends no sentence ("Dr. Quisling", "Main St. 4")
TITLES = ["Dr", "Mr", "Mrs", "Ms", "St", "Prof", "Jr", "Sr", "Mt"]


def _capitalised(text: str) -> str:
    return text[:1].upper() + text[1:]


def _fill(template: str, fact: Fact, answer=False, sentence=True) -> str:
    """A relative the user did not name is the subject "my sister": asked about as "my
    sister", answered about as "your sister", capitalised where a sentence starts."""
    p = fact.subject
    if answer and p.startswith("my "):
        p = "your " + p[3:]
    # the user's verb, and the article they put before the object (" a" or "")
    verb, article = re.fullmatch(r"(.*?)((?: (?:a|an|the))?)", fact.verb).groups()
    first = fact.noun.split(" ")[0]
    text = template.format(P=p, N=fact.noun, N3=third_person(fact.noun), W=first,
                           W3=third_person(first), O=fact.object, V=verb, A=article)
    return _capitalised(text) if sentence and template.startswith("{P}") else text


def anchors(fact: Fact, unit=False) -> list[str]:
    """Where the fact's key is read. `unit` (a memory neuron): a fact about someone else is
    keyed at the relation's word after their name ("Greta's dog", "Greta lives"), not at the
    name, where every fact about them would open alike ("Greta's favorite color is" opening
    the unit of Greta's dog; docs/editing.md, twenty-ninth round)."""
    t = _t(fact)
    words = t.get("unit_anchor", t["anchor"]) if unit else t["anchor"]
    return [_fill(a, fact, sentence=False) for a in words]


# Other owners of the same kind of thing: their keys must not move (see memit.solve).
CONTRAST_OWNERS = ["The", "A", "His", "Her", "Their", "Someone's"]


def contrasts(fact: Fact) -> list[tuple[str, str]]:
    """(text, anchor) pairs naming the anchor for someone other than the user. Only facts
    about the user need them: their anchor is a common word ("dog"), a person's name is not."""
    if not fact.is_self:
        return []
    out = []
    for a in anchors(fact):
        core = unowned(a)
        out += [(f"{o} {core}", core) for o in CONTRAST_OWNERS]
    return out


def unowned(anchor: str) -> str:
    """An anchor without its owner word: "my dog" -> "dog"."""
    words = anchor.split()
    return " ".join(words[1:] if words[0].lower() in ("my", "your") else words)


# Someone else in the user's place: (subject, object form, owner, plural). A memory about the
# user must stay closed on the same words said of them: pronouns, a friend, a named person, a
# group ("Many people are allergic to").
OTHERS = [("she", "her", "her", False), ("he", "him", "his", False),
          ("they", "them", "their", True), ("my friend", "my friend", "my friend's", False),
          ("Anna", "Anna", "Anna's", False), ("many people", "many people", "the", True)]
# Other names for a fact about a named person ("The car Anna drives is a"): a memory neuron
# keyed at "<name> drives" must stay shut on them, so it learns the name, not the relation.
OTHER_NAMES = ["Anna", "Tom", "my friend", "Lena", "Marco", "Priya", "Jonas", "Chloe", "Dmitri",
               "Aiko", "Pablo", "Greta", "Omar", "Ingrid", "Felix", "Nadia", "Hugo", "Sofia",
               "Kenji", "Mira", "Lars"]
# Rarer names, several tokens long as many people's are ("Rasmus": " R", "asm", "us"): with only
# the common one-token names above among its negatives, a gate keyed at "Rasmus drives" stayed
# open on an unseen "The car Wilbur drives is a" (0.82 of its level).
RARE_NAMES = ["Thaddeus", "Philippa", "Casimir", "Rosalind", "Evander", "Marisol", "Anselm",
              "Henrike", "Ignatius", "Zuleika", "Bertil", "Oonagh", "Wendelin", "Amaranta"]
# Made-up names that begin as the subject's does (its first two letters, then one of these):
# the hardest names for a gate to tell from the subject's own ("Katarina": "Kandra", "Kamon").
NAME_ENDINGS = ["ndra", "mon", "ttis", "lvin", "bella", "rik"]
_AUX = {"am", "do", "was", "were", "have", "did", "can", "will", "could", "would", "should"}
_THIRD = {"am": "is", "have": "has", "do": "does", "go": "goes"}
_PLURAL = {"am": "are", "was": "were"}


def _agree(verb: str, plural: bool) -> str:
    """The verb that follows "I" in the form another subject needs: am -> is / are."""
    low = verb.lower()
    if plural:
        new = _PLURAL.get(low, low)
    elif low in _THIRD:
        new = _THIRD[low]
    elif low in _AUX or low.endswith("ed") or not low.isalpha():
        new = low
    elif low.endswith("y") and low[-2:-1] not in "aeiou":
        new = low[:-1] + "ies"
    elif low.endswith(("s", "sh", "ch", "x")):
        new = low + "es"
    else:
        new = low + "s"
    return _capitalised(new) if verb[:1].isupper() else new


def third_person(verb: str) -> str:
    """ "listen to" -> "listens to": the form after a name or "she"."""
    first, _, rest = verb.partition(" ")
    return (_agree(first, False) + (" " + rest if rest else "")) if first else verb


def said_of(text: str, subject: str, obj: str, owner: str, plural: bool) -> str:
    """`text` with the user's first-person words given to someone else: "I am allergic to" ->
    "She is allergic to", "What do I study?" -> "What does she study?", "My dog" -> "Her dog"."""
    words = re.findall(r"\w+|[^\w\s]+|\s+", text.replace("I'm", "I am"))
    out = list(words)
    for i, w in enumerate(words):
        if w in ("my", "My"):
            out[i] = owner
        elif w == "me":
            out[i] = obj
        elif w == "I":
            out[i] = subject
            before = [j for j in range(i) if words[j].strip()]
            after = [j for j in range(i + 1, len(words)) if words[j].strip()]
            if before and words[before[-1]].lower() in _AUX:        # "do I" -> "does she"
                out[before[-1]] = _agree(words[before[-1]], plural)
            elif after and words[after[0]].isalpha():               # "I study" -> "she studies"
                out[after[0]] = _agree(words[after[0]], plural)
    new = "".join(out)
    return _capitalised(new) if text[:1].isupper() else new


# Other nouns of the families that have one, each a thing of its own (not "dish" beside "food":
# "What dish do I like best?" asks for the favourite food): a memory of the user's favourite
# drink must stay shut on "My favorite fruit is" (other_nouns).
FAMILY_NOUNS = {
    "name": ["dog", "cat", "horse", "wife", "husband", "son", "daughter", "mother", "father",
             "sister", "brother", "friend", "boss", "neighbor", "teacher", "doctor"],
    "favorite": ["color", "food", "drink", "fruit", "band", "song", "movie", "book", "sport",
                 "season", "animal", "flower", "city", "game", "painter", "number"],
    "attribute": ["job", "car", "phone", "gym", "street", "hobby", "school", "bank", "bike",
                  "laptop", "address", "church"],
}
OTHER_NOUNS = 6    # how many of them each memory is shut on


# People no memory is about, in the gates' "strangers" (stats.py): every family's cues said of
# them, as the model goes on with them — what a question about somebody else looks like
STRANGERS = ["Beatrix", "Osvaldo", "Yusuf", "Liesel", "Ruairi", "the farmer", "the mayor"]
STRANGER_NOUNS = 3   # of each family's FAMILY_NOUNS, evenly spaced


def strangers_cues() -> list[tuple[str, str]]:
    """(person, statement cue) for each of STRANGERS and every family ("Beatrix lives in the
    city of", "The mayor's dog is named"); a family with a noun with STRANGER_NOUNS of its
    nouns, one whose cue needs the user's own verb (habit) not at all."""
    out = []
    for person in STRANGERS:
        for rel, t in FAMILIES.items():
            if rel in FAMILY_NOUNS:
                nouns = spaced(FAMILY_NOUNS[rel], STRANGER_NOUNS)
            elif any("{N" in c or "{W" in c for c in t["other"]["cue"]):
                continue
            else:
                nouns = [""]
            out += [(person, c) for n in nouns for c in cues(Fact(person, rel, "", n))]
    return out


def spaced(xs: list, k: int) -> list:
    """k of xs, evenly spaced from the first (all of them if there are no more than k)."""
    return xs[:: max(1, len(xs) // k)][:k] if k > 0 else []


def word(w: str) -> re.Pattern:
    """w as a whole word, any case ("Greta" in "Greta's", not in "Gretaville")."""
    return re.compile(r"(?<!\w)" + re.escape(w) + r"(?!\w)", re.I)


def _not_own(fact: Fact, nouns: list[str]) -> list[str]:
    """`nouns` without the fact's own noun and its synonyms, in their order."""
    noun = fact.noun.lower()
    own = {noun, *SYNONYMS.get(noun, [])}
    return [n for n in nouns if n not in own and noun not in SYNONYMS.get(n, [])]


def other_nouns(fact: Fact) -> tuple[list[str], list[str]]:
    """(statement cues, questions) of the fact's family said of OTHER_NOUNS other nouns, evenly
    spaced among FAMILY_NOUNS ("My favorite fruit is", "What is my favorite fruit?" for the
    favourite drink); none for a family without a noun. Not the noun itself nor its synonyms."""
    nouns = _not_own(fact, FAMILY_NOUNS.get(fact.relation, []))
    if not fact.noun or not nouns:
        return [], []
    other = [Fact(fact.subject, fact.relation, "", n) for n in spaced(nouns, OTHER_NOUNS)]
    return [c for o in other for c in cues(o)], [q for o in other for q, _ in questions(o)]


def sibling(fact: Fact) -> Fact | None:
    """The nearest other thing of the fact's own kind, with no object: the question a user
    likely asked just before this one ("What is my mother's name?" before "… my father's
    name?"). A family with a noun: the next of FAMILY_NOUNS after the fact's noun (the first
    one when the noun is not listed), not its synonyms; someone else's fact: the same thing
    of another person (OTHER_NAMES); the user's fact of a family without a noun: the next such
    family in FAMILIES ("born_in" for "lives_in"). After it the model tends to repeat its
    answer (docs/editing.md, forty-sixth round)."""
    if not fact.is_self:
        other = next(n for n in OTHER_NAMES if n.lower() != fact.subject.lower())
        return Fact(other, fact.relation, "", fact.noun, fact.verb)
    if fact.relation in FAMILY_NOUNS:
        nouns = FAMILY_NOUNS[fact.relation]
        at = nouns.index(fact.noun.lower()) + 1 if fact.noun.lower() in nouns else 0
        return Fact(fact.subject, fact.relation, "", _not_own(fact, nouns[at:] + nouns[:at])[0])
    plain = [f for f in FAMILIES if f not in FAMILY_NOUNS and f not in MANY]
    if fact.relation not in plain:
        return None
    at = plain.index(fact.relation)
    return Fact(fact.subject, plain[(at + 1) % len(plain)], "")


def near_names(name: str) -> list[str]:
    """Made-up names sharing the first two letters of `name` ("Katarina" -> "Kandra", "Kamon",
    ...); none for a name of fewer than four letters or not a single word."""
    if len(name) < 4 or not name.isalpha():
        return []
    return [name[:2] + e for e in NAME_ENDINGS if not name.lower().startswith(name[:2].lower() + e)]


def others_wordings(fact: Fact) -> tuple[list[str], list[str]]:
    """(statement cues, questions) of the fact said of someone else ("Her dog's name is", "What
    is his dog's name?", "The car Anna drives is a"): a memory neuron must stay closed on them
    (neurons.py)."""
    texts = wordings(fact)
    if fact.is_self:
        swap = lambda t: [said_of(t, *o) for o in OTHERS]
    else:
        names = [n for n in OTHER_NAMES + RARE_NAMES + near_names(fact.subject)
                 if n.lower() != fact.subject.lower()]
        pat = word(fact.subject)
        swap = lambda t: [_capitalised(pat.sub(n, t)) for n in names]
    return tuple([o for t in ts for o in swap(t) if o != t] for ts in texts)


# the nouns the families with a noun are said with in `about`
ABOUT_NOUNS = {"name": ["dog", "boss"], "favorite": ["color", "food"], "attribute": ["job"]}


def _other_things(fact: Fact, person: str):
    """Each other family (and noun) said of `person`, as a Fact with no object."""
    for family in FAMILIES:
        if family in MANY:             # said with a verb of its own: no general wording
            continue
        for noun in ABOUT_NOUNS.get(family, [""]):
            if family == fact.relation and (noun == fact.noun or not noun):
                continue
            if fact.is_self and noun == fact.noun:
                continue                                    # "my dog's dog"
            yield Fact(person, family, "", noun)


def about(fact: Fact) -> list[str]:
    """Statement cues of the *other* families said of the fact's owner (Fact.owner): "Aria's
    dog is named", "Aria works as a" … for "Aria lives in Ghent"; "My neighbor lives in" for
    "my neighbor's name is …". A MEMIT edit is keyed at the owner, so it is there on all of
    them: its δ must leave what they are continued with as it was (editor.about_prompts).
    The user's own facts, keyed at their relation's word, have none; nor does a memory
    neuron, keyed after the name (its anchors do not occur in these cues)."""
    owner = fact.owner()
    if owner is None:
        return []
    p = fact.subject if not fact.is_self else owner
    return [_fill(_t(f)["cue"][0], f) for f in _other_things(fact, p)]


def about_wordings(fact: Fact) -> tuple[list[str], list[str]]:
    """(statement cues, questions) of the other families said of a named person ("Rasmus
    works as a", "Where does Rasmus live?" for Rasmus's age): a memory neuron about them must
    stay closed there (editor.others_prompts). None for the user's facts; nor a wording that
    says one of the fact's own anchors ("Rasmus's job is" for "Rasmus works as a welder")."""
    if fact.is_self:
        return [], []
    own = [a.lower() for a in anchors(fact, unit=True)]
    things = list(_other_things(fact, fact.subject))
    keep = lambda ts: [t for t in ts if not any(a in t.lower() for a in own)]
    return (keep([_fill(_t(f)["cue"][0], f) for f in things]),
            keep([_fill(_t(f)["qa"][0][0], f) for f in things]))


def variants(fact: Fact) -> list[tuple[str, list[str]]]:
    """(text, anchors) of more wordings of a fact about the user (MORE, SYNONYMS): its
    cues and questions with the noun's other words, and the family's further forms. Texts
    ending in "?" are chat questions. Facts about a named person have none: their key is the
    name, which every wording says."""
    if not fact.is_self:
        return []
    templates, more_anchors = MORE.get(fact.relation, ([], []))
    if fact.verb:
        templates = templates + VERBED.get(fact.relation, [])
    t = _t(fact)
    others = SYNONYMS.get(fact.noun, []) if "{N}" in str(t) else []   # a family with a noun
    out = {}
    for noun in [fact.noun] + others:
        f = replace(fact, noun=noun)
        anchors = list(dict.fromkeys(_fill(a, f, sentence=False)
                                     for a in t["anchor"] + more_anchors))
        texts = [] if noun == fact.noun else cues(f) + [q for q, _ in questions(f)]
        for text in texts + [_fill(m, f) for m in templates]:
            out.setdefault(text, (text, anchors))
    return list(out.values())


def wordings(fact: Fact) -> tuple[list[str], list[str]]:
    """(statement cues, questions): the family's and the variants'."""
    more = [t for t, _ in variants(fact)]
    return (cues(fact) + [t for t in more if not t.endswith("?")],
            [q for q, _ in questions(fact)] + [t for t in more if t.endswith("?")])


def every_wording(fact: Fact) -> list[tuple[str, str | None]]:
    """Every wording of the fact the app knows (`wordings`: the family's cues and questions,
    then the variants), each with the answer's beginning: None for a statement cue (the object
    follows it), for a question its family's answer — a synonym's own ("What's my manager
    called?" → "Your manager is called"), else the first question's ("What is my occupation?"
    → "You work as a"). What sleep's rehearsal asks and trains (sleep.py)."""
    cs, qs = wordings(fact)
    answer, first = {}, {}
    for noun in [fact.noun] + (SYNONYMS.get(fact.noun, []) if fact.is_self else []):
        qa = questions(replace(fact, noun=noun))
        answer |= dict(reversed(qa))
        first[noun] = qa[0][1]

    def said(q):   # the family's answer in the noun the question says (the longest that fits)
        nouns = [n for n in first if n and word(n).search(q)]
        return first[max(nouns, key=len)] if nouns else first[fact.noun]
    return [(c, None) for c in cs] + [(q, answer.get(q) or said(q)) for q in qs]


def cues(fact: Fact) -> list[str]:
    return [_fill(c, fact) for c in _t(fact)["cue"]]


def questions(fact: Fact) -> list[tuple[str, str]]:
    qa = list(_t(fact)["qa"])
    if fact.verb and fact.relation in VERBED_QA:
        qa.insert(1, VERBED_QA[fact.relation])
    if fact.relation in WHERE_QA and fact.noun.endswith((" at", " in")):
        qa.insert(0, WHERE_QA[fact.relation]["self" if fact.is_self else "other"])
    return [(_fill(q, fact), _fill(a, fact, answer=True)) for q, a in qa]


def full_answer(fact: Fact, answer: str) -> str:
    """The whole answer to a question, as the editor trains it: "Your dog's name is Waffles."."""
    return f"{answer} {fact.object}."


def describe(fact: Fact) -> str:
    """Human-readable: 'your dog's name → Biscuit', 'Aria lives in → Ghent'."""
    cue = cues(fact)[0]
    if fact.is_self:
        cue = cue.replace("My ", "your ", 1).replace("I am ", "you are ", 1)
        cue = cue.replace("I was ", "you were ", 1).replace("I ", "you ", 1)
        cue = cue.replace(" I ", " you ")
    elif fact.subject.startswith("my "):
        cue = re.sub(r"\bmy\b", "your", cue, flags=re.I)
    cue = re.sub(r" is(?: named| called)?$", "", cue)
    cue = re.sub(r"(?: is)? (?:a|an|the)$", "", cue)      # "Lena works as a" -> "Lena works as"
    return f"{cue} → {fact.object}"
