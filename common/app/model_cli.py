"""``aislewatch model compare``: the commands that help a chain decide whether to switch models; and
``aislewatch model describe``: the description of a model's training inputs that flags foreign cameras."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from common.settings import Settings


def cmd_model_compare(args: argparse.Namespace, settings_of: Callable[[argparse.Namespace], Settings]) -> int:
    from common.app.help import json_line
    from common.app.model_compare import compare_export, compare_shadow
    from common.logs import setup_logging
    from inference.compare import ExportError, format_export_report, format_shadow_report

    setup_logging("WARNING")
    settings = settings_of(args)
    try:
        if args.from_shadow:
            if args.models or args.all_rows:
                print("aislewatch: --from-shadow takes no NEW OLD DATA nor --all-rows (the candidate is model.shadow_path)",
                      file=sys.stderr)
                return 2
            from common.app.runtime import open_database

            db = open_database(settings, upgrade=False)
            try:
                report = compare_shadow(settings, db, days=args.days)
            finally:
                db.close()
            text = format_shadow_report(report)
        else:
            if len(args.models) != 3:
                print("aislewatch: model compare needs NEW OLD DATA (or --from-shadow -c FILE)", file=sys.stderr)
                return 2
            new, old, data = (Path(a) for a in args.models)

            def progress(line: str) -> None:
                if not args.json:
                    print(line, file=sys.stderr, flush=True)

            report = compare_export(settings, new, old, data, progress=progress, all_rows=args.all_rows)
            text = format_export_report(report)
    except (ExportError, FileNotFoundError) as exc:
        print(f"aislewatch: {exc}", file=sys.stderr)
        return 2
    print(json_line(report) if args.json else text)
    return 0


def cmd_model_describe(args: argparse.Namespace) -> int:
    """Compute the input description of ``args.model`` from the dataset it was trained on, into its sidecar."""
    from inference.ood import describe_dataset, write_description

    model, data = Path(args.model), Path(args.dataset)
    if not model.is_file():
        print(f"aislewatch: {model}: no such model file", file=sys.stderr)
        return 2
    try:
        from inference.metadata import model_input_bits

        description = describe_dataset(data, max_videos=args.max_videos, seed=args.seed, cache_dir=args.cache,
                                       say=lambda line: print(line, file=sys.stderr, flush=True),
                                       bits=model_input_bits(model))
        sidecar = write_description(model, description)
    except (ValueError, FileNotFoundError) as exc:
        print(f"aislewatch: {exc}", file=sys.stderr)
        return 2
    print(f"wrote the input description ({description.clips} clips, threshold {description.threshold:.2f}) "
          f"into {sidecar}")
    return 0


def cmd_model_calibrate(args: argparse.Namespace) -> int:
    """Recalibrate ``args.model``'s threshold for ``args.goal`` on its own validation split."""
    from inference.recalibrate import recalibrate

    try:
        done = recalibrate(Path(args.model), Path(args.dataset), args.goal, cache_dir=args.cache)
    except (ValueError, FileNotFoundError) as exc:
        print(f"aislewatch: {exc}", file=sys.stderr)
        return 2
    print(done.summary())
    return 0


def add_model_commands(sub: Any, config_option: argparse.ArgumentParser,
                       settings_of: Callable[[argparse.Namespace], Settings]) -> None:
    """``model compare`` (the alert rule and camera settings come from ``-c FILE``)."""
    model = sub.add_parser("model", help="compare a candidate model with the one running; describe a model's "
                           "training inputs; calibrate its threshold again").add_subparsers(
        dest="action", required=True
    )
    compare = model.add_parser(
        "compare", parents=[config_option],
        help="NEW OLD DATA: precision, recall and false alarms at the alert rule on the held-out cameras of a "
        "`feedback export`; or --from-shadow: what the stored shadow scores would have raised, per camera-hour",
    )
    compare.add_argument("models", nargs="*", metavar="NEW OLD DATA",
                         help="the candidate model, the running one, and a `feedback export` folder")
    compare.add_argument("--all-rows", action="store_true",
                         help="compare on every row of the export, not only its held-out test split (needed when "
                         "it has none; the models may have trained on these rows)")
    compare.add_argument("--from-shadow", action="store_true",
                         help="compare the active model with model.shadow_path on the clips both scored")
    compare.add_argument("--days", type=float, default=None, help="with --from-shadow: only the last N days")
    compare.add_argument("--json", action="store_true", help="print the report as one JSON line")
    compare.set_defaults(func=lambda args: cmd_model_compare(args, settings_of))
    describe = model.add_parser(
        "describe", help="MODEL DATASET: describe the inputs the model was trained on (image statistics of its "
        "clips) in its sidecar, so that cameras whose scenes are unlike them are flagged out of distribution",
    )
    describe.add_argument("model", help="the model file (.keras or .h5) whose sidecar gets the description")
    describe.add_argument("dataset", help="the class-per-folder dataset the model was trained on")
    describe.add_argument("--max-videos", type=int, default=None, help="an even random sample of this many videos")
    describe.add_argument("--seed", type=int, default=0, help="seed of that sample")
    describe.add_argument("--cache", type=Path, default=None, help="decoded-clip cache (as `train` keeps one)")
    describe.set_defaults(func=cmd_model_describe)
    calibrate = model.add_parser(
        "calibrate", help="MODEL DATASET --goal G: choose the alert threshold again for another goal, on the "
        "validation split the model was trained with (as `train` does); weights untouched",
    )
    calibrate.add_argument("model", help="the model file whose sidecar gets the new threshold")
    calibrate.add_argument("dataset", help="the class-per-folder dataset the model was trained on")
    calibrate.add_argument("--goal", required=True, help="max_f1 or min_precision=P (e.g. min_precision=0.99)")
    calibrate.add_argument("--cache", type=Path, default=None,
                           help="decoded-clip cache (default: clip-cache/ beside the model, as `train` keeps it)")
    calibrate.set_defaults(func=cmd_model_calibrate)
