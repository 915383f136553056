"""The Library tab: add sticker packs (files, a folder's files, a zip), see them, remove them."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import gradio as gr

from engine import Engine
from engine.stickers.ingest import IngestError
from memeui.access import Access


def packs_table(engine: Engine) -> list[list]:
    return [[p["name"], p["stickers"], p["source"]] for p in engine.list_packs()]


def report_markdown(report) -> str:
    lines = [f"**{report.summary()}**"]
    lines += [f"- refused `{name}`: {why}" for name, why in report.errors[:50]]
    lines += [f"- near-duplicates: `{a}` and `{b}` ({bits} bits apart)"
              for a, b, bits in report.near_duplicates[:20]]
    return "\n".join(lines)


def upload_folder(paths: list[Path], folder: Path) -> Path:
    """Several uploaded files as one folder; two files of the same name both stay (the second
    as ``name (2).png``), since browsers upload same-named files from different folders."""
    folder.mkdir()
    for path in paths:
        target, number = folder / path.name, 1
        while target.exists():
            number += 1
            target = folder / f"{path.stem} ({number}){path.suffix}"
        shutil.copy(path, target)
    return folder


def uploaded_paths(files) -> list[Path]:
    """The upload's paths; anything else (a caller of the API sending the wrong shape) is
    refused with a message, not a stack trace."""
    if isinstance(files, (str, dict)):
        files = [files]
    if not isinstance(files, list) or not files:
        raise gr.Error("Choose sticker files or a zip first.", duration=5)
    paths = []
    for file in files:
        path = file.get("path") if isinstance(file, dict) else file
        if not isinstance(path, str) or not Path(path).is_file():
            raise gr.Error("The upload is not a list of files.", duration=5)
        paths.append(Path(path))
    return paths


def build_library_tab(engine: Engine, access: Access, changed=lambda: None):
    """``changed`` runs after a pack is added or removed (the studio refreshes its items).
    Adding and removing packs is for admins (everyone in open mode). Returns the packs table
    and the remove dropdown, and what fills them (run at page load: packs added since start
    are in both)."""
    def add(files: list[str] | None, name: str | None, ocr: bool, request: gr.Request,
            progress=gr.Progress()):
        access.admin(request)
        paths = uploaded_paths(files)
        name = name.strip() if isinstance(name, str) else ""
        with tempfile.TemporaryDirectory() as tmp:
            source = paths[0] if len(paths) == 1 else upload_folder(paths, Path(tmp) / "upload")
            try:
                report = engine.add_pack(source, name or paths[0].stem, ocr=bool(ocr),
                                         progress=lambda f, m: progress(f, desc=m))
            except IngestError as error:
                raise gr.Error(str(error), duration=8) from None
        changed()
        return (report_markdown(report), packs_table(engine),
                gr.Dropdown(choices=engine.added_pack_names()))

    def remove(name: str | None, request: gr.Request):
        access.admin(request)
        if not name or not isinstance(name, str):
            raise gr.Error("Pick a pack to remove.", duration=5)
        try:
            engine.remove_pack(name)
        except IngestError as error:
            raise gr.Error(str(error), duration=8) from None
        changed()
        return (f"Removed **{name}**.", packs_table(engine),
                gr.Dropdown(choices=engine.added_pack_names(), value=None))

    gr.Markdown("Add stickers: PNG, JPEG, WebP, GIF, MP4 or WebM files, or a zip of them, "
                "optionally with a CSV/JSON file of labels, tags, captions and emotions.")
    with gr.Row():
        files = gr.File(label="Sticker files or a zip", file_count="multiple",
                        elem_id="library-files", scale=3)
        with gr.Column(scale=2):
            name = gr.Textbox(label="Pack name", placeholder="default: the first file's name",
                              elem_id="library-name", max_length=64)
            ocr = gr.Checkbox(value=engine.settings.ocr, label="Read text in stickers (OCR)")
            add_button = gr.Button("Add pack", variant="primary", elem_id="library-add")
    status = gr.Markdown(elem_id="library-status")
    table = gr.Dataframe(headers=["pack", "stickers", "source"], interactive=False,
                         label="Packs", elem_id="library-packs")  # filled at page load
    with gr.Row():
        choice = gr.Dropdown(label="Pack to remove", choices=engine.added_pack_names(),
                             elem_id="library-remove-choice", scale=3,
                             allow_custom_value=True)  # packs added after start; checked in remove
        remove_button = gr.Button("Remove pack", variant="stop", scale=1)
    add_button.click(add, [files, name, ocr], [status, table, choice], api_name="library_add",
                     concurrency_id="library", concurrency_limit=1)
    remove_button.click(remove, [choice], [status, table, choice], api_name="library_remove",
                        concurrency_id="library", concurrency_limit=1)
    return [table, choice], lambda: (packs_table(engine), gr.Dropdown(choices=engine.added_pack_names()))
