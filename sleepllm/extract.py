"""Rule-based fact extractor for the user's own messages.

    extract(message) -> [Fact, ...]

It finds first-person facts ("my dog is called Rex", "I live in Bergen"), facts about people
the user names ("my friend Aria moved to Ghent", "Xaver's car is a Saab") and about relatives
the user does not name ("my sister lives in Lyon": the subject "my sister"), and maps each onto a
relation family of relations.py. "She" / "he" at the start of a clause is the person the
message was just about ("My sister is called Delphine, she is a nurse"), or the previous
message's (the chat passes it); with no such person the clause gives nothing. It refuses, by
design: questions, negations, hypotheticals and wishes, reported speech and quotes,
instructions to the assistant, facts about other unnamed people ("my neighbour's dog..."),
pastes (long or multi-line input) and control characters.
Leading "actually", "oh", "by the way" are dropped: a correction is just a newer fact with the
same key, and the memory layer supersedes the old one.
"""
import re
import unicodedata

from sleepllm.relations import TITLES, Fact, third_person

MAX_CHARS = 400          # longer input is a paste, not a remark
MAX_LINES = 3

_SYNONYMS = {"dad": "father", "daddy": "father", "mom": "mother", "mum": "mother",
             "mommy": "mother", "mummy": "mother", "grandma": "grandmother",
             "granny": "grandmother", "grandpa": "grandfather", "hubby": "husband",
             "puppy": "dog", "doggy": "dog", "kitten": "cat", "kitty": "cat",
             "neighbour": "neighbor", "colour": "color", "favourite": "favorite",
             "bff": "best friend", "gf": "girlfriend", "bf": "boyfriend"}
# nouns whose "my N is X" names someone or something (otherwise it is an attribute)
NAMED = {"dog", "cat", "horse", "parrot", "bird", "rabbit", "hamster", "fish", "turtle", "snake",
         "pony", "goat", "pig", "wife", "husband", "partner", "girlfriend", "boyfriend", "son",
         "daughter", "mother", "father", "sister", "brother", "grandmother", "grandfather",
         "aunt", "uncle", "cousin", "niece", "nephew", "friend", "best friend", "boss",
         "manager", "doctor", "dentist", "neighbor", "landlord", "landlady", "teacher",
         "therapist", "coach", "baby", "boat", "ship", "car's name", "fiancé", "fiancée",
         "colleague", "roommate", "lawyer", "mentor", "godfather", "godmother", "stepmother",
         "stepfather", "twin", "pet"}
# "my <word> Aria ..." introduces Aria, the fact's subject
RELATION_WORDS = {"friend", "colleague", "coworker", "co-worker", "cousin", "neighbor",
                  "brother", "sister", "roommate", "classmate", "teammate", "buddy",
                  "pal", "mate", "uncle", "aunt", "boss", "manager", "teacher", "wife", "husband",
                  "partner", "girlfriend", "boyfriend", "fiancé", "fiancée", "son", "daughter",
                  "mother", "mom", "mum", "father", "dad", "grandmother", "grandma",
                  "grandfather", "grandpa", "niece", "nephew", "stepmother", "stepfather",
                  "stepson", "stepdaughter", "landlord", "landlady", "doctor", "dentist",
                  "mentor", "flatmate", "housemate", "kid", "child"}
# the user's relatives a fact may be about without a name: "my sister lives in Lyon" is about
# "my sister" (not "my friend": which one? not "my neighbour": the neighbour's dog is refused)
UNNAMED_SUBJECTS = {"wife", "husband", "partner", "girlfriend", "boyfriend", "fiancé", "fiancée",
                    "son", "daughter", "mother", "mom", "mum", "father", "dad", "sister",
                    "brother", "grandmother", "grandma", "grandfather", "grandpa", "boss",
                    "manager", "roommate", "best friend", "aunt", "uncle", "stepmother",
                    "stepfather"}
# what a possessive noun is about: "my native language is X" is the `speaks` family ...
NOUN_FAMILY = {"native language": "speaks", "mother tongue": "speaks", "first language": "speaks",
               "job": "works_as", "profession": "works_as", "occupation": "works_as",
               "employer": "works_at", "car": "drives", "instrument": "plays",
               "home town": "grew_up_in", "hometown": "grew_up_in", "home city": "lives_in",
               "allergy": "allergic_to"}
# "I'm a dentist" names a job; "I'm a big fan", "a bit tired", "a vegetarian" do not
NOT_JOBS = {"bit", "little", "lot", "big", "huge", "fan", "good", "bad", "great", "real", "true",
            "person", "people", "friend", "vegetarian", "vegan", "parent", "mother",
            "father", "mom", "dad", "man", "woman", "guy", "girl", "boy", "kid", "child",
            "member", "citizen", "native", "resident", "beginner", "morning", "night", "cat",
            "dog", "fast", "slow", "twin", "grandparent", "regular", "local", "newbie", "sucker",
            "type", "kind", "sort", "fool", "mess", "wreck", "nerd", "geek", "romantic", "pisces",
            "leo", "virgo", "aries", "taurus", "gemini", "cancer", "libra", "scorpio",
            "sagittarius", "capricorn", "aquarius", "introvert", "extrovert", "christian",
            "muslim", "jew", "buddhist", "hindu", "atheist", "single", "widow", "widower",
            "smoker", "nonsmoker", "non-smoker", "drinker", "believer", "sleeper", "learner",
            "dreamer", "lover", "gamer", "reader", "winner", "loser", "survivor", "foodie",
            "liar", "joke", "genius", "idiot", "legend", "natural", "pro", "rookie", "city",
            "town", "village", "country", "language", "holiday", "day", "name", "word", "thing",
            # the first word of two that says how good, how old or whether still: not a job
            "terrible", "awful", "proud", "former", "ex", "new", "old", "young", "lousy", "happy",
            "tired", "busy", "lazy", "amazing", "excellent", "decent", "horrible", "wannabe",
            "future", "poor", "better", "worse", "best", "worst", "average", "amateur", "hobby",
            "bored", "lucky", "proper", "qualified", "certified", "volunteer"}
NOT_NAMES = {"i", "my", "we", "our", "he", "she", "they", "it", "this", "that", "there", "his",
             "her", "their", "someone", "somebody", "everyone", "everybody", "anyone",
             "anybody", "nobody", "the", "a", "an", "one", "people", "mine", "who", "monday",
             "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday", "today",
             "tomorrow", "tonight", "yesterday"}
MONTHS = {"january", "february", "march", "april", "may", "june", "july", "august",
          "september", "october", "november", "december"}
INSTRUMENTS = {"piano", "guitar", "violin", "cello", "drums", "flute", "oboe", "clarinet",
               "trumpet", "saxophone", "banjo", "ukulele", "harp", "sitar", "accordion",
               "bass", "viola", "trombone", "harmonica", "mandolin", "bagpipes", "tuba",
               "double bass", "organ", "keyboard", "bassoon", "lute", "zither", "theremin",
               "didgeridoo", "kalimba", "erhu", "koto", "shamisen", "oud", "bouzouki", "djembe",
               "marimba", "xylophone", "glockenspiel", "horn", "french horn", "piccolo", "cornet",
               "euphonium", "bongos", "tabla", "harpsichord", "synthesizer", "recorder", "fiddle",
               "dulcimer", "balalaika", "castanets", "timpani", "vibraphone", "ocarina", "lyre",
               "guzheng", "pipa", "cajon", "steel drums", "bodhrán", "tin whistle", "kora"}
# "I own a Skoda", "Lorcan has a Honda Civic": a car only when it begins with a make ("I own a
# Fender", "Aria has a Monstera" are not cars); "drives a ..." takes any name
CAR_MAKES = {"acura", "alfa", "aston", "audi", "bentley", "bmw", "buick", "byd", "cadillac",
             "chevrolet", "chevy", "chrysler", "citroën", "citroen", "cupra", "dacia", "daewoo",
             "daihatsu", "datsun", "dodge", "ferrari", "fiat", "ford", "genesis", "gmc", "honda",
             "hummer", "hyundai", "infiniti", "isuzu", "jaguar", "jeep", "kia", "lada",
             "lamborghini", "lancia", "land", "lexus", "lincoln", "lotus", "maserati", "mazda",
             "mclaren", "mercedes", "mercedes-benz", "mini", "mitsubishi", "nissan", "opel",
             "peugeot", "polestar", "pontiac", "porsche", "range", "renault", "rivian",
             "rolls-royce", "saab", "seat", "skoda", "škoda", "smart", "subaru", "suzuki",
             "tesla", "toyota", "trabant", "vauxhall", "volkswagen", "vw", "volvo"}
# "a severe allergy", "a food allergy": how bad or what kind, not to what
NOT_ALLERGENS = {"food", "severe", "mild", "bad", "terrible", "serious", "slight", "minor", "major",
                 "seasonal", "skin", "rare", "weird", "strange", "new", "real", "deadly", "drug",
                 "contact", "environmental"}
