"""Evaluation on public data, as commands anyone can rerun.

TweetEval emoji as sticker selection: each of the 20 emoji classes is a sticker of the library;
for each tweet the selector ranks those 20 stickers (the official metric is macro-F1 of the top
one). Dialogue features (embeddings, emotions) are cached by content hash, as are fitted
selectors, so reruns are quick.
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from engine.stickers.image import LitTower
from engine.metrics import class_metrics, macro_f1, per_class
from engine.stickers.selector import SELECTOR_FORMAT, Selector
from engine.stickers.usage import plain_emoji
from engine.schemes import EKMAN7
from engine.paths import CACHE_DIR, MODELS_DIR, STICKER_CHOICES, STICKER_EMOTIONS

log = logging.getLogger(__name__)


@dataclass
class EmojiSplit:
    texts: list[str]
    labels: np.ndarray  # class index per tweet
    emojis: list[str]  # class index → emoji
    digest: str  # content hash of the split's files


def read_tweeteval_emoji(folder: Path, split: str) -> EmojiSplit:
    """``{split}_text.txt``, ``{split}_labels.txt`` and ``mapping.txt`` in ``folder``."""
    folder = Path(folder)
    paths = [folder / f"{split}_text.txt", folder / f"{split}_labels.txt", folder / "mapping.txt"]
    for path in paths:
        if not path.is_file():
            raise ValueError(f"{path} is missing: expected TweetEval's emoji format")
    texts = paths[0].read_text("utf-8").rstrip("\n").split("\n")
    labels = np.array([int(x) for x in paths[1].read_text().split()])
    if len(texts) != len(labels):
        raise ValueError(f"{len(texts)} tweets but {len(labels)} labels in {folder} ({split})")
    emojis = [line.split("\t")[1] for line in paths[2].read_text("utf-8").splitlines() if line.strip()]
    digest = hashlib.sha256(b"".join(p.read_bytes() for p in paths)).hexdigest()[:16]
    return EmojiSplit(texts, labels, emojis, digest)


def stickers_for_emojis(library, emojis: list[str]) -> list[str]:
    """The library sticker of each emoji; a clear error names the ones it lacks."""
    by_emoji = {plain_emoji(s.emoji): s.id for s in library.stickers if s.emoji}
    missing = [e for e in emojis if plain_emoji(e) not in by_emoji]
    if missing:
        raise ValueError(f"no sticker in the library for {' '.join(missing)}")
    return [by_emoji[plain_emoji(e)] for e in emojis]


def ranking_metrics(scores: np.ndarray, gold: np.ndarray, seed: int = 0) -> dict:
    """In percent: macro-F1 and accuracy of the top sticker, R10@1 (gold among 9 random
    others), MRR over all candidates; plus n."""
    n, n_classes = scores.shape
    predicted = scores.argmax(axis=1)
    gold_scores = scores[np.arange(n), gold]
    ranks = 1 + np.sum(scores > gold_scores[:, None], axis=1)
    rng = np.random.default_rng(seed)
    hits = 0
    for i in range(n):
        others = rng.choice(np.delete(np.arange(n_classes), gold[i]), min(9, n_classes - 1),
                            replace=False)
        hits += bool(np.all(scores[i, others] < gold_scores[i]))
    return {
        "macro_f1": round(100 * macro_f1(predicted, gold, n_classes), 2),
        "accuracy": round(100 * float(np.mean(predicted == gold)), 2),
        "r10_at_1": round(100 * hits / n, 2),
        "mrr": round(100 * float(np.mean(1.0 / ranks)), 2),
        "n": int(n),
    }


def library_metrics(ranks: np.ndarray, predicted: np.ndarray, gold: np.ndarray,
                    n_classes: int) -> dict:
    """In percent, for a ranking of the whole library: r@1, r@5, r@10 and MRR of the gold
    sticker (``ranks``: 1-based, ``inf`` where it was not ranked at all), and macro-F1 of the
    top sticker over the gold classes (``predicted``: its class, -1 for any other sticker)."""
    ranks = np.asarray(ranks, dtype=np.float64)
    return {
        **{f"r_at_{k}": round(100 * float(np.mean(ranks <= k)), 2) for k in (1, 5, 10)},
        "mrr": round(100 * float(np.mean(1.0 / ranks)), 2),
        "macro_f1": round(100 * macro_f1(np.asarray(predicted), np.asarray(gold), n_classes), 2),
        "n": len(ranks),
    }


def _classes(chosen: list[str | None], gold_ids: list[str]) -> np.ndarray:
    """The emoji class of each chosen sticker; -1 for another sticker or none."""
    class_of = {sticker_id: c for c, sticker_id in enumerate(gold_ids)}
    return np.array([class_of.get(sticker_id, -1) for sticker_id in chosen])


def cached_array(path: Path, compute: Callable[[], np.ndarray]) -> np.ndarray:
    if path.is_file():
        return np.load(path)
    value = compute()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npy")
    np.save(tmp, value)
    tmp.rename(path)
    return value


class EmojiEvaluation:
    """Zero-shot or fitted selector on a TweetEval emoji split; needs an Engine."""

    def __init__(self, engine) -> None:
        self.engine = engine
        self.cache = engine.settings.data_dir / CACHE_DIR

    def features(self, split: EmojiSplit) -> tuple[np.ndarray, np.ndarray]:
        encoder, emotion = self.engine.encoder.get(), self.engine.emotion.get()
        vectors = cached_array(self.cache / f"emb-{encoder.key}-{split.digest}.npy",
                               lambda: encoder.encode(split.texts, batch_size=128))
        moods = cached_array(self.cache / f"mood-{emotion.fingerprint}-{split.digest}.npy",
                             lambda: emotion.prerecognizer.forecast_replies(
                                 vectors if emotion.encoder is encoder
                                 else emotion.encoder.encode(split.texts, batch_size=128)))
        return vectors, moods

    def stickers(self, emojis: list[str] | None = None):
        """The stickers of ``emojis``, or (None) the whole library, in index order."""
        live = self.engine.live.get()
        ids = stickers_for_emojis(live.library, emojis) if emojis else live.index.sticker_ids
        rows = [live.index.sticker_ids.index(sid) for sid in ids] if emojis else \
            list(range(len(ids)))
        vectors = np.stack([live.index.index.reconstruct(row) for row in rows])
        images = None if live.index.images is None else live.index.images[rows]
        return (ids, vectors, live.index.emotions[rows], live.index.emotion_labels, images,
                live.usage[rows])

    def image_similarity(self, split: EmojiSplit, dialogue_vectors: np.ndarray,
                         images: np.ndarray | None) -> np.ndarray | None:
        """Tweet ↔ sticker picture in the image tower's space (None without a tower)."""
        if images is None:
            return None
        tower = self.engine.image_tower.get()
        if isinstance(tower, LitTower):  # its query side is the text encoder itself
            return dialogue_vectors @ images.T
        queries = cached_array(self.cache / f"clip-{tower.name}-{split.digest}.npy",
                               lambda: tower.encode_texts(split.texts))
        return queries @ images.T

    def tag(self) -> str:
        tower = self.engine.image_tower.get()
        return (f"{self.engine.encoder.get().key}-{getattr(tower, 'name', 'none')}"
                f"-{self.engine.emotion.get().fingerprint}-u{self.engine.settings.usage_weight}")

    def fitted_selector(self, train: EmojiSplit, progress=log.info) -> tuple[Selector, dict]:
        """Train on ``train`` (or load the selector already trained on the same data)."""
        ids, vectors, emotions, labels, images, usage = self.stickers(train.emojis)
        folder = self.engine.settings.data_dir / "selectors" / f"emoji-v{SELECTOR_FORMAT}-{self.tag()}-{train.digest}"
        if (folder / "selector.pt").is_file():
            return Selector.load(folder, vectors.shape[1]), json.loads((folder / "fit.json").read_text())
        started = time.perf_counter()
        progress(f"embedding {len(train.texts)} training tweets (cached for reruns)")
        dialogue_vectors, moods = self.features(train)
        selector = self.engine.zero_shot_selector()
        report = selector.fit(train.texts, dialogue_vectors, moods,
                              [ids[c] for c in train.labels], ids, vectors, emotions, labels,
                              image_similarity=self.image_similarity(train, dialogue_vectors, images),
                              usage=usage)
        info = {"fit_seconds": round(time.perf_counter() - started, 1), "epochs": report.epochs,
                "holdout_macro_f1": round(100 * report.holdout_macro_f1, 2),
                "train_examples": report.examples, "parts": report.parts}
        selector.save(folder)
        (folder / "fit.json").write_text(json.dumps(info))
        return selector, info

    def run(self, data: Path, split: str, fit: bool = False, candidates: str = "classes") -> dict:
        """``candidates``: ``classes`` ranks the split's 20 emoji stickers (TweetEval's task);
        ``library`` ranks every sticker of the library, gold being the emoji's sticker. A
        fitted selector learns from the 20 classes either way (TweetEval's train split has no
        other answers)."""
        evaluated = read_tweeteval_emoji(data, split)
        selector = self.engine.zero_shot_selector()
        info = {}
        if fit:
            selector, info = self.fitted_selector(read_tweeteval_emoji(data, "train"))
        ids, vectors, emotions, _, images, usage = self.stickers(
            evaluated.emojis if candidates == "classes" else None)
        dialogue_vectors, moods = self.features(evaluated)
        scores = selector.scores(evaluated.texts, dialogue_vectors, moods, ids, vectors, emotions,
                                 self.image_similarity(evaluated, dialogue_vectors, images), usage)
        tags = {"split": split, "candidates": candidates,
                "selector": "fitted" if fit else "zero-shot", **info}
        if candidates == "classes":
            return {**ranking_metrics(scores, evaluated.labels), **tags}
        gold_ids = stickers_for_emojis(self.engine.live.get().library, evaluated.emojis)
        column = {sticker_id: i for i, sticker_id in enumerate(ids)}
        gold = np.array([column[gold_ids[label]] for label in evaluated.labels])
        ranks = 1 + np.sum(scores > scores[np.arange(len(gold)), gold][:, None], axis=1)
        top = _classes([ids[column] for column in scores.argmax(axis=1)], gold_ids)
        return {**library_metrics(ranks, top, evaluated.labels, len(gold_ids)),
                "candidates_n": len(ids), **tags}

    def through_chat(self, data: Path, split: str, limit: int | None = None,
                     progress=log.info) -> dict:
        """Each tweet sent as a chat message: the sticker the turn sends, then its
        alternatives in order (the stickers shown under the chat, also when none was sent),
        scored like ``run(candidates="library")``, next to the Search tab's ranking of the same
        tweets (``engine.search``). ``no_sticker``: the percent of turns that sent none."""
        from engine.dialogue import Dialogue, Turn
        from engine.chat.backends import ReplyError

        evaluated = read_tweeteval_emoji(data, split)
        n = min(limit or len(evaluated.texts), len(evaluated.texts))
        gold_ids = stickers_for_emojis(self.engine.live.get().library, evaluated.emojis)
        chat, search, none_sent, failed, millis = [], [], 0, 0, []
        for i, text in enumerate(evaluated.texts[:n]):
            started = time.perf_counter()
            try:
                reply = self.engine.chat(Dialogue((Turn("user", text),)))
            except (ReplyError, ValueError):
                failed += 1
                chat.append([None])
            else:
                none_sent += reply.sticker is None
                chat.append([s.id for s in [reply.sticker, *reply.alternatives] if s])
            millis.append(1000 * (time.perf_counter() - started))
            search.append([s.id for s in self.engine.search(text, k=10)])
            if (i + 1) % 50 == 0:
                progress(f"{i + 1}/{n} tweets through the chat")

        def scored(orders: list[list]) -> dict:
            ranks = [order.index(gold_ids[label]) + 1 if gold_ids[label] in order else np.inf
                     for order, label in zip(orders, evaluated.labels[:n])]
            top = _classes([order[0] if order else None for order in orders], gold_ids)
            return library_metrics(np.array(ranks), top, evaluated.labels[:n], len(gold_ids))

        chat_scores, search_scores = scored(chat), scored(search)
        return {**chat_scores, "no_sticker": round(100 * none_sent / n, 2),
                "failed_turns": failed, "search": search_scores,
                "chat_over_search_r_at_5": round(chat_scores["r_at_5"]
                                                 / max(search_scores["r_at_5"], 1e-9), 3),
                "turn_ms_p50": round(float(np.median(millis)), 1),
                "backend": self.engine.reply_backend.get().name, "split": split,
                "candidates": "library"}


