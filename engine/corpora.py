"""Readers of the seeds' dialogue formats, each into the same ``Dialogue`` type.

MELD and EmoryNLP CSVs (MELD's repository formats), MOD JSON (DSTC10), and the unlabelled
``chitchat-dataset`` that pre-trains the pre-recognizer. Also the P-MELD construction: one
forecasting example per utterance after the first, defined in ``../shared/data/README.md``.
"""

from __future__ import annotations

import ast
import csv
import json
import re
from dataclasses import dataclass
from pathlib import Path

from engine.dialogue import Dialogue, Turn
from engine.metrics import in_share
from engine.schemes import scheme

CONVERSATIONS_HELD_OUT = 26 / 256  # one conversation in ten, the slice the bundled response selector never saw

MOJIBAKE_MARKERS = ("â€", "Ã", "Â")


def fix_mojibake(text: str) -> str:
    """MELD's UTF-8 was decoded as cp1252 once (``â€™`` for ``’``): undo that where it was."""
    if not any(marker in text for marker in MOJIBAKE_MARKERS):
        return text
    try:
        return text.encode("cp1252").decode("utf-8")
    except (UnicodeEncodeError, UnicodeDecodeError):
        return text


def _rows(path: Path, required: tuple[str, ...]) -> list[dict]:
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{path} does not exist")
    with path.open(encoding="utf-8", newline="") as handle:
        reader = csv.DictReader(handle)
        missing = [column for column in required if column not in (reader.fieldnames or [])]
        if missing:
            raise ValueError(f"{path.name} lacks the column(s) {', '.join(missing)}")
        return list(reader)


def _grouped(rows: list[dict], key: str, make_turn, prefix: str) -> list[Dialogue]:
    dialogues: dict[str, list[tuple[int, Turn]]] = {}
    for line, row in enumerate(rows, start=2):
        try:
            order = int(row["Utterance_ID"])
            dialogues.setdefault(row[key], []).append((order, make_turn(row)))
        except ValueError as error:
            raise ValueError(f"line {line}: {error}") from None
    return [Dialogue(tuple(turn for _, turn in sorted(turns, key=lambda pair: pair[0])),
                     f"{prefix}{dialogue_id}")
            for dialogue_id, turns in sorted(dialogues.items(), key=lambda item: _number(item[0]))]


def _number(text: str):
    return (0, int(text), "") if text.isdigit() else (1, 0, text)


def read_meld(path: Path) -> list[Dialogue]:
    """MELD's ``{split}_sent_emo.csv``: Utterance, Speaker, Emotion, Sentiment, Dialogue_ID,
    Utterance_ID; labels are checked against Ekman-7 and sentiment-3."""
    emotions, sentiments = scheme("ekman7"), scheme("sentiment3")

    def turn(row: dict) -> Turn:
        emotion, sentiment = row["Emotion"].strip().lower(), row["Sentiment"].strip().lower()
        emotions.index(emotion), sentiments.index(sentiment)  # refuse unknown labels
        return Turn(fix_mojibake(row["Speaker"]).strip(), fix_mojibake(row["Utterance"]).strip(),
                    emotion=emotion, sentiment=sentiment)

    rows = _rows(path, ("Utterance", "Speaker", "Emotion", "Sentiment", "Dialogue_ID",
                        "Utterance_ID"))
    return _grouped(rows, "Dialogue_ID", turn, "meld-")


def read_emorynlp(path: Path) -> list[Dialogue]:
    """EmoryNLP's CSV from MELD's repository: Utterance, Speaker (a list literal such as
    ``['Monica Geller']``), Emotion (Joyful, Mad, …), Scene_ID, Utterance_ID."""
    emotions = scheme("emorynlp")

    def turn(row: dict) -> Turn:
        emotion = row["Emotion"].strip().lower()
        emotions.index(emotion)
        return Turn(_speaker_name(row["Speaker"]), fix_mojibake(row["Utterance"]).strip(),
                    emotion=emotion)

    rows = _rows(path, ("Utterance", "Speaker", "Emotion", "Scene_ID", "Utterance_ID"))
    for row in rows:  # a scene id repeats across episodes
        row["Scene_ID"] = f"s{row.get('Season', '')}e{row.get('Episode', '')}c{row['Scene_ID']}"
    return _grouped(rows, "Scene_ID", turn, "emorynlp-")