# "Mireille is a talented cellist": the instrument a player's noun names
PLAYERS = {"pianist": "piano", "guitarist": "guitar", "violinist": "violin", "cellist": "cello",
           "drummer": "drums", "flautist": "flute", "flutist": "flute", "harpist": "harp",
           "trumpeter": "trumpet", "saxophonist": "saxophone", "bassist": "bass",
           "organist": "organ", "accordionist": "accordion", "banjoist": "banjo",
           "violist": "viola", "oboist": "oboe", "clarinetist": "clarinet",
           "clarinettist": "clarinet", "trombonist": "trombone", "bassoonist": "bassoon",
           "harpsichordist": "harpsichord", "mandolinist": "mandolin", "fiddler": "fiddle",
           "percussionist": "drums", "keyboardist": "keyboard", "ukulelist": "ukulele"}
# "my job is stressful", "my car is in the shop": a description or a state, not a value
DESCRIBING_START = {"in", "on", "at", "to", "with", "for", "from", "near", "by", "under", "over",
                    "out", "off", "up", "down", "away", "into", "about", "like", "so", "too",
                    "very", "really", "quite", "pretty", "still", "always", "never", "sometimes",
                    "soon", "tomorrow", "today", "tonight", "yesterday", "here", "there", "now",
                    "closed", "open", "getting", "being", "kind", "sort", "all", "such", "more",
                    "less", "most", "least", "almost", "nearly", "just", "only", "also", "even",
                    "going", "that", "my", "his", "her", "our", "their", "its", "if", "whether",
                    "what", "how", "why", "because", "yes", "no"}
# "my answer is yes", "my guess is Paris": words of the conversation, not facts about anyone;
# and secrets that must never be written into weights
NOT_ATTRIBUTES = {"point", "problem", "answer", "guess", "concern", "excuse", "suggestion",
                  "order", "reply", "worry", "question", "issue", "idea", "plan", "goal",
                  "thought", "mistake", "vote", "bet", "opinion", "view", "choice", "pick",
                  "request", "task", "day", "week", "weekend", "morning", "evening", "night",
                  "life", "time", "turn", "fault", "pleasure", "treat", "advice", "feedback",
                  "response", "message", "comment", "theory", "hope", "wish", "dream", "fear",
                  "homework", "assignment", "code", "program", "script", "output", "input",
                  "error", "result", "score", "bad", "take", "feeling", "impression", "reason",
                  "password", "passcode", "pin", "pin code", "social security number", "ssn",
                  "credit card", "credit card number", "card number", "bank account",
                  "account number", "iban", "api key", "secret", "security question"}
ADJECTIVES = {"big", "small", "old", "new", "good", "bad", "great", "fine", "nice", "cool", "fun",
              "dead", "sick", "ill", "quiet", "loud", "busy", "free", "late", "early", "cheap",
              "hard", "easy", "long", "short", "far", "close", "slow", "fast", "broken", "hot",
              "cold", "warm", "dirty", "clean", "empty", "full", "huge", "tiny", "awesome",
              "amazing", "weird", "strange", "ok", "okay", "same", "different", "best", "worst",
              "better", "worse", "over", "done", "gone", "lost", "missing", "fake", "real", "true",
              "false", "mine", "safe", "ready", "happy", "sad", "lovely", "beautiful", "ugly",
              "boring", "interesting", "annoying", "exhausting", "tiring", "demanding",
              "rewarding", "challenging", "exciting", "frustrating", "depressing", "relaxing",
              "fascinating", "confusing", "overwhelming", "important", "private", "secret",
              "complicated", "simple", "crazy", "perfect", "normal", "rare", "common", "popular",
              "famous", "unknown", "odd", "noisy", "calm", "cozy", "cosy", "crowded", "nearby",
              "local", "random", "messy", "tidy", "ancient", "modern", "enormous", "massive",
              "tall", "young", "fresh", "cute", "sweet", "smart", "silly", "wild", "shy",
              "expensive", "expansive", "exclusive", "impressive", "intensive",
              # judgements said as nouns: "my car is a mess"
              "mess", "wreck", "disaster", "joke", "nightmare", "pain", "dream", "blast",
              "headache", "nuisance", "problem", "lifesaver", "lemon"}
# "I studied hard / abroad / all night" says how, not what
NOT_SUBJECTS = {"lot", "hard", "abroad", "all night", "all day", "late", "a lot", "there", "here",
                "together", "alone", "online", "overseas", "at home", "for years", "for hours",
                "it", "that", "this", "them", "everything", "nothing", "enough", "more", "less"}
# the heads of two-word jobs ("software engineer", "data scientist", "flight attendant")
JOB_HEADS = {"engineer", "scientist", "developer", "designer", "analyst", "technician",
             "consultant", "teacher", "nurse", "programmer", "researcher", "architect",
             "accountant", "attendant", "assistant", "officer", "therapist", "journalist",
             "photographer", "librarian", "mechanic", "electrician", "surgeon", "pilot",
             "administrator", "specialist", "editor", "manager", "worker", "controller",
             "instructor", "lecturer", "professor", "paramedic", "pharmacist", "chef"}
# "I have a ferret", "Xenia has a pet iguana": the kind of animal is the fact
ANIMALS = {"dog", "cat", "hamster", "iguana", "parrot", "rabbit", "bunny", "snake", "ferret",
           "tortoise", "turtle", "goldfish", "fish", "guinea pig", "lizard", "gecko", "horse",
           "pony", "budgie", "canary", "chinchilla", "hedgehog", "rat", "mouse", "gerbil",
           "axolotl", "chameleon", "cockatoo", "cockatiel", "tarantula", "pig", "goat", "donkey",
           "chicken", "duck", "parakeet", "bearded dragon", "python", "frog", "crab", "hermit crab",
           "alpaca", "llama", "sheep", "cow", "owl", "pigeon", "finch", "macaw", "degu",
           "sugar glider", "kitten", "puppy"}
SPORTS = {"tennis", "football", "soccer", "basketball", "baseball", "volleyball", "badminton",
          "squash", "golf", "rugby", "cricket", "hockey", "ice hockey", "handball", "table tennis",
          "ping pong", "padel", "netball", "lacrosse", "polo", "water polo", "softball",
          "american football", "futsal", "pickleball", "ultimate frisbee", "frisbee", "darts",
          "snooker", "pool", "billiards", "bowling", "chess", "curling", "croquet", "dodgeball"}
# verbs of a habit ("I collect stamps", "I ride a Ducati"; relations "habit"): things one does
# or has again and again, not once ("I bought", "I need", "I want"). Not a liking: "I love
# Paris", "I hate Mondays" are said in passing (tests/data/hostile.txt); a liking with a
# noun is a favourite ("I love the band Metallica")
HABITS = ["collect", "drink", "eat", "read", "watch", "listen to", "ride", "grow", "bake",
          "brew", "knit", "sew", "paint", "draw", "write", "cook", "breed", "raise", "keep",
          "wear", "smoke", "follow", "practice", "practise", "build", "volunteer at",
          "volunteer for", "shop at", "bank with", "vote for", "own", "teach", "use"]
# "keeps" -> "keep": a habit's verb said after a name, and the form the fact keeps
_HABIT_BASE = {third_person(v): v for v in HABITS}
# what one does or practises ("I do yoga"): a habit of practising it
PRACTICES = {"yoga", "pilates", "judo", "karate", "taekwondo", "kung fu", "aikido", "jiu-jitsu",
             "jiu jitsu", "boxing", "kickboxing", "fencing", "archery", "crossfit", "tai chi",
             "ballet", "gymnastics", "parkour", "bouldering", "climbing", "meditation",
             "calligraphy", "origami", "pottery", "taxidermy", "karaoke", "improv"}
# an object of one that names no thing: a pronoun, a possessive, "a lot", "to swim", "how ..."
NOT_HABIT_OBJECTS = {"it", "them", "that", "this", "these", "those", "you", "him", "her", "me",
                     "us", "my", "your", "his", "our", "their", "its", "some", "any", "lot",
                     "lots", "bit", "everything", "nothing", "something", "anything", "all",
                     "how", "when", "what", "where", "why", "who", "whatever", "one", "people",
                     "everyone", "everybody", "nobody", "someone", "somebody", "both", "each",
                     "myself", "yourself", "himself", "herself", "ourselves", "themselves",
                     "up", "out", "on", "off", "down", "over", "back", "away", "together",
                     "here", "there", "too", "well", "so", "much", "more", "most", "less",
                     "very", "really", "quite", "pretty", "enough", "again", "anymore",
                     "sometimes", "often", "always", "never", "mostly", "usually", "every",
                     "to", "for", "with", "about", "in", "at", "by", "from", "like", "as",
                     "if", "because", "than", "other", "others", "another", "such", "same",
                     "few", "many", "several", "no", "not", "things", "stuff"}
