"""`memeui eval emoji` on a tiny TweetEval-format fixture the test writes itself."""

import json

import numpy as np
import pytest

from conftest import memeui_main
from engine.evaluation.tasks import ranking_metrics, read_tweeteval_emoji

MAPPING = ["❤", "😍", "😂", "💕", "🔥", "😊", "😎", "✨", "💙", "😘",
           "📷", "🇺🇸", "☀", "💜", "😉", "💯", "😁", "🎄", "📸", "😜"]
# (text, class) pairs whose words point at their emoji, so a fitted selector can learn them
TEMPLATES = {2: "lol this is so funny haha", 4: "this track is fire lit", 17: "merry christmas tree",
             10: "new camera photo shoot", 11: "god bless america usa"}


def write_split(folder, split, repeats):
    rows = [(text + f" {i}", label) for i in range(repeats) for label, text in TEMPLATES.items()]
    (folder / f"{split}_text.txt").write_text("\n".join(t for t, _ in rows) + "\n")
    (folder / f"{split}_labels.txt").write_text("\n".join(str(l) for _, l in rows) + "\n")


@pytest.fixture(scope="module")
def emoji_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tweeteval-emoji")
    (folder / "mapping.txt").write_text(
        "".join(f"{i}\t{e}\t_name_{i}_\n" for i, e in enumerate(MAPPING)), "utf-8")
    write_split(folder, "train", 30)
    write_split(folder, "val", 4)
    return folder


def test_ranking_metrics_by_hand():
    scores = np.array([[3.0, 1.0, 0.0], [0.0, 2.0, 1.0], [1.0, 0.0, 2.0], [2.0, 0.0, 1.0]])
    gold = np.array([0, 1, 2, 2])
    metrics = ranking_metrics(scores, gold)
    assert metrics["accuracy"] == 75.0
    # class 0: P=1/2 R=1 F=2/3; class 1: F=1; class 2: P=1 R=1/2 F=2/3 → mean 7/9
    assert metrics["macro_f1"] == pytest.approx(100 * 7 / 9, abs=0.01)
    assert metrics["mrr"] == pytest.approx(100 * (1 + 1 + 1 + 0.5) / 4, abs=0.01)
    assert metrics["r10_at_1"] == 75.0 and metrics["n"] == 4


def test_reader_refuses_a_folder_in_another_format(tmp_path):
    with pytest.raises(ValueError, match="missing"):
        read_tweeteval_emoji(tmp_path, "val")


@pytest.mark.slow
def test_eval_zero_shot_and_fitted(emoji_dir, data_dir, engine):
    engine.live.get()
    def run(*extra):
        done = memeui_main(data_dir, "eval", "emoji", "--data", emoji_dir, "--split", "val",
                           "--json", *extra)
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)

    zero_shot = run()
    assert zero_shot["n"] == 20 and zero_shot["selector"] == "zero-shot"
    assert {"macro_f1", "accuracy", "r10_at_1", "mrr"} <= set(zero_shot)
    fitted = run("--fit")
    assert fitted["selector"] == "fitted" and fitted["fit_seconds"] > 0
    assert fitted["accuracy"] == 100.0  # the words of each class are learnable
    assert fitted["accuracy"] > zero_shot["accuracy"]
    again = run("--fit")  # cached by the data's hash: no second training
    assert again["fit_seconds"] == fitted["fit_seconds"] and again["accuracy"] == 100.0


def test_selector_keeps_the_emotion_part_when_only_it_tells_the_stickers_apart():
    from engine.schemes import EKMAN7
    from engine.stickers.selector import Selector

    rng = np.random.default_rng(0)
    n, stickers = 700, [f"s{i}" for i in range(len(EKMAN7))]
    emotions = np.eye(len(EKMAN7), dtype=np.float32)  # one feeling per sticker
    unit = lambda rows: (rows / np.linalg.norm(rows, axis=1, keepdims=True)).astype(np.float32)  # noqa: E731
    sticker_vectors = unit(rng.normal(size=(len(stickers), 64)))
    gold = rng.integers(0, len(stickers), n)
    moods = emotions[gold] * 0.7 + 0.3 / len(EKMAN7)  # the mood says which sticker fits
    texts = [f"word{rng.integers(1000)} word{rng.integers(1000)}" for _ in range(n)]  # noise
    vectors = unit(rng.normal(size=(n, 64)))
    selector = Selector(emotion_weight=0.3)
    report = selector.fit(texts, vectors, moods, [stickers[g] for g in gold], stickers,
                          sticker_vectors, emotions, list(EKMAN7), max_seconds=120)
    assert "emotion" in report.parts and selector.w_emotion > 0
    assert report.holdout_macro_f1 > 0.6  # chance: 1/7
    scores = selector.scores(texts[:50], vectors[:50], moods[:50], stickers, sticker_vectors,
                             emotions)
    assert (scores.argmax(axis=1) == gold[:50]).mean() > 0.6