def _speaker_name(field: str) -> str:
    field = field.strip()
    if field.startswith("["):
        try:
            names = ast.literal_eval(field)
            return ", ".join(str(name) for name in names) or "unknown"
        except (ValueError, SyntaxError):
            pass
    return field or "unknown"


def read_mod(path: Path, memes: dict[str, str] | None = None) -> list[Dialogue]:
    """MOD JSON (DSTC10): ``{"dialogue N": [{"speaker_id", "txt", "img_id"?, "emotion_id"?}]}``.
    A meme turn reads as the meme's text from ``memes`` (id → OCR text), else its id."""
    path = Path(path)
    try:
        data = json.loads(path.read_text("utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(f"{path.name} is not MOD JSON: {error}") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path.name} is not MOD JSON: expected an object of dialogues")
    emotions, dialogues = scheme("mod"), []
    for name, turns in data.items():
        if not isinstance(turns, list):
            raise ValueError(f"{path.name}: {name!r} is not a list of turns")
        parsed = []
        for turn in turns:
            emotion = str(turn["emotion_id"]) if "emotion_id" in turn else ""
            if emotion:
                emotions.index(emotion)
            meme = str(turn.get("img_id", "") or "")
            parsed.append(Turn(str(turn.get("speaker_id", "unknown")).strip("[]"),
                               str(turn.get("txt", "")).strip(),
                               sticker_text=(memes or {}).get(meme, f"meme {meme}") if meme else "",
                               emotion=emotion))
        dialogues.append(Dialogue(tuple(parsed), f"mod-{name}"))
    return dialogues


def read_mod_memes(path: Path) -> dict[str, str]:
    """MOD's meme catalogue ``{"<img_id>": {"ocr": ..., "name": ...}}`` → id → text."""
    data = json.loads(Path(path).read_text("utf-8"))
    return {meme_id: (entry.get("ocr") or Path(entry.get("name", "")).stem).strip()
            for meme_id, entry in data.items()}


def read_chitchat(limit: int | None = None) -> list[Dialogue]:
    """Conversations of the ``chitchat-dataset`` package (unlabelled; two people)."""
    import chitchat_dataset

    data = json.loads(Path(chitchat_dataset._PATH).read_text("utf-8"))
    dialogues = []
    for name, conversation in data.items():
        turns = []
        for message in conversation["messages"]:
            text = " ".join(part["text"] for part in message).strip()
            if text:
                turns.append(Turn(str(message[0].get("sender", "unknown")), text))
        if len(turns) >= 2:
            dialogues.append(Dialogue(tuple(turns), f"chitchat-{name}"))
        if limit and len(dialogues) >= limit:
            break
    return dialogues


CHINESE_CORPUS = "chatterbot-zh"
# chatterbot-corpus's Chinese topics that are people talking; the others (ai, botprofile,
# emotion, food, gossip, politics, psychology) are mostly a bot talking about being one.
CHATTERBOT_TOPICS = ("conversations", "greetings", "humor", "literature", "money", "movies",
                     "science", "sports", "history", "trivia")


def read_chatterbot_chinese(limit: int | None = None) -> list[Dialogue]:
    """The Chinese dialogues of the ``chatterbot-corpus`` package (BSD-3-Clause: the only
    Chinese conversations found in a package whose licence lets the app ship them; small and
    often machine-translated, so MOD's dialogues, read by path, remain the better corpus)."""
    import chatterbot_corpus
    import yaml

    folder = Path(chatterbot_corpus.__file__).parent / "data" / "chinese"
    dialogues = []
    for topic in CHATTERBOT_TOPICS:
        data = yaml.safe_load((folder / f"{topic}.yml").read_text("utf-8"))
        for n, conversation in enumerate(data.get("conversations") or []):
            texts = [str(text).strip() for text in conversation if str(text).strip()]
            if len(texts) >= 2:
                turns = tuple(Turn("AB"[i % 2], text) for i, text in enumerate(texts))
                dialogues.append(Dialogue(turns, f"chatterbot-zh-{topic}-{n}"))
    return dialogues[:limit]


def read_conversations(source: str, limit: int | None = None) -> list[Dialogue]:
    """Conversations by setting: ``chitchat`` (the package's training conversations: the
    held-out ones are what replies are measured on), ``chatterbot-zh`` (Chinese, a
    package), a MOD JSON file, a MELD or EmoryNLP CSV, or a transcript file (``Name: text``
    per line, a blank line between conversations). A file with none in it is refused
    (ValueError)."""
    if source == "chitchat":
        return chitchat_split(limit, evaluation=0)[0]
    if source == CHINESE_CORPUS:
        return read_chatterbot_chinese()  # every one: a few hundred turns
    path = Path(source)
    if not path.is_file():
        raise ValueError(f"no conversation file at {path}: give chitchat, a MOD JSON file, a "
                         "MELD or EmoryNLP CSV or a transcript file")
    suffix = path.suffix.lower()
    if suffix == ".json":
        dialogues = read_mod(path)
    elif suffix == ".csv":
        dialogues = _read_csv_conversations(path)
    else:
        blocks = re.split(r"\n\s*\n", path.read_text("utf-8"))
        dialogues = [Dialogue.from_transcript(block) for block in blocks if block.strip()]
    if not dialogues:
        raise ValueError(f"{path.name} holds no conversation")
    return dialogues[:limit]


def _read_csv_conversations(path: Path) -> list[Dialogue]:
    """MELD's or EmoryNLP's CSV, told apart by their columns."""
    with path.open(encoding="utf-8", newline="") as file:
        header = set(next(csv.reader(file), []))
    if "Scene_ID" in header:
        return read_emorynlp(path)
    if {"Dialogue_ID", "Utterance_ID", "Utterance", "Speaker", "Emotion"} <= header:
        return read_meld(path)
    raise ValueError(f"{path.name}: a conversation CSV needs MELD's columns (Utterance, "
                     "Speaker, Emotion, Sentiment, Dialogue_ID, Utterance_ID) or EmoryNLP's "
                     "(with Scene_ID)")


@dataclass(frozen=True)
class Forecast:
    """One pre-recognition example: the context, who speaks next, and what they then felt."""

    context: Dialogue
    next_speaker: str
    emotion: str
    sentiment: str


def forecasting_examples(dialogues: list[Dialogue]) -> list[Forecast]:
    """P-MELD: for every utterance t ≥ 1 of every dialogue, context = turns 0…t−1 (their gold
    labels dropped: a model must not see them), target = utterance t's labels."""
    examples = []
    for dialogue in dialogues:
        bare = tuple(Turn(turn.speaker, turn.text, turn.sticker_text) for turn in dialogue.turns)
        for t in range(1, len(dialogue.turns)):
            examples.append(Forecast(Dialogue(bare[:t], dialogue.id), dialogue.turns[t].speaker,
                                     dialogue.turns[t].emotion, dialogue.turns[t].sentiment))
    return examples


def chitchat_split(conversations: int | None, evaluation: int = 300) -> tuple[list[Dialogue], list[Dialogue]]:
    """The first ``conversations`` (None: all) training conversations of chitchat-dataset
    and the first ``evaluation`` held-out ones."""
    everything = read_chitchat()
    train = [d for d in everything if not in_share(d.id, CONVERSATIONS_HELD_OUT)][:conversations]
    return train, [d for d in everything if in_share(d.id, CONVERSATIONS_HELD_OUT)][:evaluation]


def mod_split(path: Path | None) -> tuple[list[Dialogue], list[Dialogue]]:
    """MOD's dialogues (a MOD JSON file; none without one), training and held-out ones."""
    dialogues = read_mod(path) if path else []
    return ([d for d in dialogues if not in_share(d.id, CONVERSATIONS_HELD_OUT)],
            [d for d in dialogues if in_share(d.id, CONVERSATIONS_HELD_OUT)])
