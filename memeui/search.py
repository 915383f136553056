"""The Search tab: a text query in, ranked stickers out."""

from __future__ import annotations

from pathlib import Path

import gradio as gr

from engine import Engine

ANY_EMOTION = "any"


def for_api(result: dict) -> dict:
    """A search-result dict safe to return through Gradio: a dict with a ``path`` key would be
    taken for a file to upload, so the server-side path travels as ``file``."""
    result = dict(result)
    result["file"] = result.pop("path")
    return result


def build_search_tab(engine: Engine) -> None:
    def shown(results):
        gallery = [(str(r.path), f"{r.emoji} {r.label} · {r.score:.2f} · {r.emotion}")
                   for r in results]
        return gallery, [for_api(r.to_dict()) for r in results]

    def search(query: str, k: float, emotion: str = ANY_EMOTION):
        try:
            return shown(engine.search(query, int(k), None if emotion == ANY_EMOTION else emotion))
        except ValueError as error:
            raise gr.Error(str(error), duration=5) from None

    def search_image(image: str | None, k: float):
        if not image:
            raise gr.Error("Upload a picture first.", duration=5)
        try:
            return shown(engine.search_image(Path(image), int(k)))
        except ValueError as error:
            raise gr.Error(f"That picture cannot be used: {error}", duration=8) from None

    with gr.Row():
        query = gr.Textbox(label="Query or dialogue", scale=5, lines=2, max_lines=12,
                           placeholder="I am so happy today\n… or paste a dialogue, "
                                       "one 'Name: text' per line",
                           elem_id="search-query", max_length=20_000)
        with gr.Column(scale=2):
            k = gr.Slider(1, 48, value=12, step=1, label="How many")
            emotion = gr.Dropdown([ANY_EMOTION, *engine.scheme.labels], value=ANY_EMOTION,
                                  label="Sticker emotion", elem_id="search-emotion")
    with gr.Row():
        button = gr.Button("Search", variant="primary", elem_id="search-button", scale=3)
        picture = gr.Image(type="filepath", label="…or stickers that look like a picture",
                           height=120, scale=2, elem_id="search-picture")
        similar = gr.Button("Find similar", scale=1, elem_id="search-similar")
    gallery = gr.Gallery(label="Stickers", columns=6, height="auto", elem_id="search-gallery",
                         object_fit="contain")
    with gr.Accordion("Scores", open=False):
        scores = gr.JSON(label="results")
    for trigger, api_name in ((button.click, "search"), (query.submit, False)):
        trigger(search, [query, k, emotion], [gallery, scores], api_name=api_name,
                concurrency_id="search", concurrency_limit=8)
    similar.click(search_image, [picture, k], [gallery, scores], api_name="search_image",
                  concurrency_id="search", concurrency_limit=8)