# "I love knitting": a pastime; "I love being here", "I enjoy working" are not
NOT_HOBBIES = {"being", "having", "getting", "going", "doing", "making", "talking", "chatting",
               "working", "living", "waiting", "thinking", "sleeping", "eating", "seeing",
               "hearing", "knowing", "learning", "helping", "trying", "saying", "telling",
               "asking", "watching", "feeling", "everything", "nothing", "something", "morning",
               "evening", "clothing", "building", "playing", "spring", "thing", "king", "ring",
               "wedding", "sibling", "darling", "ceiling", "pudding", "dumpling", "wing", "string"}
PEOPLE_NOUNS = {"author", "writer", "singer", "band", "actor", "actress", "artist", "composer",
                "player", "painter", "poet", "director", "musician", "rapper"}

_REFUSE = [
    r"\?", r"^(?:what|who|whom|whose|where|when|why|how|which|do|does|did|is|are|am|was|were|"
    r"can|could|would|should|will|shall|may|might|have|has|had)\b",
    r"\b(?:not|never|no longer|n't|cannot|nobody|nothing|neither|nor)\b", r"\bno\s+\w+\s+named\b",
    r"\b(?:dont|doesnt|didnt|isnt|wasnt|arent|werent|havent|hasnt|hadnt|cant|couldnt|wont|"
    r"wouldnt|shouldnt|aint)\b",
    r"\b(?:if|would|could|might|maybe|perhaps|probably|imagine|suppose|pretend|wish|hope|"
    r"hopefully|someday|one day|dream|fantasy|hypothetically|assume|assuming|let's say|"
    r"planning|plan to|want to|wants to|going to|gonna|thinking about|considering|might)\b",
    r"[\"“”«»]", r"\b(?:said|says|say|told|tells|claims?|claimed|joked?|joking|kidding|"
    r"lol|haha|according to|rumou?r)\b",
    r"\bin (?:the|a|my|this|that) (?:story|novel|book|movie|film|game|dream|show|song)\b",
    r"^(?:please|tell|write|give|show|list|explain|describe|remind|help|translate|summari[sz]e|"
    r"call me|let me|let's|can you|could you|you are|you're|act as|ignore)\b",
    r"\b(?:you|your|assistant|chatbot|ai)\b",
]
_FILLER = re.compile(r"^(?:(?:oh|ah|well|so|also|and|but|btw|by the way|fyi|just so you know|"
                     r"for the record|actually|anyway|ok|okay|yeah|yes|hey|hi|hello|hmm|um|"
                     r"guess what|fun fact|news|update|correction|sorry|oops|right|now|"
                     r"these days|nowadays|currently|at the moment|at present|right now|lately|"
                     r"by profession|by trade|(?:please )?(?:remember|note|keep in mind|"
                     r"don't forget|do not forget)(?: that)?)[,:!\-–]?\s+)+",
                     re.I)
_TAIL = re.compile(r"\s*(?:,|\s)\s*(?:at the moment|these days|nowadays|right now|now|currently|"
                   r"for checkups|for check-ups|by trade|for a living|for work|for years|"
                   r"for \w+ (?:years|months|decades)|for (?:a|over a|almost a|nearly a) "
                   r"(?:decade|year|while)|for ages|"
                   r"since \w+|last \w+|this \w+|recently|lately|too|as well|again|"
                   r"more than any other \w+|above all|the most|a lot|every \w+|in town|"
                   r"these days|for fun|on weekends|on (?:mon|tues|wednes|thurs|fri|satur|sun)days|"
                   r"at home|at work|in my (?:garden|spare time|free time)|sometimes|often|usually|"
                   r"occasionally|all the time|"
                   r"natively|fluently|full[- ]time|part[- ]time|originally|by birth|"
                   r"in (?:a|an|the|his|her|their|my|our) (?:band|orchestra|choir|group|ensemble|"
                   r"quartet|trio)|with (?:his|her|their|my|our) \w+|in \d{4}|back in \w+|"
                   r"(?:\w+ )?years? ago|(?:really |very )?well|beautifully|professionally)\b.*$",
                   re.I)

NAME = r"[A-ZÀ-Þ][\w\-]+"
# "best friend", "old colleague", "sister": how the user introduces someone ("my best friend Aria")
RELATION = r"(?:best |good |old |close )?(?:" + "|".join(sorted(RELATION_WORDS)) + ")"
# "a talented", "a very keen": how good a player is, not what they play
SKILL = (r"(?:(?:very |really )?(?:talented|skilled|gifted|keen|good|great|fine|professional|"
         r"amateur|accomplished|brilliant|passionate|avid|decent|excellent|jazz|classical|"
         r"concert|session) )?")
OBJ = r"(?P<O>(?:(?:Dr|Mr|Mrs|Ms|St|Prof)\.\s*)?(?:[^,.;!]|(?<=\b[A-Z])\.)+?)"  # "K." an initial


def _clean(text: str) -> str | None:
    if len(text) > MAX_CHARS or text.count("\n") >= MAX_LINES:
        return None
    if any(unicodedata.category(c) == "Cc" and c not in "\n\t" for c in text):
        return None
    text = text.replace("’", "'").replace("‘", "'").replace("`", "'")
    text = "".join(c for c in text if unicodedata.category(c) != "So")    # emoji
    # "im", "ive" (lower case anywhere, "Im" to begin with: "Ive" may be a name)
    text = re.sub(r"\b(i)(m|ve)\b|^(I)(m|ve)\b", lambda m: f"{m[1] or m[3]}'{m[2] or m[4]}", text)
    return re.sub(r"\s+", " ", text).strip()


def _sentences(text: str):
    protected = re.sub(r"\b(" + "|".join(TITLES) + r")\.", r"\1<DOT>", text)
    # an initial inside a name ("Ursula K. Le Guin"), not the end of "the U.S. My dog ..."
    protected = re.sub(r"(?<=\b[A-Z])\.(?= (?!(?:My|Our|I|We|He|She|It|They|The|His|Her|This|"
                       r"That|And|But|So)\b)[A-Z])", "<DOT>", protected)
    for s in re.split(r"(?<=[.!?;])\s+|\n", protected):
        s = s.replace("<DOT>", ".").strip()
        if s:
            yield s


def _norm_noun(n: str) -> str:
    n = n.lower().strip()
    n = re.sub(r"^(?:new|little|old|lovely|sweet|baby|younger|older|big|late)\s+", "", n)
    return " ".join(_SYNONYMS.get(w, w) for w in n.split())


_TRAIL_CLAUSE = re.compile(r"\s+(?:(?:and|but|so|because|since|though|although)\s+(?:i|i'm|my|we|"
                           r"our|she|she's|he|he's|they|they're|it|it's|that|this|"
                           r"there)|who|which|whom)\b.*$", re.I)


def _obj(o: str) -> str:
    o = _TAIL.sub("", _TRAIL_CLAUSE.sub("", o.strip()))
    # an article goes, but "The" stays when it begins a name ("The Wire", "The Hague")
    o = re.sub(r"^(?:(?i:a|an|called|named)|the|The(?= [a-zà-ÿ]))\s+", "", o).strip(" .,!;:'\"")
    o = re.sub(r"^(?:city|town|village) of\s+(?=[A-ZÀ-Þ])", "", o)
    # "a small village called Ambleside", "a startup named Lumen": the name
    return re.sub(r"^(?:[a-z\-]+ ){1,3}(?:called|named)\s+(?=[A-ZÀ-Þ0-9])", "", o)


