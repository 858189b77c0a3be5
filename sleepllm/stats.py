"""Statistics the editor needs, computed once per model and cached on disk under a
fingerprint of the model's weights:

- random prefixes: short texts the model writes itself after "The", "Therefore", ... (MEMIT's
  context templates), sampled at temperature 0.7 with a fixed seed;
- C_l = E[k kᵀ] at each edited layer, from text the model generates itself (plain text and
  chat-formatted turns), ≥ 10 × d_k tokens, and C_l⁻¹, which every solve starts from (memit);
- "negatives": the MLP inputs at the memory-neuron layer over text the model writes about
  everyday topics (TOPICS: food, pets, sport, work, travel ...; a paragraph and a chat answer
  each), which every neuron's gate is trained closed on (neurons.py): a memory of the user's
  favourite drink must stay closed on a recipe's "ingredient";
- "strangers": the same layer's inputs over every family's cues said of people no memory is
  about ("Beatrix lives in the city of", relations.strangers_cues) and over the model's own
  greedy continuation of each, with whom each row is about: the gates stay closed there too,
  where a cue about somebody else goes on with a name the model makes up.
  The perplexity text (data/heldout.txt) is never used here.
"""
import hashlib
import json
from pathlib import Path

import mlx.core as mx
import numpy as np

from sleepllm import memit, probes, relations
from sleepllm.config import private_dir
from sleepllm.store import atomic_save_arrays, atomic_write_json, load_arrays

SEED_WORDS = ["The", "In", "My", "When", "A", "Yesterday", "She", "We", "It", "There", "After",
              "Most", "He", "Today", "One", "This"]
PREFIX_STARTS = ["The", "Therefore", "Because", "I", "You"]
# What the gates' ordinary text is about: the topics users' facts are about, and others.
TOPICS = ["baking bread", "cooking dinner", "coffee", "tea", "fruit", "breakfast", "restaurants",
          "wine and beer", "dogs", "cats", "horses", "birds", "farm animals", "families",
          "weddings", "children", "grandparents", "neighbours", "friendship", "offices",
          "jobs and careers", "companies", "bosses and managers", "doctors", "dentists",
          "allergies", "hospitals", "football", "tennis", "running", "swimming", "gyms",
          "sports teams", "music", "playing the guitar", "the piano", "bands and concerts",
          "films", "novels", "poetry", "painting", "languages", "learning a language",
          "universities", "schools", "studying for exams", "cities", "villages", "streets",
          "houses and flats", "renting a flat", "travel by train", "holidays", "the sea",
          "mountains", "the weather", "gardening", "trees", "cars", "bicycles", "phones",
          "computers", "the internet", "money", "shopping", "clothes", "birthdays", "history",
          "science", "the stars", "colours", "hobbies",
          # general knowledge, what a question about someone else or the world is about
          "famous people in history", "composers and classical music", "painters and art",
          "scientists and their discoveries", "inventors and inventions", "writers and their books",
          "kings, queens and presidents", "countries of the world", "capital cities",
          "food around the world", "festivals and holidays", "the months and the seasons",
          "famous films and actors", "football clubs and leagues", "car makers",
          "rivers, lakes and oceans", "wild animals", "famous buildings", "planets and space",
          "myths and fairy tales", "ships and sailing"]
CHAT_SEEDS = ["Tell me about", "How do I", "What is", "Can you explain", "Write a short",
              "Why do", "Give me", "Describe"]


def _sample(model, prompts_ids, n_tokens, temp, seed):
    """Batched sampling from equal-length prompts with a KV cache. Returns (B, n) token ids."""
    from mlx_lm.models.cache import make_prompt_cache

    mx.random.seed(seed)
    cache = make_prompt_cache(model)
    x = mx.array(prompts_ids)
    out = []
    logits = model(x, cache=cache)[:, -1]
    for _ in range(n_tokens):
        tok = mx.random.categorical(logits / temp)
        out.append(tok)
        logits = model(tok[:, None], cache=cache)[:, -1]
        mx.eval(logits)
    return np.array(mx.stack(out, axis=1))


