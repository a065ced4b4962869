import random

import pytest

from selfcorrect.dialogue import PlainDialogue
from selfcorrect.models.tiny import TinyModelConfig, build_model, fit_tokenizer
from selfcorrect.tasks import ModRootTask


@pytest.fixture(scope="session")
def task():
    return ModRootTask()


@pytest.fixture(scope="session")
def tokenizer(task):
    rng = random.Random(0)
    demos = [task.demonstration(rng) for _ in range(300)]
    return fit_tokenizer([task.instruction] + [p + " " + " ".join(a) for p, a in demos])


@pytest.fixture
def tiny_model(tokenizer):
    """A randomly initialised tiny Llama (no pretraining): fast, and enough for plumbing."""
    return build_model(TinyModelConfig(hidden_size=16, layers=1, heads=2, intermediate_size=32), tokenizer).eval()


@pytest.fixture(scope="session")
def dialogue(tokenizer):
    return PlainDialogue(tokenizer)
