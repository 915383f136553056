"""Label schemes, the seeds' dialogue formats, the recognizer and the pre-recognizer, and
`memeui eval premeld|erc` + `memeui emotion` on fixtures the tests write themselves."""

import csv
import json

import numpy as np
import pytest
import torch

from conftest import memeui_main
from engine import Dialogue, Turn
from engine.corpora import (fix_mojibake, forecasting_examples, read_emorynlp, read_meld,
                            read_mod, read_mod_memes)
from engine.metrics import class_metrics
from engine.schemes import EKMAN7, SCHEMES, conversion, convert, scheme
from engine.emotion.prerecognizer import MAX_TURNS, PreRecognizer, Targets, fit, forecast_all, pretrain
from engine.encoders import Encoded

MELD_COLUMNS = ["Sr No.", "Utterance", "Speaker", "Emotion", "Sentiment", "Dialogue_ID",
                "Utterance_ID", "Season", "Episode", "StartTime", "EndTime"]
# (speaker, utterance, emotion, sentiment): the next speaker's mood follows their last turn,
# which is what a pre-recognizer can learn from the text of that turn
SCRIPTS = [
    [("Ann", "I love this, it is wonderful!", "joy", "positive"),
     ("Bob", "This is awful, I hate it.", "anger", "negative"),
     ("Ann", "Great, I am so happy!", "joy", "positive"),
     ("Bob", "Terrible. I am furious.", "anger", "negative")],
    [("Cat", "What a terrible day, I am so sad.", "sadness", "negative"),
     ("Dan", "Okay. The meeting is at noon.", "neutral", "neutral"),
     ("Cat", "I feel awful and miserable.", "sadness", "negative"),
     ("Dan", "Fine. See you at noon.", "neutral", "neutral")],
]


def write_meld(path, scripts, repeats=1, mojibake=False):
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(MELD_COLUMNS)
        row = 0
        for copy in range(repeats):
            for d, script in enumerate(scripts):
                # written in reverse to check that turns are put back in Utterance_ID order
                for u in reversed(range(len(script))):
                    speaker, text, emotion, sentiment = script[u]
                    if mojibake and u == 0:
                        text = text.replace("I ", "I’m ").encode("utf-8").decode("cp1252")
                    row += 1
                    writer.writerow([row, text, speaker, emotion, sentiment,
                                     copy * len(scripts) + d, u, 1, 1, "0", "0"])
    return path


@pytest.fixture(scope="module")
def meld_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("meld")
    write_meld(folder / "train_sent_emo.csv", SCRIPTS, repeats=12)
    write_meld(folder / "dev_sent_emo.csv", SCRIPTS, repeats=2, mojibake=True)
    return folder


# ------------------------------------------------------------------ label schemes


def test_every_mapping_keeps_probability_mass():
    for source in SCHEMES:
        for target in SCHEMES:
            if "mod" in (source, target) and source != target:
                continue
            assert conversion(source, target).sum(axis=1) == pytest.approx(1.0, abs=1e-6)


def test_mappings_say_what_the_labels_mean():
    sentiment = convert(scheme("ekman7").one_hot("surprise"), "ekman7", "sentiment3")
    assert dict(zip(scheme("sentiment3").labels, sentiment)) == pytest.approx(
        {"positive": 0.5, "neutral": 0.0, "negative": 0.5})
    assert convert(scheme("iemocap").one_hot("frustration"), "iemocap", "ekman7")[
        EKMAN7.index("anger")] == pytest.approx(1.0)
    joy = convert(scheme("plutchik8").one_hot("trust"), "plutchik8", "ekman7")
    assert joy[EKMAN7.index("joy")] == joy[EKMAN7.index("neutral")] == pytest.approx(0.5)
    assert scheme("emorynlp").index("Mad") == scheme("emorynlp").labels.index("mad")


def test_unknown_labels_and_unmapped_schemes_are_refused():
    with pytest.raises(ValueError, match="unknown ekman7 label 'hangry'.*known: anger"):
        scheme("ekman7").index("hangry")
    with pytest.raises(ValueError, match="unknown label scheme 'moods'"):
        scheme("moods")
    with pytest.raises(ValueError, match="no published mapping"):
        conversion("mod", "ekman7")
    assert scheme("mod").index("29") == 29


# ------------------------------------------------------------------ dialogue formats


