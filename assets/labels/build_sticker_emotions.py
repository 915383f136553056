"""Write ``sticker_emotions.csv``: Ekman-7 emotions for stickers of the default pack, the
reference set that measures the sticker emotion reader (README, "Sticker emotions").

Two kinds of rows, said in the ``basis`` column:
- ``hand``: every face, heart and gesture whose emotion a person can name, labelled by hand
  by the project (one label each; the expression, not the object, decides);
- ``neutral-subgroup``: every sticker of subgroups that show things, places, flags and symbols
  with no feeling of their own (tools, office, keycaps, country flags, transport …).
Run: ``python assets/labels/build_sticker_emotions.py`` (reads the pack, writes the CSV).
"""

import csv
import json
from pathlib import Path

HERE = Path(__file__).resolve().parent
PACK = HERE.parent / "stickers" / "fluent-emoji-3d" / "pack.json"

HAND = {
    "joy": """grinning face; beaming face with smiling eyes; face with tears of joy; grinning face
    with big eyes; grinning face with smiling eyes; grinning face with sweat; grinning squinting
    face; smiling face with halo; winking face; smiling face with smiling eyes; face savoring
    food; relieved face; smiling face with heart-eyes; smiling face with sunglasses; kissing
    face; face blowing a kiss; kissing face with smiling eyes; kissing face with closed eyes;
    face with tongue; winking face with tongue; squinting face with tongue; grinning cat with
    smiling eyes; cat with tears of joy; smiling cat with heart-eyes; kissing cat; slightly
    smiling face; rolling on the floor laughing; star-struck; zany face; smiling face with
    hearts; partying face; smiling face with open hands; cowboy hat face; red heart; orange
    heart; yellow heart; green heart; blue heart; purple heart; pink heart; light blue heart;
    two hearts; sparkling heart; growing heart; beating heart; revolving hearts; heart with
    ribbon; heart decoration; heart with arrow; love letter; kiss mark; heart hands; clapping
    hands; raising hands; thumbs up; hundred points; smiling face; party popper; money-mouth
    face; heart on fire; person gesturing OK; woman gesturing OK; man gesturing OK; waving hand""",
    "sadness": """pensive face; disappointed face; crying face; loudly crying face; sad but
    relieved face; weary face; tired face; crying cat; weary cat; slightly frowning face;
    frowning face; broken heart; face holding back tears; pleading face; smiling face with
    tear; downcast face with sweat; person frowning; woman frowning; man frowning; persevering
    face; confounded face""",
    "anger": """angry face; enraged face; face with steam from nose; pouting cat; face with
    symbols on mouth; angry face with horns; anger symbol; right anger bubble; person pouting;
    woman pouting; man pouting; oncoming fist; raised fist; thumbs down; person gesturing NO;
    woman gesturing NO; man gesturing NO; middle finger; ogre; goblin""",
    "fear": """fearful face; face screaming in fear; anxious face with sweat; worried face;
    grimacing face; weary cat; ghost; skull; skull and crossbones; shaking face; cold face;
    frowning face with open mouth; anguished face; face with peeking eye""",
    "surprise": """astonished face; face with open mouth; hushed face; flushed face; exploding
    head; face with open eyes and hand over mouth; face with hand over mouth; dizzy; face with
    spiral eyes; collision; exclamation question mark; double exclamation mark""",
    "disgust": """nauseated face; face vomiting; unamused face; face with rolling eyes; pile of
    poo; face with raised eyebrow; face with diagonal mouth; cat with wry smile; woozy face;
    smirking face; person facepalming; woman facepalming; man facepalming""",
    "neutral": """neutral face; expressionless face; face without mouth; dotted line face;
    thinking face; zipper-mouth face; shushing face; sleeping face; sleepy face; yawning face;
    face with monocle; nerd face; saluting face; face exhaling; face in clouds; robot; ZZZ;
    speech balloon; thought balloon; left speech bubble; person tipping hand; person shrugging;
    woman shrugging; man shrugging; person bowing; raised hand; palm up hand""",
}
NEUTRAL_SUBGROUPS = {
    "keycap", "alphanum", "arrow", "av-symbol", "geometric", "math", "transport-sign",
    "country-flag", "tool", "office", "household", "computer", "phone", "book-paper", "writing",
    "lock", "mail", "science", "light-video", "clothing", "place-building", "place-map",
    "transport-ground", "transport-water", "transport-air", "time", "dishware", "food-vegetable",
    "hotel", "place-geographic",
}


def main() -> None:
    stickers = json.loads(PACK.read_text("utf-8"))["stickers"]
    by_label = {s["label"]: s for s in stickers}
    rows, labelled = [], set()
    for emotion, names in HAND.items():
        for name in (" ".join(n.split()) for n in names.split(";")):
            sticker = by_label.get(name)
            if sticker is None or sticker["id"] in labelled:
                continue  # not in the pack (or labelled already: the first emotion wins)
            labelled.add(sticker["id"])
            rows.append((sticker["id"], sticker["label"], emotion, "hand"))
    for sticker in stickers:
        if sticker["subgroup"] in NEUTRAL_SUBGROUPS and sticker["id"] not in labelled:
            labelled.add(sticker["id"])
            rows.append((sticker["id"], sticker["label"], "neutral", "neutral-subgroup"))
    with (HERE / "sticker_emotions.csv").open("w", encoding="utf-8", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(("id", "label", "emotion", "basis"))
        writer.writerows(rows)
    print(f"{len(rows)} stickers labelled")


if __name__ == "__main__":
    main()
