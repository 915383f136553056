"""The app's HTTP API through gradio_client, as another program would use it."""

from gradio_client import Client


def test_search_endpoint(server_url):
    gallery, results = Client(server_url, verbose=False).predict(
        "I am so happy today", 5, api_name="/search")
    assert len(gallery) == len(results) == 5
    assert results[0]["emotion"] == "joy"
    assert results[0]["file"].endswith(".webp")
    assert all(item["caption"].endswith(result["emotion"])
               for item, result in zip(gallery, results))


def test_chat_endpoint_takes_plain_history_and_returns_the_reply(server_url):
    client = Client(server_url, verbose=False)
    reply = client.predict("I just failed my exam", [], api_name="/chat")
    assert {"text", "sticker", "mood", "alternatives", "timings_ms"} <= set(reply)
    assert reply["text"].strip() and reply["sticker"]["label"]
    assert reply["sticker"]["file"].endswith(".webp")
    history = [{"role": "user", "content": "I just failed my exam"},
               {"role": "assistant", "content": reply["text"], "sticker": reply["sticker"]}]
    follow_up = client.predict("thanks, that helps", history, api_name="/chat")
    assert follow_up["text"].strip()


def test_respond_endpoint_returns_chatbot_messages_with_a_sticker(server_url):
    history, reply, alternatives, cleared = Client(server_url, verbose=False).predict(
        "We won the championship!", [], api_name="/respond")
    assert cleared == ""
    assert len(alternatives) == len(reply["alternatives"]) > 0
    assert [message["role"] for message in history] == ["user", "assistant"]
    assert [block["type"] for block in history[1]["content"]] == ["text", "file", "text"]
    assert history[1]["content"][1]["alt_text"] == reply["sticker"]["label"]


def test_chat_endpoint_refuses_an_empty_message(server_url):
    import pytest
    from gradio_client.exceptions import AppError

    with pytest.raises(AppError, match="empty"):
        Client(server_url, verbose=False).predict("  ", [], api_name="/chat")
    with pytest.raises(AppError, match="limit"):
        Client(server_url, verbose=False).predict("x" * 3000, [], api_name="/chat")


def test_search_image_endpoint_finds_the_same_sticker(server_url, engine, tmp_path):
    from gradio_client import handle_file
    from gradio_client.exceptions import AppError

    sticker = engine.live.get().library.stickers[42]
    client = Client(server_url, verbose=False)
    gallery, results = client.predict(handle_file(str(sticker.path)), 3, api_name="/search_image")
    assert results[0]["id"] == sticker.id and len(gallery) == 3
    import pytest
    from PIL import Image

    huge = tmp_path / "huge.png"
    Image.new("RGB", (5000, 5000), "white").save(huge)
    with pytest.raises(AppError, match="cannot be used.*pixels"):
        client.predict(handle_file(str(huge)), 3, api_name="/search_image")
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n not really")
    with pytest.raises(AppError, match="cannot identify image"):  # Gradio's own check
        client.predict(handle_file(str(broken)), 3, api_name="/search_image")
    assert client.predict("I am so happy today", 2, api_name="/search")[1]  # still serving


def test_predict_emotion_endpoint(server_url):
    import pytest
    from gradio_client.exceptions import AppError

    client = Client(server_url, verbose=False)
    reading = client.predict("Ann: I won the lottery!\nBob: That's amazing, congratulations!",
                             "", "sentiment3", api_name="/predict_emotion")
    assert reading["next_speaker"] == "Ann" and reading["scheme"] == "sentiment3"
    assert [t["speaker"] for t in reading["turns"]] == ["Ann", "Bob"]
    assert set(reading["forecast"]) == {"positive", "neutral", "negative"}
    assert max(reading["turns"][0]["emotion"], key=reading["turns"][0]["emotion"].get) == "positive"
    with pytest.raises(AppError, match="unknown label scheme"):
        client.predict("Ann: hi", "", "moods", api_name="/predict_emotion")
    with pytest.raises(AppError, match="empty"):
        client.predict("  ", "", "", api_name="/predict_emotion")
