"""Chat core: the conversation through the model's chat template, streamed token by token.

The conversation holds only what was said: nothing about stored memories ever enters the
prompt. Facts live in the weights.
"""
from dataclasses import dataclass, field

from mlx_lm import stream_generate
from mlx_lm.sample_utils import make_sampler


@dataclass
class Conversation:
    system_prompt: str | None = None
    messages: list = field(default_factory=list)  # [{"role": ..., "content": ...}]
    dropped: int = 0  # turns dropped to fit the context window

    def clear(self):
        self.messages.clear()
        self.dropped = 0


def render(tokenizer, messages, system_prompt=None, add_generation_prompt=True) -> list[int]:
    """Token ids of `messages` through the tokenizer's chat template."""
    msgs = list(messages)
    if system_prompt:
        msgs = [{"role": "system", "content": system_prompt}] + msgs
    return tokenizer.apply_chat_template(msgs, add_generation_prompt=add_generation_prompt,
                                         tokenize=True)


def fit(tokenizer, conv: Conversation, budget: int) -> list[int]:
    """Prompt tokens for the conversation, dropping the oldest turns until it fits `budget`.

    The newest user message is never dropped; if it alone is too long, it is refused.
    """
    while True:
        tokens = render(tokenizer, conv.messages, conv.system_prompt)
        if len(tokens) <= budget:
            return tokens
        if len(conv.messages) <= 1:
            raise ValueError(f"message too long for the context window "
                             f"({len(tokens)} tokens > {budget}); shorten it")
        # drop the oldest user turn and the assistant reply that followed it
        drop = 2 if len(conv.messages) > 2 and conv.messages[1]["role"] == "assistant" else 1
        del conv.messages[:drop]
        conv.dropped += 1


def no_repeat(n: int, prompt_len: int):
    """A logits processor that forbids any n-gram the reply has already produced: after
    tokens a b c (n = 4), the token that followed a b c earlier in the reply gets -inf.
    Only the reply is looked at, never the prompt, so "What is my dog's name?" → "Your dog's
    name is …" stays free; what it stops is a small model's loops ("A beautiful name for a
    city. A beautiful name for a city. …")."""
    seen: dict[tuple, set] = {}
    reply: list[int] = []

    def process(tokens, logits):
        if len(tokens) > prompt_len + len(reply):
            reply.extend(tokens[prompt_len + len(reply):].tolist())
            if len(reply) >= n:
                seen.setdefault(tuple(reply[-n:-1]), set()).add(reply[-1])
        banned = seen.get(tuple(reply[-(n - 1):])) if len(reply) >= n - 1 else None
        if banned:
            logits[:, list(banned)] = -float("inf")
        return logits

    return process


def generate(model, tokenizer, prompt_tokens, max_tokens=256, temp=0.0, no_repeat_ngram=0):
    """Yield GenerationResponse objects (text segments + speed) for a token prompt.

    temp == 0 is greedy (argmax); no_repeat_ngram > 0 forbids repeating an n-gram of the
    reply (`no_repeat`)."""
    sampler = make_sampler(temp=float(temp))
    procs = [no_repeat(no_repeat_ngram, len(prompt_tokens))] if no_repeat_ngram > 0 else None
    yield from stream_generate(model, tokenizer, prompt_tokens, max_tokens=max_tokens,
                               sampler=sampler, logits_processors=procs)


def complete(model, tokenizer, prompt_tokens, max_tokens=32) -> str:
    """Greedy continuation as one string (used by probes and tests)."""
    return "".join(r.text for r in generate(model, tokenizer, prompt_tokens, max_tokens))
