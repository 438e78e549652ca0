"""AisleWatch: shoplifting detection over store cameras. Motion-gated clips from each camera are scored by a
ConvLSTM; suspicious ones raise alerts to the security desk and to e-mail or webhooks; managers get per-store
PDF reports. Start with `aislewatch demo`, then `aislewatch config check FILE` and `aislewatch run -c FILE`."""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from common.app import quiet
from common.app.help import json_line, show_defaults
from common.app.model_cli import add_model_commands
from common.app.report_cli import add_report_command
from common.app.users_cli import add_users_commands
from common.logs import setup_logging
from common.settings import ConfigError, Settings, load_settings
from common.words import count
from inference.devices import DeviceUnavailable

log = logging.getLogger("aislewatch.cli")


def _config_path(args: argparse.Namespace) -> str | None:
    return args.config or os.environ.get("AISLEWATCH_CONFIG")


# The roles whose start-up checks (common.app.preflight) each command runs before it starts anything.
_COMMAND_ROLES = {"run": {"ingest", "infer", "alerts", "desk"}, "ingest": {"ingest"}, "infer": {"infer"},
                  "alerts": {"alerts"}, "desk": {"desk"}, "report": {"report"}, "db": {"db"}, "users": {"db"},
                  "feedback": {"db"}, "model": {"db"}}


def _settings(args: argparse.Namespace) -> Settings:
    from common.app.preflight import check_settings

    settings = load_settings(_config_path(args))
    check_settings(settings, _source(args), _COMMAND_ROLES.get(getattr(args, "command", ""), set()))
    return settings


def _source(args: argparse.Namespace) -> str:
    """How ConfigError names where the settings came from (as ``load_settings`` does)."""
    return _config_path(args) or "(defaults and environment)"


def cmd_config_check(args: argparse.Namespace) -> int:
    from common.app.preflight import check_settings
    from inference.metadata import model_input_shape

    settings = load_settings(args.file)
    check_settings(settings, args.file)  # every role's start-up checks
    cameras = settings.cameras()
    print(f"{args.file}: OK — {len(settings.stores)} store(s), {len(cameras)} camera(s), bus={settings.bus.kind}, "
          f"database={settings.database.url.split(':', 1)[0]}, "
          f"model input {model_input_shape(settings.model.path)}")
    if not cameras:
        print("  note: no cameras: nothing will be watched (stores: and their cameras: go in the file; an empty "
              "file is the defaults)")
    for _, camera in cameras:
        missing = camera.missing_variables()
        if missing:
            print(f"  note: camera {camera.id} needs {', '.join(missing)} in the environment of the processes "
                  "that open it (ingest, run); they are not set here")
    return 0


def cmd_db_upgrade(args: argparse.Namespace) -> int:
    from common.app.runtime import open_database

    settings = _settings(args)
    setup_logging("WARNING", settings.service.log_json)  # Alembic's INFO lines: with --verbose only
    db = open_database(settings, upgrade=True)
    db.close()
    print("database schema is up to date")
    return 0


def _serve(args: argparse.Namespace, roles: set[str], *, with_desk: bool = False) -> int:
    from common.app.preflight import check_settings
    from common.app.runtime import Pipeline, install_stop_signals

    def checked(path: str | Path | None) -> Settings:
        """Settings from ``path``, at start and on every reload (before anything is loaded or restarted): a
        process that opens cameras needs every camera credential variable set (the other roles never
        resolve them), and one that infers refuses clips its model cannot take."""
        loaded = load_settings(path, camera_credentials="ingest" in roles)
        check_settings(loaded, str(path) if path is not None else _source(args), roles | (
            {"desk"} if with_desk and loaded.desk.enabled else set()))
        return loaded

    config_path = _config_path(args)
    settings = checked(config_path)
    setup_logging(settings.service.log_level, settings.service.log_json)
    if "ingest" in roles and not settings.cameras():
        log.warning("%s has no cameras: nothing will be captured (add stores[].cameras; "
                    "`aislewatch config check FILE` shows what a file holds)", _source(args))
    if with_desk and settings.desk.enabled:
        roles = roles | {"desk"}
    stop = threading.Event()
    pipeline = Pipeline.build(settings, roles, stop=stop, inference_workers=getattr(args, "workers", None))

    def reload() -> None:
        try:
            pipeline.reload(checked(config_path))
            log.info("configuration reloaded")
        except ConfigError as exc:
            log.error("configuration not reloaded: %s", exc)

    install_stop_signals(stop, on_reload=reload if "ingest" in roles else None)
    pipeline.start()
    if pipeline.ingest is not None and config_path:
        pipeline.ingest.watch_config(Path(config_path), loader=checked)
    try:
        pipeline.wait()
    finally:
        pipeline.close()
    failed = pipeline.failed_worker()
    return 1 if failed is not None else 0