# (pattern, builder). Patterns see the sentence with leading filler removed and favourite/
# colour spelt the US way; `who` matches a named person ("my friend Aria", "Aria").
def _rules():
    # a named person ("Aria", "my friend Aria"), or a relative the user did not name ("my
    # sister"; P is then "my sister", see relations.Fact.owner)
    kin = "|".join(sorted(UNNAMED_SUBJECTS, key=len, reverse=True))
    who = (rf"(?:(?:[Mm]y|[Oo]ur) {RELATION} )?"
           rf"(?P<P>{NAME}|(?:[Mm]y|[Oo]ur) (?:{kin})\b)")
    noun = r"(?P<N>[a-z][a-z\- ]{1,30}?)"
    R = []

    def add(p, fn):
        R.append((re.compile(p, re.I if "(?P<P>" not in p else 0), fn))

    # ---- names of pets and people: "my dog's name is X", "my dog is called X"
    add(rf"^(?:my|our) {noun}'s name (?:is|was) (?:now )?{OBJ}$",
        lambda m: ("user", "name", m["N"]))
    add(rf"^(?:my|our) {noun}(?: is|'s| was) (?:called|named) {OBJ}$",
        lambda m: ("user", "name", m["N"]))
    add(rf"^(?:my|our) {noun} (?:goes by|answers to)(?: the name)? {OBJ}$",
        lambda m: ("user", "name", m["N"]))
    add(rf"^(?:i|we) (?:have|own|got|adopted|bought) (?:a|an) (?:new )?{noun} (?:called|named) {OBJ}$",
        lambda m: ("user", "name", m["N"]))
    add(rf"^(?:i|we) (?:named|called|call) (?:my|our|the) (?:new )?{noun} {OBJ}$",
        lambda m: ("user", "name", m["N"]))
    add(rf"^{OBJ} is (?:the name of )?(?:my|our) {noun}(?:'s name)?$",
        lambda m: ("user", "name", m["N"]) if _norm_noun(m["N"]) in NAMED else None)
    # "Lars is Greta's brother": the name of Greta's brother
    add(rf"^(?P<O>{NAME}(?: {NAME})?) is (?P<P>{NAME})'s {noun}$",
        lambda m: (m["P"], "name", m["N"]) if _norm_noun(m["N"]) in NAMED else None)
    add(rf"^the name of (?:my|our) {noun} is {OBJ}$",
        lambda m: ("user", "name", m["N"]) if _norm_noun(m["N"]) in NAMED else None)
    add(rf"^(?:my|our) {noun} is (?:a|an) [a-z]+ (?:called|named) {OBJ}$",
        lambda m: ("user", "name", m["N"]))
    add(rf"^{who}'s? {noun} is (?:a|an) [a-z]+ (?:called|named) {OBJ}$",
        lambda m: (m["P"], "name", m["N"]))
    # ---- other people's pets/relatives: "Aria's dog is called X", "Fabian has a dog named X"
    add(rf"^{who}'s? {noun}(?:'s name is|(?: is|'s) called|(?: is|'s) named| goes by) {OBJ}$",
        lambda m: (m["P"], "name", m["N"]))
    add(rf"^{who} (?:has|owns|got|adopted) (?:a|an) (?:new )?{noun} (?:called|named) {OBJ}$",
        lambda m: (m["P"], "name", m["N"]))
    add(rf"^{who} (?:named|called|calls) (?:his|her|their) (?:new )?{noun} {OBJ}$",
        lambda m: (m["P"], "name", m["N"]) if _obj(m["O"])[:1].isupper() else None)
    # ---- favourites
    add(rf"^(?:my|our) favorite {noun} is {OBJ}$", lambda m: ("user", "favorite", m["N"]))
    add(rf"^{who}'s? favorite {noun} is {OBJ}$", lambda m: (m["P"], "favorite", m["N"]))
    add(rf"^{OBJ} is (?:my|our) (?:absolute |all-time )?favorite {noun}$",
        lambda m: ("user", "favorite", m["N"]))
    add(rf"^(?P<O>[^,.;!]+?) is {who}'s (?:absolute |all-time )?favorite {noun}$",
        lambda m: (m["P"], "favorite", m["N"]))
    add(rf"^(?:i|we) (?:really )?(?:love|adore|like) (?:the )?{noun} (?P<O>[A-ZÀ-Þ0-9][^,.;!]*?)$",
        lambda m: ("user", "favorite", m["N"]) if _norm_noun(m["N"]) in
        {"color", "band", "team", "city", "country", "song", "movie", "film", "book", "game",
         "season", "flower", "animal", "sport", "dish", "food", "drink", "restaurant"} else None)
    add(rf"^{who} (?:really )?(?:loves|adores|likes) the color {OBJ}$",
        lambda m: (m["P"], "favorite", "color"))
    add(rf"^(?:i|we) (?:love|adore|like) {OBJ} more than any other {noun}$",
        lambda m: ("user", "favorite", m["N"]))
    add(rf"^(?:i|we) (?:love|adore) (?:books|novels|stories) by {OBJ}$",
        lambda m: ("user", "favorite", "author"))
    add(rf"^(?:i|we) (?:love|adore|enjoy) (?:eating|dining) at {OBJ}$",
        lambda m: ("user", "favorite", "restaurant"))
    add(rf"^(?:i|we) (?:love|adore|enjoy) playing {OBJ}$",
        lambda m: ("user", "plays", "") if _obj(m["O"]).lower() in INSTRUMENTS
        else ("user", "favorite", "sport"))
    add(rf"^(?:i|we) (?:support|cheer for|root for) {OBJ}$", lambda m: ("user", "supports", ""))
    add(r"^(?:i'm|i am) (?:a|an) (?:huge |big |die-hard |diehard |lifelong |loyal )?"
        r"(?P<O>[A-ZÀ-Þ][^,.;!]*?) supporter$", lambda m: ("user", "supports", ""))
    add(rf"^{who} (?:supports|cheers for|roots for) {OBJ}$", lambda m: (m["P"], "supports", ""))
    # ---- pastimes, sports and pets: "I love knitting", "I play tennis", "Xenia has an iguana"
    add(r"^(?:i|we) (?:really )?(?:love|enjoy|adore) (?P<O>[a-z]+ing)$",
        lambda m: ("user", "attribute", "hobby"))
    add(rf"^{who} (?:really )?(?:loves|enjoys|adores) (?P<O>[a-z]+ing)$",
        lambda m: (m["P"], "attribute", "hobby"))
    add(rf"^(?:i|we) play {OBJ}$", lambda m: ("user", _played(m["O"]), ""))
    add(rf"^{who} plays {OBJ}$", lambda m: (m["P"], _played(m["O"]), ""))
    add(rf"^(?:i|we) (?:have|own|keep|adopted|got) (?:a|an) (?:pet )?{OBJ}$",
        lambda m: ("user", "has_pet", ""))
    add(rf"^(?:my|our) (?:only )?pet is (?:a|an) {OBJ}$", lambda m: ("user", "has_pet", ""))
    add(rf"^{who} (?:has|owns|keeps|adopted|got) (?:a|an) (?:pet )?{OBJ}$",
        lambda m: (m["P"], "has_pet", ""))
    add(rf"^{who}'s pet is (?:a|an) {OBJ}$", lambda m: (m["P"], "has_pet", ""))
    # ---- where people live / were born
    add(rf"^(?:i|we) (?:live|reside|stay) in {OBJ}$", lambda m: ("user", "lives_in", ""))
    add(rf"^(?:i|we)(?: just| recently| have)? (?:moved|relocated) to {OBJ}$",
        lambda m: ("user", "lives_in", ""))
    add(rf"^(?:my|our) (?:home city|city) is {OBJ}$", lambda m: ("user", "lives_in", ""))
    add(rf"^(?:i|we) (?:call|now call) {OBJ} home$", lambda m: ("user", "lives_in", ""))
    add(rf"^(?:my|our) home is in {OBJ}$", lambda m: ("user", "lives_in", ""))
    add(rf"^{who} (?:calls|now calls) {OBJ} home$", lambda m: (m["P"], "lives_in", ""))
    add(rf"^{who}'s home is in {OBJ}$", lambda m: (m["P"], "lives_in", ""))
    add(rf"^(?:i|we) (?:grew up|was raised|were raised) in {OBJ}$",
        lambda m: ("user", "grew_up_in", ""))
    add(rf"^{who} (?:grew up|was raised) in {OBJ}$", lambda m: (m["P"], "grew_up_in", ""))
    add(rf"^(?:my|our) (?:house|home|flat|apartment|place) is on {OBJ}$",
        lambda m: ("user", "attribute", "street") if _obj(m["O"])[:1].isupper() else None)
    add(rf"^(?:i|we) (?P<V>live on) {OBJ}$",
        lambda m: ("user", "attribute", "street") if _obj(m["O"])[:1].isupper() else None)
    add(rf"^{who} (?:lives|resides|is living|is based) in {OBJ}$", lambda m: (m["P"], "lives_in", ""))
    add(rf"^{who}(?: just| recently| has)? (?:moved|relocated) to {OBJ}$",
        lambda m: (m["P"], "lives_in", ""))
    add(rf"^{who} (?:has|rents|owns) (?:a|an) (?:flat|apartment|house|place|home) in {OBJ}$",
        lambda m: (m["P"], "lives_in", ""))
    add(r"^(?:i was|i'm|i am) (?:born|from) in (?P<O>\d{4})$",
        lambda m: ("user", "attribute", "birth year"))
    add(rf"^(?:i was|i'm|i am) (?:born|from) in {OBJ}$", lambda m: (
        "user", "birth_month" if _is_month(m["O"]) else "born_in", ""))
    add(rf"^(?:i was|i'm|i am) (?:originally )?from {OBJ}$", lambda m: ("user", "born_in", ""))
    add(rf"^{who} is (?:originally )?from {OBJ}$", lambda m: (m["P"], "born_in", ""))
    add(rf"^(?:i|we) (?:originally )?come from {OBJ}$", lambda m: ("user", "born_in", ""))
    add(rf"^{who} (?:originally )?comes from {OBJ}$", lambda m: (m["P"], "born_in", ""))
    add(rf"^(?:i|we)(?:'ve| have) (?:been living|lived) in {OBJ}$",
        lambda m: ("user", "lives_in", ""))
    add(rf"^{who} (?:has been living|has lived) in {OBJ}$", lambda m: (m["P"], "lives_in", ""))
    add(rf"^(?:i was|{who} was) born and raised in {OBJ}$",
        lambda m: (m["P"] or "user", "born_in", ""))
    add(rf"^{who} was born in {OBJ}$", lambda m: (
        m["P"], "birth_month" if _is_month(m["O"]) else "born_in", ""))
    add(rf"^(?:i'm|i am) (?:based|living) in {OBJ}$", lambda m: ("user", "lives_in", ""))
    add(rf"^(?:my|our) birthday is (?:in|on) {OBJ}$", lambda m: _birthday("user", m["O"]))
    add(rf"^(?:i was|i'm|i am) born on {OBJ}$", lambda m: _birthday("user", m["O"]))
    add(rf"^{who}'s birthday is (?:in|on) {OBJ}$", lambda m: _birthday(m["P"], m["O"]))
    add(rf"^{who} was born on {OBJ}$", lambda m: _birthday(m["P"], m["O"]))
    # ---- work and study
    add(rf"^(?:i|we) work as (?:a|an) {OBJ}$", lambda m: ("user", "works_as", ""))
    add(rf"^(?:i|we) (?:make|earn) (?:a|my|our) living as (?:a|an) {OBJ}$",
        lambda m: ("user", "works_as", ""))
    add(rf"^(?:i'm|i am) employed as (?:a|an) {OBJ}$", lambda m: ("user", "works_as", ""))
    add(rf"^{who} (?:makes|earns) (?:a|his|her|their) living as (?:a|an) {OBJ}$",
        lambda m: (m["P"], "works_as", ""))
    add(rf"^{who} is employed as (?:a|an) {OBJ}$", lambda m: (m["P"], "works_as", ""))
    add(rf"^(?:i|we) work (?:at|in|for) (?:a|an|the) [^\W\d_]+ (?:called|named) {OBJ}$",
        lambda m: ("user", "works_at", ""))
    add(rf"^{who} works (?:at|in|for) (?:a|an|the) [^\W\d_]+ (?:called|named) {OBJ}$",
        lambda m: (m["P"], "works_at", ""))
    add(rf"^(?:i'm|i am) (?:a|an) {OBJ}(?: by trade| by profession)$",
        lambda m: ("user", "works_as", ""))
    add(rf"^my (?:job|profession|occupation) is {OBJ}$", lambda m: ("user", "works_as", ""))
    add(rf"^(?:i|we) work (?:at|for) {OBJ}$", lambda m: ("user", "works_at", ""))
    add(rf"^my employer is {OBJ}$", lambda m: ("user", "works_at", ""))
    add(rf"^(?:i|we)(?:'ve| have) (?:been working|worked) (?:at|for) {OBJ}$",
        lambda m: ("user", "works_at", ""))
    add(rf"^(?:i|we) (?:run|own|manage) (?:a|an|the) [^\W\d_]+ (?:called|named) {OBJ}$",
        lambda m: ("user", "works_at", ""))
    add(rf"^{who} works as (?:a|an) {OBJ}$", lambda m: (m["P"], "works_as", ""))
    add(rf"^{who} is (?:a|an) {OBJ} by (?:trade|profession)$", lambda m: (m["P"], "works_as", ""))
    add(rf"^{who} (?:works|teaches|lectures) (?:at|for) {OBJ}$", lambda m: (m["P"], "works_at", ""))
    add(rf"^(?:i|we) (?:teach|lecture) at {OBJ}$", lambda m: ("user", "works_at", ""))
    add(rf"^(?:i'm|i am) (?:employed|working) (?:at|by|for) {OBJ}$",
        lambda m: ("user", "works_at", ""))
    add(rf"^{who} is (?:employed|working) (?:at|by|for) {OBJ}$",
        lambda m: (m["P"], "works_at", ""))
    add(rf"^(?:i'm|i am) (?:a|an) {SKILL}(?P<O>[a-z]+)$", lambda m: _player("user", m["O"]))
    add(rf"^{who} is (?:a|an) {SKILL}(?P<O>[a-z]+)$", lambda m: _player(m["P"], m["O"]))
    add(rf"^(?:i'm|i am) (?:a|an) {SKILL}(?P<O>[a-z][a-z ]*?) player$",
        lambda m: _player("user", m["O"] + " player"))
    add(rf"^{who} is (?:a|an) {SKILL}(?P<O>[a-z][a-z ]*?) player$",
        lambda m: _player(m["P"], m["O"] + " player"))
    add(rf"^(?:i'm|i am) (?:a|an) professional {OBJ}$",
        lambda m: ("user", "works_as", "") if _job(m["O"]) else None)
    add(rf"^{who} is (?:a|an) professional {OBJ}$",
        lambda m: (m["P"], "works_as", "") if _job(m["O"]) else None)
    add(rf"^(?:i'm|i am) (?:a|an) {OBJ}$", lambda m: ("user", "works_as", "") if _job(m["O"]) else None)
    # "Dana is a nurse": a bare capitalised word may be a city or a weekday ("Paris is a city"),
    # so without "my friend ..." the word must look like a job — and for "my boss" ("is a
    # jerk") too
    add(rf"^{who} is (?:a|an) {OBJ}$", lambda m: (m["P"], "works_as", "")
        if _job(m["O"]) and (m[0][:3].lower() in ("my ", "our") and not _kin(m["P"])
                             or _job_shaped(m["O"])) else None)
    # "I'm learning the cello" plays it (before "learning" a subject below)
    add(rf"^(?:i'm|i am) learning (?:to play )?(?:the )?{OBJ}$",
        lambda m: ("user", "plays", "") if _obj(m["O"]).lower() in INSTRUMENTS else None)
    add(rf"^{who} is learning (?:to play )?(?:the )?{OBJ}$",
        lambda m: (m["P"], "plays", "") if _obj(m["O"]).lower() in INSTRUMENTS else None)
    add(rf"^{who} (?:studied|studies|is studying) at {OBJ}$", lambda m: (m["P"], "studied_at", ""))
    add(rf"^{who} (?:graduated|went to university) from {OBJ}$",
        lambda m: (m["P"], "studied_at", ""))
    add(rf"^{who} (?:studies|is studying|is learning|learns) {OBJ}$",
        lambda m: (m["P"], "studies", ""))
    add(rf"^{who} majored in {OBJ}$", lambda m: (m["P"], "majored_in", ""))
    add(rf"^{who} studied {OBJ}$", lambda m: (m["P"], "majored_in", "")
        if _obj(m["O"]).lower() not in NOT_SUBJECTS and not _obj(m["O"]).endswith("ly") else None)
    add(rf"^{who} (?:speaks|grew up speaking) {OBJ}$", lambda m: (m["P"], "speaks", ""))
    add(rf"^(?:i|we) went to {OBJ}$", lambda m: ("user", "studied_at", "")
        if re.search(r"\b(?:university|college|academy|institute|polytechnic|school of)\b",
                     m["O"], re.I) else None)
    add(rf"^(?:i|we) (?:graduated|graduate) from {OBJ}$", lambda m: ("user", "studied_at", ""))
    add(rf"^(?:i|we) attend {OBJ}$", lambda m: ("user", "studied_at", "") if _school(m["O"]) else None)
    add(rf"^{who} (?:goes to|attends) {OBJ}$", lambda m: (m["P"], "attribute", "school")
        if _school(m["O"]) and not re.search(r"\b(?:university|college)\b", m["O"], re.I)
        else (m["P"], "studied_at", "") if _school(m["O"]) else None)
    add(rf"^(?:i|we) (?:studied|study) at {OBJ}$", lambda m: ("user", "studied_at", ""))
    add(rf"^my degree is in {OBJ}$", lambda m: ("user", "majored_in", ""))
    add(rf"^my (?P<N>major|degree|field of study) (?:is|was) (?:in )?{OBJ}$",
        lambda m: ("user", "studies" if m["N"] == "field of study" else "majored_in", "")
        if not re.match(r"(?:a|an|the)\s", m["O"], re.I) else None)
    add(rf"^(?:i|we) majored in {OBJ}$", lambda m: ("user", "majored_in", ""))
    add(rf"^(?:i'm|i am) (?:studying|learning) (?!the ){OBJ}$", lambda m: ("user", "studies", ""))
    add(rf"^(?:i|we) (?:study|learn) {OBJ}$", lambda m: ("user", "studies", ""))
    add(rf"^(?:i|we) studied {OBJ}$", lambda m: ("user", "majored_in", "")
        if _obj(m["O"]).lower() not in NOT_SUBJECTS and not _obj(m["O"]).endswith("ly") else None)
    # ---- things people drive, play, speak, are allergic to
    add(rf"^(?:i|we) drive (?:a|an) {OBJ}$",   # "a Tesla", "a red Tesla"; not "a car"
        lambda m: ("user", "drives", "") if _named(m["O"]) else None)
    add(rf"^(?:i|we) (?:own|have|bought|got) (?:a|an) {OBJ}$",   # "a Skoda", not "a Fender"
        lambda m: ("user", "drives", "") if _car(m["O"]) else None)
    add(rf"^{who} (?:owns|has|bought|got) (?:a|an) {OBJ}$",
        lambda m: (m["P"], "drives", "") if _car(m["O"]) else None)
    add(rf"^my car is (?:a|an) {OBJ}$", lambda m: ("user", "drives", ""))
    add(rf"^{who} drives (?:a|an) {OBJ}$", lambda m: (m["P"], "drives", ""))
    add(rf"^{who}'s car is (?:a|an) {OBJ}$", lambda m: (m["P"], "drives", ""))
    add(rf"^(?:i|we) play the {OBJ}$", lambda m: ("user", "plays", ""))
    add(rf"^(?:i|we)(?:'ve| have) been playing (?:the )?{OBJ}$",
        lambda m: ("user", _played(m["O"]), ""))
    add(rf"^(?:i'm|i am) learning to speak {OBJ}$", lambda m: ("user", "studies", ""))
    add(rf"^my instrument is the {OBJ}$", lambda m: ("user", "plays", ""))
    add(rf"^{who} plays the {OBJ}$", lambda m: (m["P"], "plays", ""))
    add(rf"^{who} is (?:good at|great at) playing the {OBJ}$", lambda m: (m["P"], "plays", ""))
    add(rf"^(?:i'm|i am) allergic to {OBJ}$", lambda m: ("user", "allergic_to", ""))
    add(rf"^{who} is allergic to {OBJ}$", lambda m: (m["P"], "allergic_to", ""))
    add(rf"^(?:i|we) (?:grew up speaking|speak) (?:fluent )?{OBJ}$", lambda m: ("user", "speaks", ""))
    add(rf"^(?:i|we) (?:have|'ve got|have got) (?:an|a) (?:\w+ )?allergy to {OBJ}$",
        lambda m: ("user", "allergic_to", ""))
    add(rf"^{who} (?:has|'s got|has got) (?:an|a) (?:\w+ )?allergy to {OBJ}$",
        lambda m: (m["P"], "allergic_to", ""))
    add(rf"^{who} (?:has|'s got|has got) (?:an|a) (?P<O>[a-z]+) allergy$",
        lambda m: (m["P"], "allergic_to", "") if m["O"].lower() not in NOT_ALLERGENS else None)
    add(r"^(?:i|we) (?:have|'ve got|have got) (?:an|a) (?P<O>[a-z]+) allergy$",
        lambda m: ("user", "allergic_to", "") if m["O"].lower() not in NOT_ALLERGENS else None)
    add(rf"^(?:i'm|i am|we're|we are) fluent in {OBJ}$", lambda m: ("user", "speaks", ""))
    add(rf"^{who} is fluent in {OBJ}$", lambda m: (m["P"], "speaks", ""))
    add(rf"^my (?:native language|mother tongue|first language) is {OBJ}$",
        lambda m: ("user", "speaks", ""))
    # ---- spouses: "I'm married to Sam", "Ben is married to Mia"
    add(rf"^(?:i'm|i am|i've been|i have been) (?:happily )?married to {OBJ}$",
        lambda m: ("user", "married_to", ""))
    add(rf"^{who} is (?:happily )?married to {OBJ}$", lambda m: (m["P"], "married_to", ""))
    add(rf"^(?:i|we) (?:married|wed) {OBJ}$", lambda m: ("user", "married_to", ""))
    add(rf"^{who} (?:married|wed) {OBJ}$", lambda m: (m["P"], "married_to", ""))
    # ---- age: "I'm 34", "I am 34 years old", "Aria is 34 years old"
    add(r"^(?:i'm|i am) (?P<O>\d{1,3})(?: years old| years of age)?$", lambda m: ("user", "age", ""))
    add(r"^(?:i|we) (?:just )?turned (?P<O>\d{1,3})(?: years old)?"
        r"(?: (?:last|this|in|on|yesterday|today|recently)\b.*)?$", lambda m: ("user", "age", ""))
    add(rf"^{who} is (?P<O>\d{{1,3}})(?: years old| years of age)?$", lambda m: (m["P"], "age", ""))
    # ---- places and things the user uses
    add(rf"^(?:i|we) (?P<V>(?:train|work out|exercise) at) {OBJ}(?: gym)?$",
        lambda m: ("user", "attribute", "gym"))
    add(rf"^(?:i|we) (?P<V>go to|use|belong to) (?:the|a) gym (?:at|called|named) {OBJ}$",
        lambda m: ("user", "attribute", "gym") if _obj(m["O"])[:1].isupper() else None)
    add(rf"^(?:i|we) (?P<V>go to|use|belong to) (?:the )?{OBJ} gym$",
        lambda m: ("user", "attribute", "gym") if _obj(m["O"])[:1].isupper() else None)
    add(r"^(?:i|we) (?:see|visit|go to) (?P<O>Dr\.\s*[^,.;!]+?)(?: for .*)?$",
        lambda m: ("user", "name", "doctor"))
    add(r"^(?:i|we) (?P<V>use (?:a|an)) (?P<O>[A-ZÀ-Þ][\w\-]*) (?P<N>phone|laptop|computer|camera|bike)$",
        lambda m: ("user", "attribute", m["N"]))
    # ---- a possessive: "my hobby is X", "Aria's phone is a Pixel" (a name when N is a person
    # or pet noun; a family of its own when N says which: "Aria's native language is ...")
    add(rf"^(?:my|our) {noun} is {OBJ}$", lambda m: _possessive("user", m["N"], m["O"]))
    add(rf"^{who}'s {noun} is {OBJ}$", lambda m: _possessive(m["P"], m["N"], m["O"]))
    # ---- a habit, said with its verb (the last rule: any family above says it better): "I
    # collect stamps", "I ride a Ducati", "my friend Omar keeps bees"
    add(r"^(?:i|we) (?:do|practi[cs]e) (?P<O>[a-z][a-z\- ]+)$",
        lambda m: ("user", "habit", "practice")
        if m["O"].lower() in PRACTICES else None)
    add(rf"^{who} (?:does|practi[cs]es) (?P<O>[a-z][a-z\- ]+)$",
        lambda m: (m["P"], "habit", "practice")
        if m["O"].lower() in PRACTICES else None)
    verbs = "|".join(sorted(HABITS, key=len, reverse=True))
    thirds = "|".join(sorted(_HABIT_BASE, key=len, reverse=True))
    add(rf"^(?:i|we) (?:really )?(?P<V>(?:{verbs})(?: (?:a|an|the))?) {OBJ}$",
        lambda m: _habit("user", m["V"].lower(), m["O"]))
    add(rf"^{who} (?:really )?(?P<V>(?:{thirds})(?: (?:a|an|the))?) {OBJ}$",
        lambda m: _habit(m["P"], m["V"].lower(), m["O"]))
    return R