# ------------------------------------------------------------------ emotion (MELD)


def read_meld_split(folder: Path, split: str):
    """``{split}_sent_emo.csv`` in ``folder`` as dialogues, with the file's content hash."""
    from engine.corpora import read_meld

    path = Path(folder) / f"{split}_sent_emo.csv"
    if not path.is_file():
        raise ValueError(f"{path} is missing: expected MELD's {{split}}_sent_emo.csv")
    return read_meld(path), hashlib.sha256(path.read_bytes()).hexdigest()[:16]


class EmotionEvaluation:
    """P-MELD pre-recognition and MELD ERC; fitted models are cached under data/models."""

    def __init__(self, engine, progress=log.info) -> None:
        self.engine = engine
        self.progress = progress
        self.models = engine.settings.data_dir / MODELS_DIR
        self.cache = engine.settings.data_dir / CACHE_DIR

    def fitted_prerecognizer(self, data: Path) -> tuple[Path, dict]:
        from engine.emotion.recipes import fit_prerecognizer

        train, digest = read_meld_split(data, "train")
        folder = self.models / f"prerecognizer-{self.engine.emotion.get().fingerprint}-{digest}"
        if not (folder / "prerecognizer.pt").is_file():
            fit_prerecognizer(self.engine.emotion.get().encoder, train, self.engine.settings.prerecognizer,
                              folder, self.cache, self.progress)
        return folder, json.loads((folder / "fit.json").read_text())

    def premeld(self, data: Path, split: str, fit: bool = False) -> dict:
        """Forecast the sentiment (and emotion) of every utterance t ≥ 1 from the turns before."""
        from engine.emotion.recipes import gold_targets
        from engine.encoders import encode_dialogues
        from engine.emotion.prerecognizer import PreRecognizer, forecast_all

        info, folder = {}, self.engine.settings.prerecognizer
        if fit:
            folder, info = self.fitted_prerecognizer(data)
            info = {"model": str(folder), **info}
        dialogues, _ = read_meld_split(data, split)
        encoded = encode_dialogues(self.engine.emotion.get().encoder, dialogues, self.cache)
        emotion, sentiment = forecast_all(PreRecognizer.load(folder), encoded)
        targets = gold_targets(dialogues)
        gold_sentiment = np.concatenate([t.sentiment[1:] for t in targets]).argmax(1)
        gold_emotion = np.concatenate([t.emotion[1:] for t in targets]).argmax(1)
        sentiments = class_metrics(sentiment.argmax(1), gold_sentiment, 3)
        emotions = class_metrics(emotion.argmax(1), gold_emotion, 7)
        return {"wa": sentiments["wa"], "aa": sentiments["aa"], "macro_f1": sentiments["macro_f1"],
                "emotion_macro_f1": emotions["macro_f1"], "n": int(len(gold_sentiment)),
                "split": split, "model": "fitted" if fit else "live", **info}

    def erc(self, data: Path, split: str, fit: bool = False, seed: int = 0) -> dict:
        """Recognize every utterance's emotion, read with the turn before it. With ``fit``, by
        a recognizer fitted from ``seed``: fits from other seeds show how much of the figure
        is chance."""
        from engine.emotion.conversation import ConversationEmotion
        from engine.emotion.recipes import fit_recognizer_on, gold_targets

        info, reader = {}, self.engine.emotion.get()
        if fit:
            train, digest = read_meld_split(data, "train")
            folder = self.models / f"recognizer-{digest}-seed{seed}"
            if not (folder / "recognizer.pt").is_file():
                fit_recognizer_on(train, folder, seed=seed, progress=self.progress)
            info = {"model": str(folder), **json.loads((folder / "fit.json").read_text())}
            reader = ConversationEmotion.load(self.engine.emotion.get().encoder,
                                              self.engine.settings.prerecognizer, str(folder))
        dialogues, _ = read_meld_split(data, split)
        predicted = np.concatenate([reader.recognize(d).emotion.argmax(1) for d in dialogues])
        gold = np.concatenate([t.emotion.argmax(1) for t in gold_targets(dialogues)])
        metrics = class_metrics(predicted, gold, 7)
        return {"weighted_f1": metrics["weighted_f1"], "accuracy": metrics["wa"],
                "macro_f1": metrics["macro_f1"], "n": int(len(gold)), "split": split,
                "model": "fitted" if fit else "live", **info}