def cmd_run(args: argparse.Namespace) -> int:
    return _serve(args, {"ingest", "infer", "alerts"}, with_desk=True)


def cmd_desk(args: argparse.Namespace) -> int:
    """The security desk alone (scaled mode: as many replicas as wanted, behind a load balancer)."""
    from alerts.desk.app import create_app
    from alerts.desk.server import serve_foreground
    from common.app.runtime import open_database

    settings = _settings(args)
    setup_logging(settings.service.log_level, settings.service.log_json)
    db = open_database(settings)
    try:
        serve_foreground(create_app(settings, db), settings.desk)
    finally:
        db.close()
    return 0


def cmd_ingest(args: argparse.Namespace) -> int:
    return _serve(args, {"ingest"})


def cmd_infer(args: argparse.Namespace) -> int:
    return _serve(args, {"infer"})


def cmd_alerts(args: argparse.Namespace) -> int:
    return _serve(args, {"alerts"})


def cmd_demo(args: argparse.Namespace) -> int:
    from common.app.demo import run_demo

    setup_logging("WARNING" if not args.verbose else "INFO")
    summary = run_demo(Path(args.out), quick=args.quick)
    ok = summary["detected"] == summary["incidents"] and summary["false_alarms"] == 0
    if args.serve:
        from common.app.demo import serve_demo_desk

        serve_demo_desk(Path(args.out), args.port)
    return 0 if ok or not args.strict else 1


def cmd_synth_dataset(args: argparse.Namespace) -> int:
    from inference.synth import write_dataset

    manifest = write_dataset(
        Path(args.out), args.per_class, seed=args.seed, progress=True, cameras=args.cameras, store_seed=args.store_seed,
        realism=args.realism,
    )
    print(f"wrote {2 * args.per_class} labelled videos under {args.out} (manifest: {manifest})")
    return 0


def cmd_synth_stream(args: argparse.Namespace) -> int:
    from inference.synth import camera_scene_seed, write_stream

    view = camera_scene_seed(args.store_seed, args.view) if args.view is not None else None
    truth = write_stream(
        Path(args.out), duration_s=args.duration, seed=args.seed, incidents=args.incidents,
        normal_shoppers=args.normal, progress=True, scene_seed=view,
    )
    print(f"wrote {args.out} ({truth.duration_s:.0f} s, {count(len(truth.incidents), 'incident')}) and its .truth.json")
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from inference.train import train

    setup_logging("INFO")
    report = train(
        Path(args.dataset), Path(args.out), epochs=args.epochs, batch_size=args.batch_size, seed=args.seed,
        val_goal=args.goal, learning_rate=args.learning_rate, patience=args.patience,
        cache_dir=Path(args.cache_dir) if args.cache_dir else None,
        init_from=Path(args.init_from) if args.init_from else None, split_by=args.split_by,
        input_bits=args.input_bits,
    )
    print(report)
    return 0


def _since(text: str) -> Any:
    """``--since``: a date (midnight UTC) or an ISO 8601 time (UTC when it names no zone)."""
    from datetime import UTC, datetime

    try:
        at = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a date such as 2026-12-01 or an ISO time, got {text!r}") from None
    return at if at.tzinfo is not None else at.replace(tzinfo=UTC)


def cmd_feedback_export(args: argparse.Namespace) -> int:
    from common.app.runtime import open_database
    from inference.feedback import export_feedback

    settings = _settings(args)
    setup_logging("WARNING")
    db = open_database(settings)
    try:
        summary = export_feedback(
            db, Path(settings.service.evidence_dir), Path(args.out_dir), since=args.since, stores=args.stores,
            margin_before_s=settings.evidence.margin_before_s, margin_after_s=settings.evidence.margin_after_s,
        )
    except ValueError as exc:
        print(f"aislewatch: {exc}", file=sys.stderr)
        return 2
    finally:
        db.close()
    print(summary)
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from inference.evaluate import evaluate

    setup_logging("INFO")
    metrics = evaluate(
        Path(args.model), Path(args.dataset), Path(args.out),
        split_path=Path(args.split) if args.split else None, threshold=args.threshold, all_videos=args.all_videos,
        cache_dir=Path(args.cache_dir) if args.cache_dir else None, split_by=args.split_by,
    )
    print(json.dumps(metrics, indent=2, default=str))
    return 0