def _habit(subject: str, said: str, obj: str):
    """(subject, "habit", verb) for "I ride a Ducati" — the verb as said after "I", whoever
    said it; the article after it stays in Fact.verb (the rule's V) —, None when the object
    is not a thing ("I like it", "I love my job", "I read a lot", "I like to swim")."""
    words = _obj(obj).split()
    if not words or words[0].lower() in NOT_HABIT_OBJECTS or words[0].lower().endswith("ing"):
        return None
    verb = re.sub(r" (?:a|an|the)$", "", said)
    return subject, "habit", verb if subject == "user" else _HABIT_BASE[verb]


def _played(obj: str) -> str:
    """ "I play piano" plays an instrument, "I play squash" a sport."""
    return "plays" if _obj(obj).lower() in INSTRUMENTS else "sport"


def _player(subject: str, what: str):
    """ "a cellist" plays the cello, "a keen tennis player" plays tennis."""
    what = what.lower()
    if what in PLAYERS:
        return subject, "plays", "", PLAYERS[what]
    kind = what.removesuffix(" player")
    if what.endswith(" player") and kind in INSTRUMENTS:
        return subject, "plays", "", kind
    if what.endswith(" player") and kind in SPORTS:
        return subject, "sport", "", kind
    return None


def _car(obj: str) -> bool:
    """ "Skoda", "red Honda Civic", "Tesla Model 3": a make, then only names and numbers."""
    words = _obj(obj).split()
    while words and words[0].islower() and len(words) > 1:
        words = words[1:]                      # "red", "old"
    return bool(words) and words[0].lower() in CAR_MAKES and \
        all(w[:1].isupper() or w[:1].isdigit() for w in words)


