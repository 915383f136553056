"""The app's HTTP API through gradio_client, as another program would use it."""

from gradio_client import Client


def test_search_endpoint(server_url):
    gallery, results = Client(server_url, verbose=False).predict(
        "I am so happy today", 5, api_name="/search")
    assert len(gallery) == len(results) == 5
    assert results[0]["emotion"] == "joy"
    assert all(item["caption"].endswith(result["emotion"])
               for item, result in zip(gallery, results))


def test_chat_endpoint_returns_history_and_reply(server_url):
    client = Client(server_url, verbose=False)
    history, reply, cleared = client.predict("I just failed my exam", [], api_name="/chat")
    assert cleared == ""
    assert [message["role"] for message in history] == ["user", "assistant"]
    assert reply["text"].strip() and reply["sticker"]["label"]
    kinds = [block["type"] for block in history[1]["content"]]
    assert kinds == ["text", "file", "text"]
    history, reply, _ = client.predict("tell me more", history, api_name="/chat")
    assert len(history) == 4


def test_chat_endpoint_refuses_an_empty_message(server_url):
    import pytest
    from gradio_client.exceptions import AppError

    with pytest.raises(AppError, match="empty"):
        Client(server_url, verbose=False).predict("  ", [], api_name="/chat")
