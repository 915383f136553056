"""`memeui library add|list|remove|stickers`: sticker packs."""

from __future__ import annotations

import sys
from pathlib import Path

from memeui.cli.common import (ProgressBar, call_server, make_engine, open_studio_here, print_json,
                               print_listing, stdout_for_json_only, with_server)

def add_commands(commands) -> None:
    """The library commands."""
    library = commands.add_parser("library", help="add, list and remove sticker packs")
    actions = library.add_subparsers(required=True, metavar="ACTION")
    add = actions.add_parser("add", help="add a folder, zip or file as a pack")
    add.add_argument("path", type=Path)
    add.add_argument("--name", help="pack name (default: the file or folder name)")
    add.add_argument("--no-ocr", action="store_true", help="skip OCR (faster)")
    add.add_argument("--json", action="store_true", help="print the report as JSON")
    add.set_defaults(run=run_library_add)
    listing = actions.add_parser("list", help="packs and their sticker counts")
    listing.add_argument("--json", action="store_true")
    listing.set_defaults(run=run_library_list)
    remove = actions.add_parser("remove", help="remove a pack added before")
    remove.add_argument("name")
    remove.set_defaults(run=run_library_remove)
    stickers = actions.add_parser("stickers", help="every sticker with its emotion and who gave it")
    stickers.add_argument("--json", action="store_true")
    with_server(stickers).set_defaults(run=run_library_stickers)


def run_library_add(args) -> int:
    studio = open_studio_here()
    engine = studio.engine
    with stdout_for_json_only(), ProgressBar() as bar:
        report = engine.add_pack(args.path, args.name, ocr=engine.settings.ocr and not args.no_ocr,
                                 progress=bar.update)
        studio.sync_sticker_items()  # the new stickers are items to label at once
    if args.json:
        print_json(report.to_dict())
    else:
        print(report.summary())
        for file_name, reason in report.errors:
            print(f"  refused {file_name}: {reason}")
    return 0


def run_library_list(args) -> int:
    with stdout_for_json_only():
        packs = make_engine().list_packs()
    print_listing(packs, args.json,
                  lambda pack: f"{pack['name']:<32} {pack['stickers']:>6}  {pack['source']}")
    return 0


def run_library_remove(args) -> int:
    with stdout_for_json_only():
        studio = open_studio_here()
        studio.engine.remove_pack(args.name)
        studio.sync_sticker_items()  # its stickers retire from the queues
    print(f"removed {args.name}", file=sys.stderr)
    return 0


def run_library_stickers(args) -> int:
    if args.server:
        stickers = call_server(args, "/library_stickers")
    else:
        from memeui.studio import sticker_listing

        with stdout_for_json_only():
            stickers = sticker_listing(open_studio_here().engine)
    print_listing(stickers, args.json,
                  lambda s: f"{s['id']}  {s['emotion']:<9} {s['emotion_source']:<6} "
                            f"{s['confidence']:.2f}  {s['label']}  ({s['pack']})")
    return 0