def random_prefixes(model, tokenizer, n_tokens=10, seed=0):
    prefixes = []
    for i, start in enumerate(PREFIX_STARTS):
        ids = tokenizer.encode(start)
        gen = _sample(model, [ids], n_tokens, 0.7, seed + i)[0]
        text = tokenizer.decode(ids + gen.tolist()).replace("\n", " ").strip()
        prefixes.append(text)
    return prefixes


TEXT_LEN, TEXT_BATCH = 160, 48   # text_batches: tokens per row, rows per batch


def text_batches(model, tokenizer, n_tokens, seq_len=TEXT_LEN, batch=TEXT_BATCH, seed=1):
    """Token batches (each (batch, seq_len)) of model-generated text: half plain, half chat."""
    out, total, i = [], 0, 0
    while total < n_tokens:
        if i % 2 == 0:
            starts = [tokenizer.encode(SEED_WORDS[(i * batch + j) % len(SEED_WORDS)])[-1:]
                      for j in range(batch)]
            prefix = []
        else:
            seed_q = CHAT_SEEDS[(i // 2) % len(CHAT_SEEDS)]
            text = tokenizer.apply_chat_template([{"role": "user", "content": seed_q}],
                                                 add_generation_prompt=False, tokenize=False)
            prefix = tokenizer._tokenizer(text.rstrip().rsplit(seed_q, 1)[0] + seed_q,
                                          add_special_tokens=False)["input_ids"]
            starts = [prefix] * batch
        gen = _sample(model, starts, seq_len - len(starts[0]), 0.8, seed + i)
        ids = np.concatenate([np.array(starts), gen], axis=1)
        out.append(ids)
        total += ids.size
        i += 1
    return out


def topic_batches(model, tokenizer, seq_len=TEXT_LEN, seed=7):
    """Token rows (in (16, seq_len) batches) the model writes about each of TOPICS: a paragraph
    ("A short text about baking bread:") and a chat answer ("Tell me about baking bread.").
    Prompts of equal length are sampled together."""
    prompts = []
    for topic in TOPICS:
        prompts.append(tokenizer.encode(f"A short text about {topic}:\n\n"))
        text = tokenizer.apply_chat_template(
            [{"role": "user", "content": f"Tell me about {topic}."}],
            add_generation_prompt=True, tokenize=False)
        prompts.append(tokenizer._tokenizer(text, add_special_tokens=False)["input_ids"])
    by_len = {}
    for ids in prompts:
        by_len.setdefault(len(ids), []).append(ids)
    rows = []
    for i, (n, group) in enumerate(sorted(by_len.items())):
        gen = _sample(model, group, seq_len - n, 0.8, seed + i)
        rows.append(np.concatenate([np.array(group), gen], axis=1))
    rows = np.concatenate(rows)
    return [rows[s: s + 16] for s in range(0, len(rows), 16)]


def load(model, tokenizer, layers, cache_root: Path, fingerprint: str, tokens_per_dk=10,
         console=None, parts=("prefixes", "cinv")) -> dict:
    """{part: ...} for the asked `parts` of "prefixes" (list of texts), "cinv" ({layer: C⁻¹})
    and "cov" ({layer: C}), float64, "negatives" ({layers[-1]: (n, d) float32}) and
    "strangers" ({layers[-1]: ((n, d) float32, (n,) the index in relations.STRANGERS of
    whom each row's text is about)}); cached
    in <cache_root>/<fingerprint>/. C (float32 on disk) is computed, with a progress bar, on
    a model's first start, and read only when asked for or when its C⁻¹ is not cached yet.
    C⁻¹ is stored as the float64's own bytes (uint32 pairs: MLX's safetensors has no
    float64), so what is read is exactly what was computed — five 8192-wide inversions take
    minutes on a CPU, reading them back seconds."""
    folder = private_dir(cache_root / fingerprint)
    out = {}
    if "negatives" in parts:
        out["negatives"] = {layers[-1]: _negatives(model, tokenizer, layers[-1], folder, console)}
    if "strangers" in parts:
        out["strangers"] = {layers[-1]: _strangers(model, tokenizer, layers[-1], folder, console)}
    if "prefixes" in parts:
        pre_file = folder / "prefixes.json"
        try:
            out["prefixes"] = json.loads(pre_file.read_text())
            if not (isinstance(out["prefixes"], list)
                    and all(isinstance(p, str) for p in out["prefixes"])):
                raise ValueError
        except FileNotFoundError:
            pass
        except (ValueError, UnicodeDecodeError):   # JSONDecodeError is a ValueError
            _damaged(pre_file, "not a list of texts", console)
        if not pre_file.exists():
            atomic_write_json(pre_file, random_prefixes(model, tokenizer))
            out["prefixes"] = json.loads(pre_file.read_text())
    if not {"cinv", "cov"} & set(parts):
        return out
    d_k = memit.key_width(model, layers[0])
    n_tokens = tokens_per_dk * d_k
    cinv_file = {l: folder / f"cinv_l{l}_n{n_tokens}.safetensors" for l in layers}
    need_c = [l for l in layers if "cov" in parts or ("cinv" in parts and not cinv_file[l].exists())]
    _covariance(model, tokenizer, need_c, folder, n_tokens, console)   # all missing at once

    def read_c(l):   # every start, the first included, computes with C as read back (float32)
        for _ in range(2):   # a damaged file is removed by _read, then made again
            C = _read(_covariance(model, tokenizer, [l], folder, n_tokens, console)[l], "C",
                      (d_k, d_k), console)
            if C is not None:
                return C.astype(np.float64)
        raise RuntimeError(f"the key statistics of layer {l} cannot be written to {folder}")

    if "cinv" in parts:
        out["cinv"] = {}
        for l in layers:   # one layer at a time: at 8192 wide each C or C⁻¹ is 0.5 GB
            bits = _read(cinv_file[l], "cinv_float64_bits", (d_k, 2 * d_k), console)
            if bits is None:
                if console is not None and d_k >= 4096:
                    console.print(f"[dim]inverting the key statistics of layer {l} "
                                  "(once per model)[/dim]")
                bits = np.ascontiguousarray(memit.inverse(read_c(l))).view(np.uint32)
                atomic_save_arrays(cinv_file[l], {"cinv_float64_bits": bits})
            out["cinv"][l] = bits.view(np.float64)
    if "cov" in parts:
        out["cov"] = {l: read_c(l) for l in layers}
    return out


def _read(path: Path, name: str, shape: tuple, console):
    """The array `name` of a cache file of that `shape`, or None (see _read_all)."""
    got = _read_all(path, {name: shape}, console)
    return None if got is None else got[name]


def _read_all(path: Path, shapes: dict, console):
    """{name: array} of a cache file, or None when the file is missing, unreadable or an
    array is missing or of the wrong shape — a damaged file is removed (said on the console)
    and made again by the caller, never used. A dimension given as a letter is any length,
    the same wherever that letter stands ("n": the rows of X and of its labels)."""
    if not path.exists():
        return None
    try:
        got = load_arrays(path)
        got = {k: got[k] for k in shapes}
        sizes = {}
        for k, shape in shapes.items():
            a = got[k]
            if len(a.shape) != len(shape) or any(
                    sizes.setdefault(want, n) != n if isinstance(want, str) else want != n
                    for want, n in zip(shape, a.shape)):
                raise ValueError(f"{k} of shape {a.shape}, not {shape}")
        return got
    except Exception as e:   # MLX's loader raises RuntimeError/ValueError on damaged files
        why = (str(e).splitlines() or [type(e).__name__])[0][:100]
    _damaged(path, why, console)
    return None


def _damaged(path: Path, why: str, console):
    path.unlink(missing_ok=True)
    if console is not None:
        console.print(f"[yellow]the cached key statistics file {path} was damaged ({why}); "
                      "making it again[/yellow]")


def _negatives(model, tokenizer, layer, folder: Path, console) -> np.ndarray:
    """The MLP inputs at `layer` over the model's own text about everyday topics (cached)."""
    d = memit.mlp_width(model, layer)
    tag = hashlib.sha256(json.dumps(TOPICS).encode()).hexdigest()[:12]
    path = folder / f"negatives_l{layer}_topics{len(TOPICS)}_{tag}.safetensors"
    rows = 2 * len(TOPICS) * TEXT_LEN
    for _ in range(2):
        X = _read(path, "X", (rows, d), console)
        if X is not None:
            return X.astype(np.float32)
        from rich.progress import Progress

        with Progress(transient=True, console=console) as bar:
            bar.add_task(f"Ordinary-text inputs of layer {layer} (once per model)", total=None)
            X = memit.mlp_inputs(model, topic_batches(model, tokenizer), layer)
        atomic_save_arrays(path, {"X": X.astype(np.float16)})
    raise RuntimeError(f"the ordinary-text inputs of layer {layer} cannot be written to {folder}")


STRANGER_TOKENS = 20   # the model's continuation of each stranger's cue (eval's neighbours')


def _strangers(model, tokenizer, layer, folder: Path, console):
    """(X, who): the MLP inputs at `layer` at every token of each of relations.strangers_cues
    and of the model's greedy continuation of it, and for each row the index in
    relations.STRANGERS of the person its text is about (cached)."""
    d = memit.mlp_width(model, layer)
    said = relations.strangers_cues()
    tag = hashlib.sha256(json.dumps([said, STRANGER_TOKENS]).encode()).hexdigest()[:12]
    path = folder / f"strangers_l{layer}_{len(said)}_{tag}.safetensors"
    for _ in range(2):
        got = _read_all(path, {"X": ("n", d), "who": ("n",)}, console)
        if got is not None:
            return got["X"].astype(np.float32), got["who"].astype(np.int64)
        from rich.progress import Progress

        with Progress(transient=True, console=console) as bar:
            bar.add_task(f"Others' facts at layer {layer} (once per model)", total=None)
            ids = [probes.raw_ids(tokenizer, c) for _, c in said]
            texts = probes.generate(model, tokenizer, ids, max_tokens=STRANGER_TOKENS)
            full = [list(i) + tokenizer.encode(t, add_special_tokens=False)
                    for i, t in zip(ids, texts)]
            prompts = [memit.Prompt(f, len(f), [(0, t) for t in range(len(f))]) for f in full]
            X = memit.mlp_inputs(model, [prompts], layer)
            who = np.concatenate([np.full(len(f), relations.STRANGERS.index(p))
                                  for (p, _), f in zip(said, full)])
        atomic_save_arrays(path, {"X": X.astype(np.float16), "who": who.astype(np.int32)})
    raise RuntimeError(f"the others' facts' inputs of layer {layer} cannot be written to {folder}")


def _covariance(model, tokenizer, layers, folder: Path, n_tokens: int, console) -> dict:
    """{layer: the cache file of C}; the layers not cached yet computed (and cached) first."""
    files = {l: folder / f"cov_l{l}_n{n_tokens}.safetensors" for l in layers}
    missing = [l for l in layers if not files[l].exists()]
    if missing:
        from rich.progress import Progress

        with Progress(transient=True, console=console) as bar:
            task = bar.add_task(f"Key statistics for layers {missing} (once per model)", total=None)
            batches = text_batches(model, tokenizer, n_tokens)
            bar.update(task, total=len(batches) * 2, completed=len(batches))
            got, _ = memit.covariance(model, batches, missing,
                                      progress=lambda i, m: bar.update(task, completed=m + i))
        for l in missing:
            atomic_save_arrays(files[l], {"C": got[l].astype(np.float32)})
    return files