def _kin(subject: str) -> bool:
    """ "my sister": a relative the user did not name."""
    return subject.lower().startswith(("my ", "our "))


def _possessive(subject: str, noun: str, obj: str):
    if noun != noun.lower():          # "my cat Pixel is grey": a name inside, no possessive
        return None
    n = _norm_noun(noun)
    if n in NOT_ATTRIBUTES or n.split()[-1] in NOT_ATTRIBUTES:
        return None
    if _obj(obj).lower().split()[-1:] == [n.split()[-1]] and not _named(obj):
        return None   # "my laptop is a work laptop" (but "my street is Harbor Street")
    if n in NAMED and re.match(r"(?:a|an)\s", obj.strip(), re.I):
        return None   # "my cat is a Siamese": a kind, not a name
    if n in NOUN_FAMILY:
        return subject, NOUN_FAMILY[n], ""
    if n in NAMED and not _obj(obj)[:1].isupper():
        return None   # "my sister is a doctor", "my dog is old": about them, not their name
    if n == "favorite team":          # the team one supports
        return subject, "supports", ""
    if n.startswith("favorite "):
        return subject, "favorite", n.split(" ", 1)[1]
    if n in PEOPLE_NOUNS and subject == "user":
        return subject, "favorite", n
    return subject, "name" if n in NAMED else "attribute", n


