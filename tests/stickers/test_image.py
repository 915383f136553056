"""Image towers: the bundled LiT tower, its training recipe, and the real open_clip path on a
tiny random-init config (no CLIP weights ship in any registry package)."""

import json

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from engine.paths import LIT_WEIGHTS
from engine.metrics import in_share
from engine.stickers.image import (STICKERS_HELD_OUT, LitTower, OpenClipTower, create_image_tower,
                          recall_at_10, train_lit_tower)
from engine.stickers.library import Sticker

TINY_CLIP = {"embed_dim": 32,
             "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "head_width": 16,
                            "patch_size": 16},
             "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2,
                          "layers": 1}}


def shape_stickers(folder, count=24):
    folder.mkdir(parents=True, exist_ok=True)
    stickers = []
    for i in range(count):
        image = Image.new("RGBA", (64, 64), (255, 255, 255, 0))
        draw = ImageDraw.Draw(image)
        colour = ((i * 67) % 256, (i * 131) % 256, (i * 29) % 256, 255)
        (draw.ellipse if i % 2 else draw.rectangle)((8 + i % 5, 8, 56, 56 - i % 7), fill=colour)
        path = folder / f"{i}.png"
        image.save(path)
        stickers.append(Sticker(id=f"{i:016x}", path=path, pack="shapes",
                                label=f"{'circle' if i % 2 else 'square'} number {i}"))
    return stickers


def test_bundled_tower_embeds_stickers_near_their_labels(engine):
    tower = engine.image_tower.get()
    assert isinstance(tower, LitTower)
    saved = torch.load(LIT_WEIGHTS, weights_only=True)
    assert saved["heldout_recall_at_10"] > 0.05  # far above chance (10 / 1853)
    live = engine.live.get()
    assert live.index.images.shape == (len(live.library), tower.dim)
    assert np.allclose(np.linalg.norm(live.index.images, axis=1), 1.0, atol=1e-3)


def test_search_by_image_finds_the_same_sticker_first(engine):
    sticker = engine.live.get().library.stickers[100]
    results = engine.search_image(sticker.path, k=3)
    assert results[0].id == sticker.id
    assert results[0].parts["image"] == pytest.approx(1.0, abs=1e-3)


def test_chat_ranking_has_an_image_part(engine):
    result = engine.search("a cat", k=1)[0]
    assert set(result.parts) == {"text", "emotion", "image", "usage"}


def test_training_recipe_writes_weights_the_tower_loads(tmp_path, engine):
    stickers = shape_stickers(tmp_path / "shapes")
    out = tmp_path / "tower.pt"
    report = train_lit_tower(stickers, engine.encoder.get(), out=out, epochs=3)
    assert report.train_stickers + report.heldout_stickers == len(stickers)
    assert report.heldout_stickers == sum(in_share(s.id, STICKERS_HELD_OUT) for s in stickers)
    tower = LitTower(engine.encoder.get(), out)
    vectors = tower.encode_images([[Image.open(stickers[0].path)],
                                   [Image.open(s.path) for s in stickers[1:5]]])
    assert vectors.shape == (2, engine.encoder.get().dim)


def test_recall_at_10_by_hand():
    texts = np.eye(12, dtype=np.float32)
    images = texts.copy()
    assert recall_at_10(images, texts, np.arange(12)) == 1.0
    assert recall_at_10(-images, texts, np.arange(12)) < 1.0


def test_open_clip_path_with_a_tiny_random_config_and_a_local_checkpoint(tmp_path):
    import open_clip

    (tmp_path / "memeui-tiny.json").write_text(json.dumps(TINY_CLIP))
    open_clip.add_model_config(tmp_path)
    tower = create_image_tower("open_clip:memeui-tiny", text_encoder=None)
    assert isinstance(tower, OpenClipTower) and tower.dim == 32
    checkpoint = tmp_path / "tiny.pt"
    torch.save(tower.model.state_dict(), checkpoint)
    reloaded = create_image_tower(f"open_clip:memeui-tiny:{checkpoint}", text_encoder=None)
    stickers = shape_stickers(tmp_path / "shapes", 3)
    frames = [[Image.open(s.path)] for s in stickers]
    assert np.allclose(tower.encode_images(frames), reloaded.encode_images(frames), atol=1e-5)
    texts = reloaded.encode_texts(["a red square", "a blue circle"])
    assert texts.shape == (2, 32)
    assert np.allclose(np.linalg.norm(texts, axis=1), 1.0, atol=1e-4)


def test_unknown_tower_names_are_refused():
    with pytest.raises(ValueError, match="unknown image tower"):
        create_image_tower("dalle", text_encoder=None)
    assert create_image_tower("none", text_encoder=None) is None