def _n_of_m(text: str) -> tuple[int, int]:
    """``N/M`` as given on the command line (the rule's bounds are the settings' to check)."""
    n, sep, m = text.partition("/")
    if not sep or not n.strip().isdigit() or not m.strip().isdigit():
        raise argparse.ArgumentTypeError(f"expected N/M such as 2/4, got {text!r}")
    return int(n), int(m)


def cmd_evaluate_streams(args: argparse.Namespace) -> int:
    from common.app.stream_eval import evaluate_streams

    setup_logging("WARNING")
    # with --json, stdout carries the report alone: progress and the table go to stderr
    with contextlib.redirect_stdout(sys.stderr if args.json else sys.stdout):
        report = evaluate_streams(
            Path(args.streams), Path(args.out), model_path=Path(args.model) if args.model else None,
            threshold=args.threshold, n_of_m=args.n_of_m, overlap=args.overlap,
            plots_dir=Path(args.plots) if args.plots else None,
        )
    if args.json:
        print(json_line(report))
    ok = report["detected"] == report["incidents"] and report["false_alarms"] == 0
    return 0 if ok or not args.strict else 1


def cmd_classify(args: argparse.Namespace) -> int:
    from inference.classify import classify_videos
    from inference.model import calibrated_threshold

    setup_logging("WARNING")
    settings = _settings(args)
    model = Path(args.model) if args.model else settings.model.path
    threshold = args.threshold
    if threshold is None:
        threshold = settings.alert_threshold(calibrated_threshold(Path(model)))
    verdicts = classify_videos(
        [Path(v) for v in args.videos], Path(model), Path(args.out), as_json=args.json, threshold=threshold,
        window_s=args.window, stride_s=args.stride, ood_margin=settings.model.ood_margin,
    )
    failed = 0
    for verdict in verdicts:
        if args.json:
            print(json_line(verdict.to_dict()))  # JSON Lines: one compact object per video
        else:
            print(verdict)
        failed += int(getattr(verdict, "error", None) is not None)
        if getattr(verdict, "partial", False) and not args.accept_partial:
            # a log record, not a bare line, so --log-format json keeps stderr JSON
            log.error("%s is truncated: %s; its verdict covers only that (--accept-partial accepts it)",
                      verdict.path, verdict.decoded)
            failed += 1
    return 1 if failed else 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="aislewatch", description=__doc__)
    parser.add_argument("-c", "--config", help="YAML settings file (default: $AISLEWATCH_CONFIG, else defaults)")
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    parser.add_argument("--verbose", dest="verbose_all", action="store_true",
                        help="show INFO logs and the libraries' own start-up output (TensorFlow, Alembic, OpenCV, "
                        "FFmpeg) that is hidden by default")
    parser.add_argument("--log-format", choices=("text", "json"), default=None,
                        help="log lines as text or as JSON Lines (default: service.log_json of the settings, "
                        "else text)")
    sub = parser.add_subparsers(dest="command", required=True)
    # ``-c`` is accepted after the command too (``aislewatch infer -c FILE``, as documented); SUPPRESS keeps
    # a value given before the command when it is not repeated after it.
    config_option = argparse.ArgumentParser(add_help=False)
    config_option.add_argument("-c", "--config", default=argparse.SUPPRESS, help="YAML settings file")

    config = sub.add_parser("config", help="check a configuration file").add_subparsers(dest="action", required=True)
    check = config.add_parser("check", help="validate FILE without starting anything")
    check.add_argument("file")
    check.set_defaults(func=cmd_config_check)

    db = sub.add_parser("db", help="database schema").add_subparsers(dest="action", required=True)
    db.add_parser(
        "upgrade", parents=[config_option], help="create or upgrade the schema (Alembic)"
    ).set_defaults(func=cmd_db_upgrade)

    add_users_commands(sub, config_option, _settings)
    add_model_commands(sub, config_option, _settings)

    serve = [config_option]
    sub.add_parser("run", help="every stage in one process (embedded mode)", parents=serve).set_defaults(func=cmd_run)
    sub.add_parser("ingest", help="camera capture → motion-gated clips → bus", parents=serve).set_defaults(func=cmd_ingest)
    infer = sub.add_parser("infer", help="clips → ConvLSTM → results (one consumer-group member)", parents=serve)
    infer.add_argument("--workers", type=int, default=None,
                       help="inference threads feeding the one model (default: 1 on a CPU, inference.gpu_consumers on a GPU)")
    infer.set_defaults(func=cmd_infer)
    sub.add_parser("alerts", help="results → rules → alerts and notifications", parents=serve).set_defaults(func=cmd_alerts)
    sub.add_parser("desk", help="the security desk web app (live alerts, verdicts)", parents=serve).set_defaults(func=cmd_desk)

    add_report_command(sub, serve, _settings)

    demo = sub.add_parser("demo", help="the whole job on a synthetic store stream, embedded")
    demo.add_argument("--out", default="build/demo", help="folder for the streams, database, evidence and reports")
    demo.add_argument("--quick", action="store_true", help="a shorter stream (for tests)")
    demo.add_argument("--verbose", action="store_true", help="log at INFO and show the libraries' start-up output")
    demo.add_argument("--strict", action="store_true",
                      help="exit 1 unless every incident is caught without false alarms")
    demo.add_argument("--serve", action="store_true",
                      help="then keep the security desk up on the demo's alerts (prints the URL and a login)")
    demo.add_argument("--port", type=int, default=8080,
                      help="the desk's port with --serve (default 8080; 0: any free one)")
    demo.set_defaults(func=cmd_demo)

    synth = sub.add_parser("synth", help="make labelled synthetic store scenes").add_subparsers(
        dest="action", required=True
    )
    ds = synth.add_parser("dataset", help="short labelled videos: DIR/shoplifting, DIR/normal")
    ds.add_argument("out")
    ds.add_argument("--per-class", type=int, default=300, help="videos per class")
    ds.add_argument("--seed", type=int, default=0, help="random seed (the same seed renders the same videos)")
    ds.add_argument("--cameras", type=int, default=None,
                    help="film every video with one of this many fixed camera views of one store")
    ds.add_argument("--store-seed", type=int, default=0, help="which synthetic store's camera views")
    ds.add_argument("--realism", action="store_true",
                    help="a real camera's look (compression, blur, noise, exposure, perspective) and crowds of "
                    "passers-by among the normal videos (inference.synth.realism)")
    ds.set_defaults(func=cmd_synth_dataset)
    st = synth.add_parser("stream", help="a long camera stream with a ground-truth JSON")
    st.add_argument("out")
    st.add_argument("--duration", type=float, default=180.0, help="length of the stream in seconds")
    st.add_argument("--incidents", type=int, default=3, help="scripted concealments in it")
    st.add_argument("--normal", type=int, default=5, help="normal shoppers in it")
    st.add_argument("--seed", type=int, default=0, help="random seed (the same seed renders the same stream)")
    st.add_argument("--view", type=int, default=None,
                    help="film with camera view K of the store --store-seed (as `synth dataset --cameras`)")
    st.add_argument("--store-seed", type=int, default=0, help="which synthetic store's camera views")
    st.set_defaults(func=cmd_synth_stream)

    train = sub.add_parser("train", help="train the ConvLSTM on DATASET_DIR (one subfolder per class)")
    train.add_argument("dataset")
    train.add_argument("--out", default="build/model/convlstm.keras",
                       help="model file to write (its .json sidecar and split file beside it)")
    train.add_argument("--epochs", type=int, default=30, help="most epochs to train")
    train.add_argument("--batch-size", type=int, default=16, help="clips per training step")
    train.add_argument("--seed", type=int, default=0, help="random seed of the split and the initial weights")
    train.add_argument("--goal", default="max_f1", help="threshold goal: max_f1 or min_precision=0.95")
    train.add_argument("--learning-rate", type=float, default=1e-3, help="Adam's learning rate")
    train.add_argument("--patience", type=int, default=8, help="epochs without improvement before stopping")
    train.add_argument("--cache-dir", default=None, help="decoded-clip cache (default: clip-cache/ beside --out)")
    train.add_argument("--init-from", default=None,
                       help="fine-tune: start from this model's weights (same architecture) instead of random")
    train.add_argument("--split-by", choices=("video", "camera"), default="video",
                       help="camera: every camera's videos on one side (labels.csv of `feedback export`)")
    train.add_argument("--input-bits", type=int, choices=range(1, 9), default=5, metavar="1..8",
                       help="bits a value of the model's input keeps (recorded in its sidecar; cameras' "
                       "clip.bits must be at least this; default 5)")
    train.set_defaults(func=cmd_train)

    evaluate = sub.add_parser("evaluate", help="metrics and plots on the held-out test split")
    evaluate.add_argument("model")
    evaluate.add_argument("dataset")
    evaluate.add_argument("--out", default="build/eval", help="folder for metrics.json and the plots")
    evaluate.add_argument("--split", default=None, help="split file (default: the one written beside the model)")
    evaluate.add_argument("--threshold", type=float, default=None, help="default: the model's calibrated one")
    evaluate.add_argument("--cache-dir", default=None, help="decoded-clip cache (default: clip-cache/ beside MODEL)")
    evaluate.add_argument("--all-videos", action="store_true",
                          help="score every video of DATASET_DIR (a dataset the model never saw)")
    evaluate.add_argument("--split-by", choices=("camera",), default=None,
                          help="camera: test on the dataset's own split by camera instead of the split file")
    evaluate.set_defaults(func=cmd_evaluate)

    feedback = sub.add_parser("feedback", help="the desk's verdicts as training data").add_subparsers(
        dest="action", required=True
    )
    export = feedback.add_parser(
        "export", parents=[config_option],
        help="reviewed alerts and missed thefts → OUT_DIR/shoplifting, OUT_DIR/normal, OUT_DIR/labels.csv",
    )
    export.add_argument("out_dir")
    export.add_argument("--since", type=_since, default=None, help="only alerts raised from this date (UTC) on")
    export.add_argument("--stores", nargs="+", default=None, metavar="ID", help="only these stores")
    export.set_defaults(func=cmd_feedback_export)

    ev_streams = sub.add_parser(
        "evaluate-streams", help="event level: the pipeline over recorded streams; caught, missed, false alarms"
    )
    ev_streams.add_argument("streams", help="folder of videos; one without a .truth.json beside it holds no incident")
    ev_streams.add_argument("--model", default=None, help="model file (default: the bundled one)")
    ev_streams.add_argument("--out", default="build/stream-eval", help="folder for stream-eval.json and the run's data")
    ev_streams.add_argument("--threshold", type=float, default=None, help="default: the model's calibrated one")
    ev_streams.add_argument("--n-of-m", type=_n_of_m, default=None,
                            help="alert rule as N/M (default: the alerts.n_of_m default, 2/4)")
    ev_streams.add_argument("--overlap", type=float, default=None,
                            help="clip overlap (default: the clip.overlap default, 0.75: a 1 s stride)")
    ev_streams.add_argument("--strict", action="store_true", help="exit 1 unless all caught without false alarms")
    ev_streams.add_argument("--json", action="store_true", help="print the report as one JSON line (the table goes to stderr)")
    ev_streams.add_argument("--plots", default=None, metavar="DIR", help="write scores.png, the clip-score histogram")
    ev_streams.set_defaults(func=cmd_evaluate_streams)

    classify = sub.add_parser("classify", help="offline verdict for video files, with a probability timeline")
    classify.add_argument("videos", nargs="+")
    classify.add_argument("--model", default=None, help="model file (default: from settings)")
    classify.add_argument("--out", default="build/classify", help="folder for the timeline charts (and verdicts.json)")
    classify.add_argument("--json", action="store_true",
                          help="print JSON Lines: one compact verdict object per video (and write verdicts.json)")
    classify.add_argument("--threshold", type=float, default=None, help="default: config, else the model's")
    classify.add_argument("--window", type=float, default=4.0, help="seconds per window (20 frames)")
    classify.add_argument("--stride", type=float, default=1.0, help="seconds between window starts")
    classify.add_argument("--accept-partial", action="store_true",
                          help="exit 0 for a truncated file too (its verdict covers what could be decoded)")
    classify.set_defaults(func=cmd_classify)

    return parser


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("aislewatch")
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "unknown (not installed)"


def main(argv: Sequence[str] | None = None) -> int:
    parser = show_defaults(build_parser())
    args = parser.parse_args(argv)
    quiet.configure(verbose=args.verbose_all or bool(getattr(args, "verbose", False)), log_format=args.log_format)
    func: Any = args.func
    try:
        return int(func(args))
    except ConfigError as exc:  # one line per problem: the file, the key and the reason
        for problem in exc.problems:
            print(f"aislewatch: {exc.source or _source(args)}: {' '.join(problem.split())}", file=sys.stderr)
        return 2
    except DeviceUnavailable as exc:  # model.device: gpu without one, or a backend not installed
        print(f"aislewatch: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