def _named(obj: str) -> bool:
    """A proper name or a number somewhere in it ("Bergen", "the city of Bergen", "iPhone", "3M")."""
    return any(w[:1].isdigit() or any(c.isupper() for c in w) for w in _obj(obj).split())


def _describes(obj: str) -> bool:
    """"stressful", "in the shop", "closed today": says how something is, names nothing."""
    words = _obj(obj).split()
    if not words:
        return True
    w = words[0]
    if w.lower() in DESCRIBING_START:
        return True
    if w in ADJECTIVES and not _named(obj):      # "important to me", but "a new iPhone"
        return True
    return len(words) == 1 and w == w.lower() and w.endswith(("ful", "less", "ous", "able", "ible",
                                                               "ed"))


# what each family's object must look like, beyond the rule that matched it: a place, a
# workplace ("at Siemens", not "at home"), a language or a spouse is a name
_NAMED_FAMILIES = {"lives_in", "born_in", "grew_up_in", "works_at", "speaks", "married_to"}


def _fits(relation: str, noun: str, obj: str) -> bool:
    """`obj` is the cleaned object (_obj) of a matched rule."""
    low = obj.lower()
    if relation in _NAMED_FAMILIES:
        return _named(obj)
    if relation == "plays":
        return low in INSTRUMENTS or low.split()[-1] in INSTRUMENTS
    if relation == "sport":
        return low in SPORTS
    if relation == "has_pet":
        return low in ANIMALS or low.endswith("s") and low[:-1] in ANIMALS
    if noun == "hobby" and low.endswith("ing"):
        return low not in NOT_HOBBIES
    if relation == "attribute" and low.split()[0].endswith("ing") and obj[:1].islower():
        return False                  # "my back is hurting", "my phone is acting up"
    if relation == "studies":
        return not low.startswith("to ") and low not in NOT_SUBJECTS and not _describes(obj)
    if noun == "favorite":            # "my favorite is the blue one": of what?
        return False
    if relation == "supports":        # "Aria supports the idea"
        return _named(obj)
    if relation == "favorite":        # a favourite may well be an adjective ("olive", "red")
        return low.split()[0] not in DESCRIBING_START
    if noun == "birthday":            # a date names a month or a day number
        return any(w.strip(",") in MONTHS or w[:1].isdigit() for w in low.split())
    return not _describes(obj)


def _school(obj: str) -> bool:
    """"Riverside Elementary", "Trinity College": a named school, college or university."""
    return _named(obj) and bool(re.search(
        r"\b(?:school|elementary|primary|high|academy|college|university|institute|"
        r"polytechnic|kindergarten|nursery|gymnasium|lyc[ée]e)\b", obj, re.I))


def _is_month(obj: str) -> bool:
    return _obj(obj).lower() in MONTHS


def _birthday(subject: str, when: str):
    """A month alone is the birth-month family; a date is kept whole as an attribute."""
    if _is_month(when):
        return subject, "birth_month", ""
    return subject, "attribute", "birthday"


def _job(obj: str) -> bool:
    """"I'm a dentist": one lower-case word that is not a trait, a group or a habit ("a bit
    tired", "a big fan", "a vegetarian", "a smoker"); two words only when the second is the
    head of a job ("a software engineer") and the first says nothing of how or whether ("a
    light sleeper", "a former nurse" are refused). "I work as a ..." and "... by trade" take
    any job."""
    words = _obj(obj).split()
    if not 1 <= len(words) <= 2 or not all(re.fullmatch(r"[a-zà-þ\-]+", w) for w in words):
        return False
    if len(words) == 2 and words[1] not in JOB_HEADS:   # "software engineer", not "light sleeper"
        return False
    return not any(w in NOT_JOBS or w.endswith(("ed", "ing", "ly", "ful", "ous")) for w in words)


_JOB_END = ("er", "or", "ist", "ian", "ant", "ent", "man", "woman", "smith", "wright", "keeper",
            "maker", "eer", "ier", "nurse", "chef", "pilot", "surgeon", "cook", "vet", "judge",
            "monk", "nun", "priest", "clerk", "medic", "nanny", "barista", "midwife", "tutor",
            "guide", "agent", "analyst", "architect", "mechanic", "mason", "poet", "diplomat")


def _job_shaped(obj: str) -> bool:
    return _obj(obj).lower().endswith(_JOB_END)


RULES = _rules()


def refused(sentence: str) -> bool:
    s = sentence.lower()
    return any(re.search(p, s) for p in _REFUSE)


# sentences that say two things or name someone in apposition, said plainly first:
# "I work at Google as an engineer" -> "I work at Google; I work as an engineer",
# "Aria, my friend, lives in Ghent" -> "my friend Aria lives in Ghent"
_REWRITES = [
    (re.compile(r"^(i|we) work (at|for) ([A-ZÀ-Þ][^,;]*?) as (a|an) ([^,;]+)$", re.I),
     lambda m: f"{m[1]} work {m[2]} {m[3]}; {m[1]} work as {m[4]} {m[5]}"),
    (re.compile(r"^((?:(?:[Mm]y|[Oo]ur) [a-z]+ )?[A-ZÀ-Þ][\w\-]+) works (at|for) ([A-ZÀ-Þ][^,;]*?) "
                r"as (a|an) ([^,;]+)$"),
     lambda m: f"{m[1]} works {m[2]} {m[3]}; {m[1]} works as {m[4]} {m[5]}"),
    # "I'm an engineer at Google", "my friend Priya is a doctor at Guy's Hospital"
    (re.compile(r"^((?i:i'm|i am)|(?:(?:[Mm]y|[Oo]ur) [a-z]+ )?[A-ZÀ-Þ][\w\-]+ is) (?:a|an) "
                r"([a-z][a-z ]*?) (at|for) ([A-ZÀ-Þ][^,;]*)$"),
     lambda m: _job_at(m)),
    # "I'm a nurse at the local hospital": the job; the place names nothing
    (re.compile(r"^((?i:i'm|i am)) (a|an) ([a-z][a-z ]*?) (?:at|in|for) (?:the|a|an) [a-z][a-z ]*$"),
     lambda m: f"I work as {m[2]} {m[3]}" if _job(m[3]) else m[0]),
    (re.compile(r"^(i|we|[A-ZÀ-Þ][\w\-]+) (?:currently|presently|now|still|also|mostly|really|"
                r"truly|actually|just|recently|finally) ", re.I),
     lambda m: f"{m[1]} "),
    (re.compile(r"^(i|we|[A-ZÀ-Þ][\w\-]+) (studied|studies|study|majored in) ([a-z][a-z ]*?) "
                r"at ([A-ZÀ-Þ][^,;]*)$", re.I),
     lambda m: f"{m[1]} {m[2]} {m[3]}; {m[1]} studied at {m[4]}"),
    (re.compile(rf"^({NAME}), ((?:my|our) {RELATION}), "), lambda m: f"{m[2]} {m[1]} "),
    # "My sister, Hannah, lives in Leeds" -> "my sister Hannah lives in Leeds"
    (re.compile(rf"^((?:[Mm]y|[Oo]ur) {RELATION}), ({NAME}), "), lambda m: f"{m[1]} {m[2]} "),
    # "I'm currently living in Seoul", "Lena is still working at Ikea"
    (re.compile(r"^(i'm|i am|we're|we are|[A-ZÀ-Þ][\w\-]+ is) (?:currently|presently|now|still|"
                r"also|really|actually) ", re.I),
     lambda m: f"{m[1]} "),
    # "Sofia works as a pilot for KLM" -> the job and the employer
    (re.compile(r"^((?i:i|we)|(?:(?:[Mm]y|[Oo]ur) [a-z]+ )?[A-ZÀ-Þ][\w\-]+) (works?) as (a|an) "
                r"([a-z][a-z ]*?) (?:at|for) ([A-ZÀ-Þ][^,;]*)$"),
     lambda m: f"{m[1]} {m[2]} as {m[3]} {m[4]}; {m[1]} {m[2]} at {m[5]}"),
    # "I'm doing a PhD in chemistry at ETH Zurich" -> the subject and the university
    (re.compile(r"^(?:i'm|i am) (?:doing|taking|pursuing|studying for) (?:a|an|my) (?:phd|doctorate|"
                r"master'?s|bachelor'?s|degree|ba|bsc|msc|ma|mba)(?: degree)? in ([a-z][a-z ]*?)"
                r"(?: at ([A-ZÀ-Þ][^,;]*))?$", re.I),
     lambda m: f"I study {m[1]}" + (f"; I study at {m[2]}" if m[2] else "")),
    # "We got a puppy last week, his name is Toby" -> the pet's name
    (re.compile(r"^(?:i|we) (?:have|got|adopted|bought|rescued) (?:a|an) (?:new )?(?:pet )?("
                + "|".join(sorted(ANIMALS, key=len, reverse=True))
                + r")\b[^,;]*[,;] (?:his|her|its|their) name is ([A-ZÀ-Þ][\w\-]+)$", re.I),
     lambda m: f"my {m[1]} is called {m[2]}"),
    # "My favorite food has always been ramen"
    (re.compile(r"^((?:my|our|[A-ZÀ-Þ][\w\-]+'s) (?:absolute |all-time )?favou?rite [a-z ]+?) "
                r"(?:has always been|has been|is and always will be|remains|is still) ", re.I),
     lambda m: f"{m[1]} is "),
    # "My dog, Biscuit, is a corgi", "my cat Pixel is grey": the pet's name, then the rest
    (re.compile(r"^((?:[Mm]y|[Oo]ur) (?:pet )?(?:" + "|".join(sorted(ANIMALS, key=len, reverse=True))
                + r")),? ([A-ZÀ-Þ][\w\-]+),? (?=[a-z])"),
     lambda m: f"{m[1]} is called {m[2]}; {m[2]} "),
]