def test_meld_reader_orders_turns_and_repairs_mojibake(meld_dir):
    dialogues = read_meld(meld_dir / "dev_sent_emo.csv")
    assert len(dialogues) == 4 and [t.speaker for t in dialogues[0].turns] == ["Ann", "Bob", "Ann", "Bob"]
    assert dialogues[0].turns[0].text == "I’m love this, it is wonderful!"
    assert dialogues[0].turns[1].emotion == "anger" and dialogues[0].turns[1].sentiment == "negative"
    assert fix_mojibake("plain text") == "plain text"


def test_meld_reader_refuses_unknown_labels_and_other_formats(tmp_path):
    bad = write_meld(tmp_path / "bad.csv", [[("Ann", "hi", "hangry", "neutral")]])
    with pytest.raises(ValueError, match="line 2: unknown ekman7 label 'hangry'"):
        read_meld(bad)
    (tmp_path / "other.csv").write_text("a,b\n1,2\n")
    with pytest.raises(ValueError, match="lacks the column"):
        read_meld(tmp_path / "other.csv")


def test_premeld_examples_never_show_context_labels(meld_dir):
    examples = forecasting_examples(read_meld(meld_dir / "dev_sent_emo.csv"))
    assert len(examples) == 4 * 3  # every utterance but each dialogue's first
    first = examples[0]
    assert first.next_speaker == "Bob" and first.sentiment == "negative"
    assert [t.emotion for t in examples[2].context.turns] == ["", "", ""]


def test_emorynlp_reader(tmp_path):
    path = tmp_path / "emorynlp_dev_final.csv"
    path.write_text("Utterance,Speaker,Emotion,Scene_ID,Utterance_ID,Season,Episode,StartTime,EndTime\n"
                    "Hey!,['Monica Geller'],Joyful,1,1,1,1,0,0\n"
                    "Go away.,\"['Ross Geller', 'Joey Tribbiani']\",Mad,1,2,1,1,0,0\n"
                    "Hi,['Rachel Green'],Scared,1,1,1,2,0,0\n", "utf-8")
    dialogues = read_emorynlp(path)
    assert len(dialogues) == 2  # the same scene id in another episode is another scene
    assert dialogues[0].turns[1] == Turn("Ross Geller, Joey Tribbiani", "Go away.", emotion="mad")
    path.write_text("Utterance,Speaker,Emotion,Scene_ID,Utterance_ID\nx,A,Grumpy,1,1\n")
    with pytest.raises(ValueError, match="unknown emorynlp label 'grumpy'"):
        read_emorynlp(path)


def test_mod_reader_reads_memes_as_their_text(tmp_path):
    (tmp_path / "memes.json").write_text(json.dumps({"7": {"ocr": "我不管", "name": "我不管.gif"},
                                                     "8": {"ocr": "", "name": "好的.gif"}}), "utf-8")
    (tmp_path / "dialogue.json").write_text(json.dumps({"dialogue 1": [
        {"speaker_id": "[speaker1]", "emotion_id": 5, "img_id": "7", "txt": "今天冒雨上班"},
        {"speaker_id": "[speaker2]", "img_id": "8", "txt": ""},
        {"speaker_id": "[speaker1]", "txt": "明天呢"}]}, ensure_ascii=False), "utf-8")
    (dialogue,) = read_mod(tmp_path / "dialogue.json", read_mod_memes(tmp_path / "memes.json"))
    assert dialogue.turns[0] == Turn("speaker1", "今天冒雨上班", "我不管", emotion="5")
    assert dialogue.turns[1].content() == "[sticker: 好的]"
    (tmp_path / "broken.json").write_text("[1, 2]")
    with pytest.raises(ValueError, match="not MOD JSON"):
        read_mod(tmp_path / "broken.json")


# ------------------------------------------------------------------ models


