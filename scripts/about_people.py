"""What a person's memories do to the other things said of that person (docs/editing.md,
thirty-first round). Writes ten facts — three each about three made-up people and the user's
neighbour's name — into a fresh memory, then continues 27 cues about those people that no fact
answers, worded unlike relations.about ("Lionel's cat is named", "The book Tamsin is reading
is"): unchanged (first 5 greedy tokens as before, no written object named) or not; and each
fact's statement cue and last question.

    .venv/bin/python scripts/about_people.py [editor_key=value ...]     # e.g. kl_about=0
"""
import statistics
import sys
import tempfile
import time

import sleepllm  # noqa: F401  (loads the fast BLAS before mlx)
from sleepllm import config, memory, probes, relations
from sleepllm import model as models
from sleepllm.relations import Fact

FACTS = [Fact("Lionel", "favorite", "teal", "color"), Fact("Lionel", "drives", "Skoda"),
         Fact("Lionel", "lives_in", "Porto"),
         Fact("Henrike", "works_as", "welder"), Fact("Henrike", "plays", "cello"),
         Fact("Henrike", "name", "Pickle", "dog"),
         Fact("Tamsin", "born_in", "Dundee"), Fact("Tamsin", "speaks", "Welsh"),
         Fact("Tamsin", "favorite", "plum", "food"),
         Fact("user", "name", "Gwendolyn", "neighbor")]
UNTOLD = ["{p}'s cat is named", "{p}'s favourite band is", "{p} is a", "{p}'s brother is called",
          "{p} enjoys", "The company {p} works for is", "{p}'s hometown is",
          "The book {p} is reading is"]
NEIGHBOUR = ["My neighbor's cat is called", "My neighbor works at", "My neighbor is a"]


def main():
    cfg = config.load_config(None, config.parse_overrides(sys.argv[1:]))
    model, tok, mid = models.load(cfg["model"])
    cues = [c.format(p=p) for p in ("Lionel", "Henrike", "Tamsin") for c in UNTOLD] + NEIGHBOUR
    ids = [probes.raw_ids(tok, c) for c in cues]
    base = probes.generate(model, tok, ids, max_tokens=20)
    mem = memory.Memory(tempfile.mkdtemp(), model, tok, cfg, mid)
    mem.editor.load_stats()     # the gates' negatives loaded or made before the clock starts
    seconds = []
    for i, f in enumerate(FACTS):
        t = time.perf_counter()
        mem.editor.write(f, f"e{i}")
        seconds.append(time.perf_counter() - t)
    after = probes.generate(model, tok, ids, max_tokens=20)
    same = named_any = 0
    for c, b, a in zip(cues, base, after):
        kept = tok.encode(b)[:5] == tok.encode(a)[:5]
        named = [f.object for f in FACTS if probes.hit(f.object, a) and not probes.hit(f.object, b)]
        same += kept and not named
        named_any += bool(named)
        print("SAME" if kept and not named else "DIFF", repr(c), "|", repr(b[:40]), "->",
              repr(a[:40]), named)
    raw = probes.generate(model, tok, [probes.raw_ids(tok, relations.cues(f)[0]) for f in FACTS],
                          max_tokens=12)
    chat = probes.generate(model, tok, [probes.chat_ids(tok, relations.questions(f)[-1][0],
                                                        cfg["system_prompt"]) for f in FACTS],
                           max_tokens=24)
    for f, r, q in zip(FACTS, raw, chat):
        print(f.subject, f.relation, f.object, "|", repr(r[:30]), "|", repr(q[:50]))
    print(f"kl_about={cfg['editor']['kl_about']}: unchanged {same}/{len(cues)}, "
          f"naming a written object {named_any}/{len(cues)}, "
          f"raw {sum(probes.hit(f.object, r) for f, r in zip(FACTS, raw))}/{len(FACTS)}, "
          f"chat {sum(probes.hit(f.object, q) for f, q in zip(FACTS, chat))}/{len(FACTS)}, "
          f"write median {statistics.median(seconds):.1f} s")


if __name__ == "__main__":
    main()