def sticker_emotion_evaluation(engine, labels: Path = STICKER_EMOTIONS) -> dict:
    """The sticker emotion reader serving now (no people's labels: the bundled reader, or the
    promoted fine-tuned one, which ``reader`` names; measured on labels it trained on, it is
    flattered) against a labelled CSV (``id``, ``emotion`` in Ekman-7, optional ``basis``):
    accuracy and macro-F1 in percent, overall and per basis, and each emotion's precision,
    recall and F1 (``by_emotion``)."""
    from engine.stickers.library import StickerLibrary

    library = StickerLibrary.load(engine.pack_dirs())
    with Path(labels).open(encoding="utf-8", newline="") as file:
        rows = [row for row in csv.DictReader(file) if row["id"] in library.by_id]
    if not rows:
        raise ValueError(f"{labels} labels no sticker of the library")
    unknown = sorted({row["emotion"] for row in rows} - set(EKMAN7))
    if unknown:
        raise ValueError(f"{labels}: emotions outside Ekman-7: {', '.join(unknown)}")
    predicted = engine.read_sticker_emotions([library.by_id[row["id"]] for row in rows]).argmax(1)
    gold = np.array([EKMAN7.index(row["emotion"]) for row in rows])
    bases = {row.get("basis") or "all" for row in rows}

    def scores(mask: np.ndarray) -> dict:
        return {"n": int(mask.sum()),
                "accuracy": round(100 * float(np.mean(predicted[mask] == gold[mask])), 2),
                "macro_f1": round(100 * macro_f1(predicted[mask], gold[mask], len(EKMAN7)), 2)}

    everything = np.ones(len(rows), dtype=bool)
    return {"labels": str(labels), "reader": engine.sticker_reader or "bundled",
            **scores(everything),
            "by_emotion": per_class(predicted, gold, EKMAN7),
            "by_basis": {basis: scores(np.array([(row.get("basis") or "all") == basis
                                                 for row in rows])) for basis in sorted(bases)}}


