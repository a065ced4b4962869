"""How turns become token ids: the first-turn prompt, then instruction turns after attempts.

`PlainDialogue` is plain text (the embedded model has no chat template). A chat-template
dialogue for hub models implements the same three methods.
"""

from __future__ import annotations

from typing import Protocol

from transformers import PreTrainedTokenizerBase


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
