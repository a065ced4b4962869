import random

import pytest
import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

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
    return fit_tokenizer(task, demos)


@pytest.fixture
def tiny_model(tokenizer):
    """A randomly initialised tiny Llama (no pretraining): fast, and enough for plumbing."""
    return build_model(TinyModelConfig(hidden_size=16, layers=1, heads=2, intermediate_size=32), tokenizer).eval()


@pytest.fixture(scope="session")
def dialogue(tokenizer):
    return PlainDialogue(tokenizer)


def tiny_text_llama(texts):
    """A byte-level BPE fitted in a moment to `texts`, and a random 1-layer Llama: any text, no download."""
    core = Tokenizer(models.BPE())
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.decoder = decoders.ByteLevel()
    core.train_from_iterator(texts, trainers.BpeTrainer(
        vocab_size=400, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), special_tokens=["<pad>", "<bos>", "<eos>"]))
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=core, pad_token="<pad>", bos_token="<bos>", eos_token="<eos>")
    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
        num_key_value_heads=2, max_position_embeddings=4096, pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, tie_word_embeddings=True))
    return model.eval(), tokenizer