def _job_at(m) -> str:
    """ "<I'm / P is> a <job> at <Place>" said as two plain statements (see _REWRITES)."""
    user = m[1].lower() in ("i'm", "i am")
    p, work, study = ("I", "work", "studied") if user else (m[1][:-3], "works", "studies")
    if m[2] in ("student", "pupil") and m[3] == "at":
        return f"{p} {study} at {m[4]}"
    return f"{p} {work} as a {m[2]}; {p} {work} at {m[4]}" if _job(m[2]) else m[0]


def _rewrite(sent: str) -> str:
    for pat, repl in _REWRITES:
        sent = pat.sub(repl, sent)
    return sent


_CLAUSE = re.compile(r"\s*[,;:–—]\s*|\s+(?:and|but)\s+(?=(?:i|i'm|my|we|our|she|he)\b)", re.I)
_PRONOUN = re.compile(r"^(?:she|he)(?:'s\b|(?= ))", re.I)


def _resolve(clause: str, person: str | None) -> str:
    """"she is a nurse" → "my sister is a nurse" when the message has just been about my
    sister (or Aria); without such a person the clause is left as it is (and refused)."""
    if not person or not _PRONOUN.match(clause):
        return clause
    return _PRONOUN.sub(lambda m: person + (" is" if m[0].endswith("'s") else ""), clause, 1)


def _person(fact: Fact, person: str | None) -> str | None:
    """Who "she" / "he" refers to after `fact`: a named person or a relative it is about, or
    the relative whose name it gives ("My sister is called Delphine")."""
    if fact.subject != "user":
        return fact.subject
    if fact.relation == "name" and fact.noun in UNNAMED_SUBJECTS:
        return "my " + fact.noun
    return person


def _unfinished(obj: str) -> bool:
    """An object that stops where the sentence had more to say: a bare title or a last word
    that needs one after it."""
    words = obj.lower().rstrip(".").split()
    return words[-1] in {"of", "the", "a", "an", "in", "at", "to", "for", "with", "from", "by",
                         "and", "or", "on", "my", "his", "her", "their", "our"} \
        or " ".join(words) in {"dr", "mr", "mrs", "ms", "prof", "st", "sir", "madame"}


def _match(sent: str) -> Fact | None:
    for pat, build in RULES:
        m = pat.match(sent)
        if not m:
            continue
        got = build(m)
        if not got:
            continue
        subject, relation, noun, *given = got   # a builder may name the object itself
        obj = _obj(given[0] if given else m["O"])
        if not obj or len(obj) > 60 or len(obj.split()) > 5 or not _fits(relation, noun, obj):
            continue
        if _unfinished(obj):          # "My doctor is Dr.", "I studied at the university of"
            continue
        if subject != "user" and subject.lower() in NOT_NAMES:
            continue
        if _kin(subject):                                   # "My mom" -> "my mother"
            subject = "my " + _norm_noun(subject.split(" ", 1)[1])
        noun = _norm_noun(noun)
        if relation == "favorite" and noun in ("team", "football team", "club"):
            relation, noun = "supports", ""            # the team one supports
        # the user's own verb for a thing of theirs ("I *use* a Nokia phone"): more wordings
        return Fact(subject, relation, obj, noun, (m.groupdict().get("V") or "").lower())
    return None


# "Hi, I'm Tom": after a greeting, "I'm" and one capitalised word is the user's name — unless
# the word says where they are from or what they believe ("Hi, I'm British")
_GREETING = re.compile(r"^(?:hi|hello|hey|hiya|howdy|greetings|good (?:morning|afternoon|evening))\b",
                       re.I)
NOT_INTRO_NAMES = {"american", "canadian", "australian", "german", "italian", "indian", "mexican",
                   "russian", "brazilian", "argentinian", "chilean", "colombian", "peruvian",
                   "nigerian", "kenyan", "egyptian", "israeli", "iranian", "pakistani", "filipino",
                   "dutch", "french", "swiss", "greek", "thai", "korean", "ukrainian", "norwegian",
                   "christian", "catholic", "protestant", "muslim", "hindu", "buddhist", "sikh",
                   "atheist", "agnostic", "vegan", "back", "here", "home", "new", "ok", "okay",
                   "fine", "good", "great", "well", "sorry", "confused", "curious", "bored"}


def _introduction(sent: str, greeted: bool) -> str:
    """ "I'm Tom, nice to meet you" said after a greeting -> "my name is Tom, nice to meet you"."""
    if not greeted:
        return sent

    def name(m):
        w = m[2]
        if w.lower() in NOT_INTRO_NAMES or w.lower().endswith(("ish", "ese")):
            return m[0]
        return f"my name is {w}"
    return re.sub(r"^((?i:i'm|i am|this is)) ([A-ZÀ-Þ][\w\-]+)(?=$|[,;!]| and )", name, sent)


def extract(message: str, person: str | None = None) -> list[Fact]:
    """Facts stated in one user message (possibly none). A sentence is refused as a whole;
    otherwise its clauses are matched one by one ("I moved to Bergen last spring, lovely city"
    → lives in Bergen; "I live in Oslo and I work as a nurse" → two facts), and the sentence
    as a whole when no clause matches. `person`: who "she" / "he" is before the message says
    (the chat passes the person the user's previous message was about: `person_after`)."""
    text = _clean(message)
    if not text:
        return []
    out = []
    greeted = bool(_GREETING.match(text))
    for sent in _sentences(text):
        sent = _FILLER.sub("", sent).strip().rstrip(".!;").strip()
        sent = re.sub(r"[,;]?\s*(?:it's |it is )?(?:so )?(?:nice|pleased|good|great|lovely) to meet "
                      r"you$", "", sent, flags=re.I)
        sent = _resolve(_introduction(sent, greeted), person)
        if not sent or refused(sent):
            continue
        sent = re.sub(r"\b(?:favou?rite|fave?)\b", "favorite", sent, flags=re.I)
        sent = re.sub(r"\bcolou?r\b", "color", sent, flags=re.I)
        sent = re.sub(r"\bneighbou?r\b", "neighbor", sent, flags=re.I)
        sent = re.sub(r"\b(i|we)(?:'ve| have) got\b", r"\1 have", sent, flags=re.I)
        sent = re.sub(r"\b(my|our) name's\b", r"\1 name is", sent, flags=re.I)
        sent = re.sub(r"\b([a-z]+)s (name|called|named)\b",   # "my brothers name is Teodor"
                      lambda m: f"{m[1]}'s {m[2]}" if m[1].lower() in NAMED else m[0], sent)
        found = []
        sent = _rewrite(sent)
        clauses = _CLAUSE.split(sent)
        if len(clauses) > 1:
            for clause in clauses:
                clause = _FILLER.sub("", clause).strip()
                clause = _resolve(_introduction(clause, greeted), person)
                fact = _match(clause) if clause and not refused(clause) else None
                if fact and fact not in found:
                    found.append(fact)
                    person = _person(fact, person)   # for the clauses after it
        if not found:
            fact = _match(sent)
            found = [fact] if fact else []
            person = person_after(found, person)
        out += found
    return out


def person_after(facts: list[Fact], person: str | None = None) -> str | None:
    """Who "she" / "he" refers to after a message that stated `facts`."""
    for fact in facts:
        person = _person(fact, person)
    return person
