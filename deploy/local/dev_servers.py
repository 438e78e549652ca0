"""Run the real servers locally for development: Kafka, PostgreSQL, RTSP cameras (Ctrl-C stops them).

Uses the same harness as the integration tests (tests/integration/servers.py), with data kept under
``--data`` so a restart finds its topics and tables again::

    python3 deploy/local/dev_servers.py kafka --port 9092
    python3 deploy/local/dev_servers.py postgres --port 5432        # writes the URL to <data>/url.txt
    RTSP_USERNAME=cam RTSP_PASSWORD=... python3 deploy/local/dev_servers.py rtsp --port 8554 a.mp4 b.mp4

Needs what ``.ci/install.sh`` installs.  Credentials are never printed.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "integration"))

from servers import KafkaServer, PostgresServer, RtspServer, ServerError  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="what", required=True)
    kafka = sub.add_parser("kafka", help="single-node Apache Kafka (KRaft) on 127.0.0.1")
    kafka.add_argument("--port", type=int, default=9092)
    kafka.add_argument("--data", type=Path, default=ROOT / "build" / "local" / "kafka")
    pg = sub.add_parser("postgres", help="PostgreSQL on 127.0.0.1 with database 'aislewatch'")
    pg.add_argument("--port", type=int, default=5432)
    pg.add_argument("--data", type=Path, default=ROOT / "build" / "local" / "postgres")
    rtsp = sub.add_parser("rtsp", help="video files as looping RTSP cameras /cam1, /cam2, ...")
    rtsp.add_argument("--port", type=int, default=8554)
    rtsp.add_argument("--size", default=None, help="scale to WIDTHxHEIGHT, e.g. 640x360")
    rtsp.add_argument("--data", type=Path, default=ROOT / "build" / "local" / "rtsp")
    rtsp.add_argument("videos", nargs="+", type=Path)
    args = parser.parse_args(argv)

    args.data.mkdir(parents=True, exist_ok=True)
    server: KafkaServer | PostgresServer | RtspServer
    if args.what == "kafka":
        server = KafkaServer(workdir=args.data, port=args.port, controller_port=args.port + 1)
    elif args.what == "postgres":
        server = PostgresServer(workdir=args.data, port=args.port)
    else:
        server = RtspServer(
            args.videos,
            port=args.port,
            username=os.environ.get("RTSP_USERNAME"),
            password=os.environ.get("RTSP_PASSWORD"),
            size=args.size,
            workdir=args.data,
        )
    try:
        server.start()
    except ServerError as exc:
        print(f"dev_servers: {exc}", file=sys.stderr)
        return 1
    if isinstance(server, KafkaServer):
        print(f"kafka: bootstrap {server.bootstrap} (log {server.log_path})", flush=True)
    elif isinstance(server, PostgresServer):
        url_file = args.data / "url.txt"
        database = "aislewatch"
        try:
            server.new_database(name=database)
        except Exception as exc:
            if "Duplicate" not in type(exc).__name__:  # a duplicate is the database of an earlier run
                print(f"postgres: cannot create database {database}: {type(exc).__name__}", file=sys.stderr)
                server.close()
                return 1
        url_file.write_text(server.url(database) + "\n", encoding="utf-8")
        url_file.chmod(0o600)
        print(f"postgres: 127.0.0.1:{server.port}, URL (with password) in {url_file}", flush=True)
    else:
        for name in server.mounts:
            print(f"rtsp: {server.url(name, credentials=False)}", flush=True)

    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    while not stop.wait(1.0):
        if not server.running:
            print("dev_servers: the server exited; see its log in " + str(args.data), file=sys.stderr)
            break
    server.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