# ------------------------------------------------------------------ the regression set

def choice_evaluation(engine, path: Path | None = None, through_chat: bool = True) -> dict:
    """The regression set (``assets/labels/sticker_choices.csv``: messages in English and
    Chinese, each with the stickers a person would accept, by emoji): hit@1 and hit@5 in
    percent of the Search tab's ranking and, with ``through_chat``, of the chat turn (the sticker
    it sends, then its alternatives; a turn without a sticker misses hit@1; ``sent``: the
    percent of turns that sent one), and ``mood_matches``: the percent of messages whose mood
    (``Engine.mood``, the emotion the bot answers in) is their emotion. Per language, and
    within each per emotion of the messages (``by_emotion``)."""
    from engine.dialogue import Dialogue, Turn

    with Path(path or STICKER_CHOICES).open(encoding="utf-8", newline="") as file:
        lines = list(csv.DictReader(file))
    rows: dict[str, list[dict]] = {}
    for line in lines:
        accepted = {plain_emoji(e) for e in line["accept"].split()}
        orders = {"search": [plain_emoji(s.emoji) for s in engine.search(line["message"], k=5)]}
        if through_chat:
            reply = engine.chat(Dialogue((Turn("user", line["message"]),)))
            orders["chat"] = [plain_emoji(reply.sticker.emoji) if reply.sticker else None] + \
                [plain_emoji(s.emoji) for s in reply.alternatives]
        result = {k: [e in accepted for e in order[:5]] for k, order in orders.items()}
        if through_chat:
            result["sent"] = reply.sticker is not None
        result["emotion"] = line.get("emotion") or "unlabelled"
        mood = engine.mood(Dialogue((Turn("user", line["message"]),)))
        result["mood"] = EKMAN7[int(np.argmax(mood))] == result["emotion"]
        rows.setdefault(line["language"], []).append(result)

    def hit_rates(results: list[dict]) -> dict:
        rates = {way: {"hit_at_1": round(100 * float(np.mean([r[way][:1] == [True] for r in results])), 2),
                       "hit_at_5": round(100 * float(np.mean([any(r[way]) for r in results])), 2)}
                 for way in results[0] if way not in ("sent", "emotion", "mood")}
        if "chat" in rates:
            rates["chat"]["sent"] = round(100 * float(np.mean([r["sent"] for r in results])), 2)
        return {**rates, "mood_matches": round(100 * float(np.mean([r["mood"] for r in results])), 2)}

    def by_emotion(results: list[dict]) -> dict:
        """The same rates for each emotion of the messages: where a language's misses lie."""
        emotions = sorted({r["emotion"] for r in results})
        return {emotion: {**hit_rates(group), "n": len(group)} for emotion in emotions
                if (group := [r for r in results if r["emotion"] == emotion])}

    return {**{language: {**hit_rates(results), "n": len(results), "by_emotion": by_emotion(results)}
               for language, results in sorted(rows.items())},
            "all": {**hit_rates([r for rs in rows.values() for r in rs]), "n": len(lines)},
            "text_encoder": engine.encoder.get().name, "text_spread": text_spread(engine),
            **({"backend": engine.reply_backend.get().name} if through_chat else {})}


