"""`memeui labels review …`, `memeui labels activity` and `memeui campaigns …`: settling
disagreements and running campaigns from a terminal. Through ``--server`` they go to the running
app's API under the signed-in user's role; without it they open the data dir's store."""

from __future__ import annotations

import sys

from annotations.store import EMOTION_TASKS, TASKS
from memeui.cli.common import call_server, local_store, open_studio_here, print_json, with_server


def add_review_commands(actions) -> None:
    """``labels review next|settle|undo|stats`` and ``labels activity``."""
    review = actions.add_parser("review", help="settle the items annotators disagree on")
    steps = review.add_subparsers(required=True, metavar="STEP")
    waiting = with_server(steps.add_parser("next", help="the item settling would change most"))
    waiting.set_defaults(run=run_review_next)
    settle = with_server(steps.add_parser("settle", help="settle an item: its label stands"))
    settle.add_argument("--item", required=True)
    settle.add_argument("--label", required=True)
    settle.set_defaults(run=run_review_settle)
    undo = with_server(steps.add_parser("undo", help="take back your latest settled label"))
    undo.set_defaults(run=run_review_undo)
    stats = with_server(steps.add_parser("stats", help="waiting, settled, accuracy, agreement"))
    stats.set_defaults(run=run_review_stats)
    for step in (waiting, settle, undo, stats):
        step.add_argument("--task", required=True, choices=EMOTION_TASKS)
        step.add_argument("--reviewer", default="cli",
                          help="who settles, without --server (with it: the signed-in user)")
    activity = with_server(actions.add_parser("activity", help="who labelled what and when"))
    activity.add_argument("--hours", type=int, default=24, help="labels per hour over these")
    activity.set_defaults(run=run_activity)


def add_commands(commands) -> None:
    """``campaigns open|list|close``."""
    campaigns = commands.add_parser("campaigns", help="labelling campaigns: open, list, close")
    actions = campaigns.add_subparsers(required=True, metavar="ACTION")
    open_ = with_server(actions.add_parser("open", help="open a campaign on a set of items"))
    open_.add_argument("name")
    open_.add_argument("--task", required=True, choices=TASKS)
    open_.add_argument("--items", required=True, metavar="SELECTION",
                       help="all, pack:NAME, file:NAME, uncertain:N or random:N")
    open_.add_argument("--overlap", type=int, default=1, help="annotators per item")
    open_.add_argument("--target", type=int, default=0, help="items to finish (0: all)")
    open_.add_argument("--hide-suggestions", action="store_true",
                       help="annotators do not see the model's suggestion")
    open_.set_defaults(run=run_campaigns_open)
    listing = with_server(actions.add_parser("list", help="campaigns and their progress"))
    listing.add_argument("--status", choices=["open", "closed"])
    listing.add_argument("--json", action="store_true")
    listing.set_defaults(run=run_campaigns_list)
    close = with_server(actions.add_parser("close", help="close a campaign, request its fine-tuning"))
    close.add_argument("campaign", type=int)
    close.set_defaults(run=run_campaigns_close)


def run_review_next(args) -> int:
    from annotations.review import next_review

    print_json(call_server(args, "/review_next", args.task, "") if args.server
               else next_review(local_store(), args.task))
    return 0


def run_review_settle(args) -> int:
    if args.server:
        result = call_server(args, "/review", args.task, args.item, args.label, "", "")
    else:
        from memeui.access import Identity

        result = open_studio_here().settle(args.task, args.item, args.label,
                                           Identity(args.reviewer, "reviewer"))
    print_json(result)
    return 0


def run_review_undo(args) -> int:
    if args.server:
        result = call_server(args, "/review_undo", args.task, "", "")
    else:
        undone = local_store().undo(args.task, args.reviewer, source="cli", review=True)
        result = None if undone is None else {"event": undone.id, "item": undone.item,
                                              "label": undone.label}
    print_json(result)
    return 0


def run_review_stats(args) -> int:
    from annotations.review import review_stats

    print_json(call_server(args, "/review_stats", args.task, "") if args.server
               else review_stats(local_store(), args.task))
    return 0


def run_activity(args) -> int:
    from annotations.activity import activity

    print_json(call_server(args, "/activity", args.hours, "") if args.server
               else activity(local_store(), args.hours))
    return 0


def run_campaigns_open(args) -> int:
    if args.server:
        result = call_server(args, "/campaign_open", args.name, args.task, args.items,
                             args.overlap, args.target, not args.hide_suggestions, "")
    else:
        from annotations.campaigns import open_campaign

        studio = open_studio_here()
        studio.ready(args.task)
        result = open_campaign(studio.store, args.name, args.task, args.items, "cli",
                               overlap=args.overlap, target=args.target or None,
                               suggestions=not args.hide_suggestions)
    print_json(result)
    return 0


def run_campaigns_list(args) -> int:
    from annotations.campaigns import campaigns

    rows = call_server(args, "/campaigns", args.status or "", "") if args.server \
        else campaigns(local_store(), args.status)
    if args.json:
        print_json(rows)
        return 0
    for c in rows:
        print(f"{c['id']:>4} {c['name']:<24} {c['task']:<18} {c['status']:<7} "
              f"{c['done']}/{c['target']} done, overlap {c['overlap']}, {c['selection']}")
    if not rows:
        print("no campaigns", file=sys.stderr)
    return 0


def run_campaigns_close(args) -> int:
    from annotations.campaigns import close_campaign

    print_json(call_server(args, "/campaign_close", args.campaign, "") if args.server
               else close_campaign(local_store(), args.campaign, "cli"))
    return 0