def synthetic(n_dialogues=60, turns=6, dim=16, seed=0):
    """Two speakers whose turns carry their mood in the embedding (dimension 0 = +/−), each
    speaker keeping one mood for the whole dialogue: learnable from the turns before."""
    rng = np.random.default_rng(seed)
    dialogues, targets = [], []
    for _ in range(n_dialogues):
        moods = {"A": rng.integers(0, 2), "B": rng.integers(0, 2)}
        speakers = ["A", "B"] * (turns // 2)
        vectors = rng.normal(0, 0.3, (turns, dim)).astype(np.float32)
        emotion = np.zeros((turns, 7), np.float32)
        sentiment = np.zeros((turns, 3), np.float32)
        for t, s in enumerate(speakers):
            vectors[t, 0] = 2.0 if moods[s] else -2.0
            emotion[t, EKMAN7.index("joy" if moods[s] else "sadness")] = 1
            sentiment[t, 0 if moods[s] else 2] = 1
        dialogues.append(Encoded(vectors, speakers))
        targets.append(Targets(emotion, sentiment))
    return dialogues, targets


def test_prerecognizer_learns_to_forecast_from_the_turns_before():
    torch.manual_seed(0)
    dialogues, targets = synthetic()
    model = PreRecognizer(dim=16, hidden=16)
    report = fit(model, dialogues, targets, max_epochs=30, batch_size=8, lr=1e-2, patience=10)
    test, test_targets = synthetic(20, seed=1)
    _, sentiment = forecast_all(model, test)
    gold = np.concatenate([t.sentiment[1:] for t in test_targets]).argmax(1)
    first_turn_of_b = np.concatenate([[0] + [1] * 4 for _ in test])  # B's mood is unknown at t=1
    accuracy = np.mean(sentiment.argmax(1)[first_turn_of_b == 1] == gold[first_turn_of_b == 1])
    assert accuracy > 0.9, report


def test_the_served_forecast_is_the_trained_models_forecast():
    """The numpy forecast a chat turn runs equals torch's batched forecast of the same turns."""
    torch.manual_seed(1)
    dialogues, targets = synthetic(16, turns=MAX_TURNS)
    model = PreRecognizer(dim=16, hidden=16)
    fit(model, dialogues, targets, max_epochs=3, batch_size=8, lr=1e-2, patience=3)
    served = model.frozen()
    for dialogue in dialogues[:4]:
        emotion, sentiment = forecast_all(model, [dialogue])
        for t in range(1, MAX_TURNS):
            one = served.forecast(Encoded(dialogue.vectors[:t], dialogue.speakers[:t]),
                                  dialogue.speakers[t])
            assert one[0] == pytest.approx(emotion[t - 1], abs=1e-5)
            assert one[1] == pytest.approx(sentiment[t - 1], abs=1e-5)
    with torch.inference_mode():
        views = model.views(torch.from_numpy(dialogues[0].vectors)).numpy()
    assert served.views(dialogues[0].vectors) == pytest.approx(views, abs=1e-6)
    longer = Encoded(np.concatenate([dialogues[1].vectors, dialogues[0].vectors]),
                     dialogues[1].speakers + dialogues[0].speakers)
    assert served.forecast(longer, "someone new")[0] == pytest.approx(  # reads the latest turns
        served.forecast(Encoded(dialogues[0].vectors, dialogues[0].speakers), "someone new")[0])
    nobody = served.forecast(Encoded(np.zeros((0, 16), np.float32), []), "A")
    assert EKMAN7[int(np.argmax(nobody[0]))] == "neutral" and nobody[0].max() == 1.0


def test_contrastive_pretraining_learns_what_comes_next():
    dialogues, _ = synthetic(64, turns=8)
    model = PreRecognizer(dim=16, hidden=16)
    first = pretrain(model, dialogues, epochs=1)["pretrain_loss"]
    later = pretrain(model, dialogues, epochs=8)["pretrain_loss"]
    assert later < first


def test_saved_prerecognizer_forecasts_the_same(tmp_path):
    dialogues, _ = synthetic(2)
    model = PreRecognizer(dim=16, hidden=16).eval()
    model.save(tmp_path)
    again = PreRecognizer.load(tmp_path)
    assert again.frozen().forecast(dialogues[0], "A")[0] == pytest.approx(
        model.frozen().forecast(dialogues[0], "A")[0], abs=2e-3)


def test_class_metrics_by_hand():
    metrics = class_metrics(np.array([0, 0, 1, 2]), np.array([0, 1, 1, 2]), 3)
    assert metrics["wa"] == 75.0
    assert metrics["aa"] == pytest.approx(100 * (1 + 0.5 + 1) / 3, abs=0.01)
    # F1: class 0 = 2/3, class 1 = 2/3, class 2 = 1
    assert metrics["macro_f1"] == pytest.approx(100 * (2 / 3 + 2 / 3 + 1) / 3, abs=0.01)
    assert metrics["weighted_f1"] == pytest.approx(100 * (2 / 3 + 2 * 2 / 3 + 1) / 4, abs=0.01)


# ------------------------------------------------------------------ the engine's emotion


def test_reading_a_conversation_in_any_scheme(engine):
    dialogue = Dialogue.from_transcript("Ann: I won the lottery, this is wonderful!\n"
                                        "Bob: My dog died this morning. I am heartbroken.")
    reading = engine.read_emotion(dialogue)
    assert reading.next_speaker == "Ann" and reading.scheme == "ekman7"
    assert max(reading.turns[0].emotion, key=reading.turns[0].emotion.get) == "joy"
    assert max(reading.turns[1].emotion, key=reading.turns[1].emotion.get) == "sadness"
    assert sum(reading.forecast.values()) == pytest.approx(1.0, abs=1e-4)
    sentiment = engine.read_emotion(dialogue, "Bob", "sentiment3")
    assert set(sentiment.forecast) == {"positive", "neutral", "negative"}
    assert max(sentiment.turns[1].emotion, key=sentiment.turns[1].emotion.get) == "negative"
    with pytest.raises(ValueError, match="no mapping"):
        engine.read_emotion(dialogue, "Bob", "mod")
    with pytest.raises(ValueError, match="empty"):
        engine.read_emotion(Dialogue())


def test_sticker_emotions_come_from_labels_people_gave_in_any_scheme(engine):
    assert engine._given_emotion("sadness")[EKMAN7.index("sadness")] == pytest.approx(1.0)
    mad = engine._given_emotion("Mad")  # EmoryNLP's: anger or disgust
    assert mad[EKMAN7.index("anger")] == mad[EKMAN7.index("disgust")] == pytest.approx(0.5)
    assert engine._given_emotion("positive")[EKMAN7.index("joy")] == pytest.approx(0.5)
    assert engine._given_emotion("") is None and engine._given_emotion("hangry") is None


def test_cli_emotion_prints_the_forecast(data_dir, engine):
    done = memeui_main(data_dir, "emotion", "A: I passed my exam!\nB: Congratulations!",
                       "--next", "A", "--scheme", "sentiment3", "--json")
    assert done.returncode == 0, done.stderr
    reading = json.loads(done.stdout)
    assert reading["next_speaker"] == "A" and len(reading["turns"]) == 2
    assert set(reading["forecast"]) == {"positive", "neutral", "negative"}
    bad = memeui_main(data_dir, "emotion", "A: hi", "--scheme", "moods")
    assert bad.returncode == 2 and "unknown label scheme" in bad.stderr


def test_a_recognizer_fit_repeats_with_its_seed(meld_dir, tmp_path):
    """The same data and seed give the same recognizer, so an ERC figure belongs to the code
    and not to the run (the heads once started from whatever the process had drawn before)."""
    from engine.emotion.recipes import fit_recognizer_on

    train = read_meld(meld_dir / "train_sent_emo.csv")[:4]
    for name, seed in (("a", 0), ("b", 0), ("c", 1)):
        torch.rand(7)  # other work in the process between fits
        fit_recognizer_on(train, tmp_path / name, tuned_layers=1, epochs=1, seed=seed)
    a, b, c = (torch.load(tmp_path / name / "recognizer.pt", weights_only=True)["state"]
               for name in "abc")
    assert a.keys() == b.keys() and all(torch.allclose(a[k].float(), b[k].float(), atol=1e-3) for k in a)
    assert not torch.allclose(a["emotion_head.weight"].float(), c["emotion_head.weight"].float(), atol=1e-3)
    assert json.loads((tmp_path / "c" / "fit.json").read_text())["seed"] == 1


def test_eval_premeld_and_erc_live_and_fitted(meld_dir, data_dir, engine):
    def run(task, *extra):
        done = memeui_main(data_dir, "eval", task, "--data", meld_dir, "--json", *extra)
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)

    live = run("premeld")
    assert live["n"] == 12 and live["split"] == "dev"
    assert {"wa", "aa", "macro_f1", "emotion_macro_f1"} <= set(live)
    fitted = run("premeld", "--fit")
    assert "prerecognizer-" in fitted["model"] and fitted["fit_seconds"] > 0
    assert fitted["macro_f1"] >= 80.0  # the fixture's moods are learnable from the words
    erc = run("erc", "--fit")
    assert erc["n"] == 16 and erc["fit_seconds"] > 0 and 0 <= erc["weighted_f1"] <= 100
    assert run("erc", "--fit")["fit_seconds"] == erc["fit_seconds"]  # cached by data hash