def text_spread(engine, openings: int = 200) -> float:
    """How far the text encoder's cosines spread (``similarity_spread`` in engine/encoders.py's table):
    for chitchat openings, the standard deviation of each one's cosines with every sticker of
    the library, averaged."""
    from engine.corpora import read_chitchat

    live = engine.live.get()
    stickers = live.index.index.reconstruct_n(0, live.index.index.ntotal)
    texts = [dialogue.turns[0].text for dialogue in read_chitchat(2 * openings)[openings:]]
    cosines = engine.encoder.get().encode(texts) @ stickers.T
    return round(float(cosines.std(axis=1).mean()), 4)


# ------------------------------------------------------------------ replies

def reply_evaluation(engine, openings: int = 200, with_backend: bool = False,
                     mod: Path | None = None) -> dict:
    """Response selection on chitchat's held-out conversations (R10@1 and MRR in percent, the
    bundled selector next to plain cosine); with ``with_backend``, the engine's replies to the
    openings of ``openings`` held-out conversations and to the regression set's messages
    (``reply_answers``)."""
    from engine.chat.responses import against_plain_cosine, encoded_pairs
    from engine.corpora import chitchat_split, mod_split

    encoder = engine.encoder.get()
    _, held = chitchat_split(0, max(300, openings))
    pairs = encoded_pairs(encoder, held[:300], engine.settings.data_dir / CACHE_DIR)
    result = {**against_plain_cosine(engine.responses.get(), pairs),
              "split": "chitchat-dataset, held-out conversations (1 in 10)"}
    if mod:  # MOD's held-out dialogues (Chinese), the same way
        mod_pairs = encoded_pairs(encoder, mod_split(mod)[1], engine.settings.data_dir / CACHE_DIR)
        result["mod"] = {**against_plain_cosine(engine.responses.get(), mod_pairs),
                         "split": f"{Path(mod).name}, held-out dialogues (1 in 10)"}
    if not with_backend:
        return result
    openings_asked = [(d.turns[0].text, d.turns[1].text) for d in held[:openings]]
    with Path(STICKER_CHOICES).open(encoding="utf-8", newline="") as file:
        regression = [(line["message"], None) for line in csv.DictReader(file)
                      if line["language"] == "en"]
    return {**result, "backend": engine.reply_backend.get().name,
            "openings": reply_answers(engine, openings_asked),
            "regression_set_en": reply_answers(engine, regression, shown=True)}


