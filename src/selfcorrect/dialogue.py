"""How turns become token ids: the first-turn prompt, then instruction turns after attempts.

`PlainDialogue` is plain text (the embedded model has no chat template). `ChatDialogue` lays
the turns out with the tokenizer's chat template (instruction-tuned hub models);
`make_dialogue` picks between them.
"""

from __future__ import annotations

from typing import Protocol

from transformers import PreTrainedTokenizerBase

from .errors import SelfCorrectError


class Dialogue(Protocol):
    eos_id: int
    pad_id: int

    def first_turn(self, prompt: str) -> list[int]:
        """Ids of everything before attempt 1."""

    def next_turn(self, instruction: str) -> list[int]:
        """Ids between the end of an attempt (its eos included) and the next attempt."""

    def decode(self, ids: list[int]) -> str:
        """An attempt's text, special tokens dropped."""


class PlainDialogue:
    def __init__(self, tokenizer: PreTrainedTokenizerBase):
        self.tokenizer = tokenizer
        self.eos_id = tokenizer.eos_token_id
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else self.eos_id
        self._bos = [tokenizer.bos_token_id] if tokenizer.bos_token_id is not None else []

    def _encode(self, text: str) -> list[int]:
        return self.tokenizer.encode(text, add_special_tokens=False)

    def first_turn(self, prompt: str) -> list[int]:
        return self._bos + self._encode(prompt)

    def next_turn(self, instruction: str) -> list[int]:
        return self._encode(instruction)

    def decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=True)


# Stands in for an attempt when rendering the template; no template alters a bare word.
_PLACEHOLDER = "SelfCorrectAttemptPlaceholder"


class ChatDialogue:
    """Turns rendered with the tokenizer's chat template.

    first_turn is [system?][user: prompt][assistant header]. next_turn is what the template puts
    between an assistant message's end-of-turn token and the next assistant header: it is cut
    from a rendered conversation rather than rendered alone, so default system prompts and
    beginning-of-text tokens are never repeated mid-dialogue. eos_id is the end-of-turn token.
    """

    def __init__(self, tokenizer: PreTrainedTokenizerBase, system_prompt: str | None = None):
        if not getattr(tokenizer, "chat_template", None):
            raise SelfCorrectError("tokenizer: has no chat template (use PlainDialogue)")
        self.tokenizer = tokenizer
        self._head = [] if system_prompt is None else [{"role": "system", "content": system_prompt}]
        closed = self._after_attempt([{"role": "user", "content": "Q"}, {"role": "assistant", "content": _PLACEHOLDER}],
                                     generation_prompt=False)
        ids = self._encode(closed)
        token = tokenizer.convert_ids_to_tokens(ids[0]) if ids else None
        if token is None or not (ids[0] in tokenizer.all_special_ids or token in tokenizer.get_added_vocab()):
            raise SelfCorrectError(f"tokenizer: its chat template ends an assistant turn with {closed[:20]!r}, "
                                   "not a special token; use PlainDialogue")
        self.eos_id = ids[0]
        self._end_of_turn = token
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else self.eos_id

    def _render(self, messages: list[dict], generation_prompt: bool) -> str:
        return self.tokenizer.apply_chat_template(self._head + messages, tokenize=False,
                                                  add_generation_prompt=generation_prompt)

    def _after_attempt(self, messages: list[dict], generation_prompt: bool) -> str:
        text = self._render(messages, generation_prompt)
        # Whitespace some templates put before the end-of-turn token (Llama 2: " </s>") is not
        # what a model emits right before that token, so it is left out.
        return text[text.index(_PLACEHOLDER) + len(_PLACEHOLDER):].lstrip()

    def _encode(self, text: str) -> list[int]:
        # As apply_chat_template(tokenize=True) does: the template writes any special tokens itself.
        return self.tokenizer.encode(text, add_special_tokens=False)

    def first_turn(self, prompt: str) -> list[int]:
        return self._encode(self._render([{"role": "user", "content": prompt}], generation_prompt=True))

    def next_turn(self, instruction: str) -> list[int]:
        # The attempt already ends with the end-of-turn token when the model emitted it.
        messages = [{"role": "user", "content": "Q"}, {"role": "assistant", "content": _PLACEHOLDER},
                    {"role": "user", "content": instruction}]
        return self._encode(self._after_attempt(messages, generation_prompt=True).removeprefix(self._end_of_turn))

    def decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=True)


def make_dialogue(tokenizer: PreTrainedTokenizerBase, system_prompt: str | None = None) -> Dialogue:
    """ChatDialogue when the tokenizer has a chat template, else PlainDialogue."""
    if getattr(tokenizer, "chat_template", None):
        return ChatDialogue(tokenizer, system_prompt)
    if system_prompt is not None:
        raise SelfCorrectError("system_prompt: needs a tokenizer with a chat template")
    return PlainDialogue(tokenizer)
