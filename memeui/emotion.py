"""The Emotion tab: a conversation in, each turn's emotion and the next speaker's forecast out."""

from __future__ import annotations

import gradio as gr
import pandas as pd

from engine import Dialogue, Engine, Turn
from engine.dialogue import MAX_MESSAGE_CHARS
from engine.schemes import SCHEMES

AUTO = ""
EXAMPLE = ("Ross: I got the job at the museum!\n"
           "Rachel: Oh my God, Ross, that's amazing!\n"
           "Ross: I start Monday, and I'm terrified.")
SHOWABLE = [name for name, s in SCHEMES.items() if s.ekman_links is not None]


def records(rows) -> list[list]:
    """The editor table's rows, whether Gradio hands a DataFrame or lists."""
    return rows.values.tolist() if isinstance(rows, pd.DataFrame) else list(rows or [])


def dialogue_from_rows(rows) -> Dialogue:
    """The editor's table (speaker, text) as a dialogue; empty rows are skipped."""
    turns = []
    for record in records(rows):
        speaker, text = (str(value or "").strip() for value in (list(record) + ["", ""])[:2])
        if not text:
            continue
        if len(text) > MAX_MESSAGE_CHARS:
            raise ValueError(f"A turn is {len(text)} characters long; the limit is "
                             f"{MAX_MESSAGE_CHARS}.")
        turns.append(Turn(speaker or "user", text))
    if not turns:
        raise ValueError("The conversation is empty: add a turn or paste a transcript.")
    return Dialogue(tuple(turns))


def rows_from_transcript(transcript: str) -> list[list[str]]:
    return [[turn.speaker, turn.text] for turn in Dialogue.from_transcript(transcript).turns]


def plots(reading) -> tuple[pd.DataFrame, pd.DataFrame]:
    forecast = pd.DataFrame({"emotion": list(reading.forecast),
                             "probability": list(reading.forecast.values())})
    per_turn = pd.DataFrame(
        [{"turn": f"{i + 1}. {turn.speaker}", "emotion": label, "probability": p}
         for i, turn in enumerate(reading.turns) for label, p in turn.emotion.items()])
    return forecast, per_turn


def build_emotion_tab(engine: Engine) -> None:
    def predict_emotion(transcript: str, next_speaker: str = AUTO, scheme: str = AUTO) -> dict:
        """Each turn's emotion and the forecast for who speaks next. TRANSCRIPT: one
        'Name: text' per line. NEXT_SPEAKER: a name (empty: the speaker before the last one).
        SCHEME: ekman7, sentiment3, plutchik8, iemocap or emorynlp (empty: the deployment's)."""
        try:
            dialogue = Dialogue.from_transcript(transcript)
            return engine.read_emotion(dialogue, next_speaker or None, scheme or None).to_dict()
        except ValueError as error:
            raise gr.Error(str(error), duration=8) from None

    def read(rows, next_speaker: str, scheme: str):
        try:
            reading = engine.read_emotion(dialogue_from_rows(rows), next_speaker or None, scheme)
        except ValueError as error:
            raise gr.Error(str(error), duration=8) from None
        forecast, per_turn = plots(reading)
        title = f"What {reading.next_speaker} will feel next"
        return (gr.BarPlot(forecast, x="emotion", y="probability", y_lim=[0, 1], title=title,
                           sort=list(reading.forecast)),
                gr.BarPlot(per_turn, x="turn", y="probability", color="emotion",
                           y_lim=[0, 1], sort=None, title="Each turn, as recognized"),
                reading.to_dict())

    def load_transcript(transcript: str):
        try:
            return rows_from_transcript(transcript)
        except ValueError as error:
            raise gr.Error(str(error), duration=8) from None

    def add_turn(rows, speaker: str, text: str):
        if not text.strip():
            raise gr.Error("Type what the speaker says first.", duration=5)
        return [*[r for r in records(rows) if any(str(v or "").strip() for v in r)],
                [speaker.strip() or "user", text.strip()]], ""

    with gr.Row():
        with gr.Column(scale=3):
            table = gr.Dataframe(value=rows_from_transcript(EXAMPLE), headers=["speaker", "text"],
                                 datatype=["str", "str"], col_count=(2, "fixed"),
                                 row_count=(1, "dynamic"), interactive=True, wrap=True,
                                 label="Conversation (edit cells, add rows)", elem_id="emotion-table")
            with gr.Row():
                speaker = gr.Textbox(label="Speaker", value="Rachel", scale=1, max_length=40)
                said = gr.Textbox(label="Says", scale=4, max_length=MAX_MESSAGE_CHARS,
                                  elem_id="emotion-said")
                add = gr.Button("Add turn", scale=1, elem_id="emotion-add")
            with gr.Accordion("Paste a transcript", open=False):
                transcript = gr.Textbox(lines=6, max_length=20_000, show_label=False,
                                        placeholder="Name: text, one turn per line",
                                        elem_id="emotion-transcript")
                load = gr.Button("Load into the table", elem_id="emotion-load")
        with gr.Column(scale=2):
            next_speaker = gr.Textbox(label="Next speaker (empty: the one before the last)",
                                      max_length=40, elem_id="emotion-next")
            scheme = gr.Dropdown(SHOWABLE, value=engine.scheme.name, label="Label scheme",
                                 elem_id="emotion-scheme")
            button = gr.Button("Read emotions", variant="primary", elem_id="emotion-read")
            forecast = gr.BarPlot(x="emotion", y="probability", label="Forecast",
                                  elem_id="emotion-forecast")
    per_turn = gr.BarPlot(x="turn", y="probability", color="emotion", label="Turns",
                          elem_id="emotion-turns")
    with gr.Accordion("As JSON", open=False):
        details = gr.JSON(label="reading", elem_id="emotion-json")

    gr.api(predict_emotion, api_name="predict_emotion", concurrency_id="emotion",
           concurrency_limit=4)
    button.click(read, [table, next_speaker, scheme], [forecast, per_turn, details],
                 api_name=False, concurrency_id="emotion", concurrency_limit=4)
    scheme.change(read, [table, next_speaker, scheme], [forecast, per_turn, details],
                  api_name=False, concurrency_id="emotion", concurrency_limit=4)
    load.click(load_transcript, transcript, table, api_name=False)
    add.click(add_turn, [table, speaker, said], [table, said], api_name=False)
    said.submit(add_turn, [table, speaker, said], [table, said], api_name=False)