def reply_answers(engine, asked: list[tuple[str, str | None]], seed: int = 0,
                  shown: bool = False) -> dict:
    """The engine's replies to one-message dialogues, each (message, what a person answered
    or None): percent that talk about stickers, emojis, the message or the bot, percent that
    repeat the message, where the said replies came from (generated, regenerated after a
    failed check, or the corpus reply), and how well they answer by the response selector:
    the mean score, percent at or above its floor (``on_topic``), and, where a person's reply
    is known, the person's mean score and the percent of replies that answer at least as well
    as the person did (``as_well_as_person``). Each turn samples from ``seed`` (the same
    replies on a rerun); ``shown`` lists them (``said``), for judging by hand."""
    import torch

    from engine.dialogue import Dialogue, Turn
    from engine.chat.wording import SELF_TALK, repeats

    talk = repeated = 0
    sources: dict[str, int] = {}
    millis, scores, people, as_well, said_replies = [], [], [], [], []
    for number, (message, person) in enumerate(asked):
        torch.manual_seed(seed + number)
        started = time.perf_counter()
        reply = engine.chat(Dialogue((Turn("user", message),)))
        millis.append(1000 * (time.perf_counter() - started))
        talk += bool(SELF_TALK.search(reply.text))
        repeated += repeats(message, reply.text)
        sources[reply.source] = sources.get(reply.source, 0) + 1
        said, *theirs = engine.answer_scores([message], [reply.text, *([person] if person else [])])
        scores.append(said)
        said_replies.append({"message": message, "reply": reply.text, "source": reply.source,
                             "selector_score": round(float(said), 4)})
        if theirs:
            people.append(theirs[0])
            as_well.append(said >= theirs[0])
    n = len(asked)
    figures = {"n": n, "self_talk": round(100 * talk / n, 2), "repeats": round(100 * repeated / n, 2),
               "sources": sources, "selector_score": round(float(np.mean(scores)), 4),
               "on_topic": round(100 * float(np.mean(np.array(scores) >= engine.responses.get().floor)), 2),
               "turn_ms_p50": round(float(np.median(millis)), 1)}
    if people:
        figures |= {"person_selector_score": round(float(np.mean(people)), 4),
                    "as_well_as_person": round(100 * float(np.mean(as_well)), 2)}
    return figures | ({"said": said_replies} if shown else {})

