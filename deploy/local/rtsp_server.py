#!/usr/bin/python3
"""A local RTSP "camera" server: serves video files in a loop as live H.264 streams, one per mount point.

Run it with Debian's own Python (``/usr/bin/python3``), which can import GStreamer through ``gi``; a
virtual environment's Python cannot::

    /usr/bin/python3 deploy/local/rtsp_server.py --port 8554 --mount cam1=a.mp4 --mount cam2=b.mp4

Each input is transcoded once with ffmpeg into a small-GOP H.264 MP4 (cached by path, size and mtime),
because cameras send H.264 and opencv's ``VideoWriter`` only writes MPEG-4 Part 2 here.  Each mount then
behaves like a live camera: one pipeline per mount plays the file at its own frame rate in an endless loop
and every client joins the live stream at the next key frame.  Optional RTSP basic authentication takes
its credentials from the environment (``RTSP_USERNAME`` / ``RTSP_PASSWORD``), never from the command line,
so they do not show in process listings; they are never printed.

Prints ``READY <port> <mount>...`` on stdout once it accepts connections; SIGTERM/SIGINT stop it.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import signal
import subprocess
import sys
import threading
from pathlib import Path

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstApp", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstApp, GstRtspServer  # noqa: E402

_ = GstApp  # registers the AppSrc/AppSink methods


def log(message: str) -> None:
    print(f"rtsp_server: {message}", file=sys.stderr, flush=True)


def transcode(source: Path, cache_dir: Path, fps: float | None, size: str | None) -> Path:
    """Return an H.264 (baseline, one key frame per second, no audio) MP4 copy of ``source``, cached."""
    stat = source.stat()
    tag = f"{source.resolve()}|{stat.st_size}|{stat.st_mtime_ns}|{fps}|{size}"
    target = cache_dir / f"{source.stem}-{hashlib.sha1(tag.encode()).hexdigest()[:16]}.mp4"
    if target.exists():
        return target
    ffmpeg = shutil.which("ffmpeg")
    if ffmpeg is None:
        raise SystemExit("rtsp_server: ffmpeg is not installed (apt-get install ffmpeg)")
    cache_dir.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(".part.mp4")
    filters = []
    if size:
        width, height = size.lower().split("x")
        filters.append(f"scale={int(width)}:{int(height)}")
    if fps:
        filters.append(f"fps={fps}")
    # One key frame per second at the output frame rate, so a client that joins waits at most a second.
    gop = str(max(1, round(fps or probe_fps(source) or 15)))
    cmd = [ffmpeg, "-nostdin", "-loglevel", "error", "-y", "-i", str(source), "-an"]
    if filters:
        cmd += ["-vf", ",".join(filters)]
    cmd += ["-c:v", "libx264", "-preset", "veryfast", "-tune", "zerolatency", "-profile:v", "baseline",
            "-pix_fmt", "yuv420p", "-g", gop, "-keyint_min", gop, "-sc_threshold", "0", "-bf", "0",
            "-movflags", "+faststart", "-f", "mp4", str(partial)]  # fmt: skip
    result = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        partial.unlink(missing_ok=True)
        raise SystemExit(f"rtsp_server: ffmpeg could not transcode {source}: {result.stderr.strip()[-2000:]}")
    partial.replace(target)
    return target


def probe_fps(source: Path) -> float | None:
    """The video's average frame rate according to ffprobe, if it can tell."""
    ffprobe = shutil.which("ffprobe")
    if ffprobe is None:
        return None
    out = subprocess.run(
        [ffprobe, "-v", "error", "-select_streams", "v:0", "-show_entries", "stream=avg_frame_rate",
         "-of", "default=nw=1:nk=1", str(source)],
        capture_output=True, text=True, check=False,
    ).stdout.strip()  # fmt: skip
    try:
        num, _, den = out.partition("/")
        return float(num) / float(den or 1)
    except (ValueError, ZeroDivisionError):
        return None


class LoopingSource:
    """Plays one H.264 MP4 in real time, forever, and fans its access units out to connected clients."""

    def __init__(self, mount: str, path: Path) -> None:
        self.mount = mount
        self.path = path
        self.caps: Gst.Caps | None = None
        self._clients: dict[int, list] = {}  # id(appsrc) -> [appsrc, waiting_for_key_frame]
        self._lock = threading.Lock()
        self.pipeline = Gst.parse_launch(
            f'filesrc location="{path}" ! qtdemux ! h264parse config-interval=-1 '
            "! video/x-h264,stream-format=byte-stream,alignment=au "
            "! appsink name=sink sync=true emit-signals=true max-buffers=30 drop=false"
        )
        sink = self.pipeline.get_by_name("sink")
        sink.connect("new-sample", self._on_sample)
        bus = self.pipeline.get_bus()
        bus.add_signal_watch()
        bus.connect("message", self._on_message)

    def start(self) -> None:
        """Preroll (to learn the caps), then play."""
        self.pipeline.set_state(Gst.State.PAUSED)
        change, _, _ = self.pipeline.get_state(30 * Gst.SECOND)
        if change == Gst.StateChangeReturn.FAILURE:
            raise SystemExit(f"rtsp_server: cannot play {self.path} for /{self.mount}")
        pad = self.pipeline.get_by_name("sink").get_static_pad("sink")
        self.caps = pad.get_current_caps()
        self.pipeline.set_state(Gst.State.PLAYING)

    def stop(self) -> None:
        self.pipeline.set_state(Gst.State.NULL)

    def add_client(self, appsrc: Gst.Element) -> None:
        if self.caps is not None:
            appsrc.set_property("caps", self.caps)
        with self._lock:
            self._clients[id(appsrc)] = [appsrc, True]

    def remove_client(self, appsrc: Gst.Element) -> None:
        with self._lock:
            self._clients.pop(id(appsrc), None)

    def _on_sample(self, sink: Gst.Element) -> Gst.FlowReturn:
        sample = sink.emit("pull-sample")
        if sample is None:
            return Gst.FlowReturn.OK
        buffer = sample.get_buffer()
        key_frame = not buffer.has_flags(Gst.BufferFlags.DELTA_UNIT)
        with self._lock:
            clients = list(self._clients.values())
        for entry in clients:
            appsrc, waiting = entry
            if waiting and not key_frame:
                continue
            entry[1] = False
            out = buffer.copy()
            out.pts = Gst.CLOCK_TIME_NONE  # appsrc do-timestamp stamps it with the live running time
            out.dts = Gst.CLOCK_TIME_NONE
            if appsrc.emit("push-buffer", out) == Gst.FlowReturn.FLUSHING:
                self.remove_client(appsrc)
        return Gst.FlowReturn.OK

    def _on_message(self, _bus: Gst.Bus, message: Gst.Message) -> None:
        if message.type == Gst.MessageType.EOS:
            # Loop: start the file again; clients see one continuous live stream.
            self.pipeline.seek_simple(Gst.Format.TIME, Gst.SeekFlags.FLUSH | Gst.SeekFlags.KEY_UNIT, 0)
        elif message.type == Gst.MessageType.ERROR:
            err, _debug = message.parse_error()
            log(f"/{self.mount}: {err.message}")


class LiveFactory(GstRtspServer.RTSPMediaFactory):
    """A media per client: an appsrc fed by the mount's LoopingSource, payloaded as RTP H.264."""

    def __init__(self, source: LoopingSource) -> None:
        super().__init__()
        self.source = source
        self.set_shared(False)
        self.set_launch(
            "( appsrc name=src is-live=true format=time do-timestamp=true min-latency=0 "
            "! h264parse ! rtph264pay name=pay0 pt=96 config-interval=1 )"
        )
        self.connect("media-configure", self._on_configure)

    def _on_configure(self, _factory: GstRtspServer.RTSPMediaFactory, media: GstRtspServer.RTSPMedia) -> None:
        appsrc = media.get_element().get_by_name("src")
        self.source.add_client(appsrc)
        media.connect("unprepared", lambda _m: self.source.remove_client(appsrc))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Serve video files in a loop as live RTSP H.264 cameras.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8554)
    parser.add_argument(
        "--mount",
        action="append",
        required=True,
        metavar="NAME=FILE",
        help="mount point name and the video it serves, e.g. cam1=store.mp4 (repeatable)",
    )
    parser.add_argument(
        "--cache-dir",
        type=Path,
        default=Path("build/rtsp-cache"),
        help="where H.264 transcodes are kept between runs",
    )
    parser.add_argument("--fps", type=float, default=None, help="re-time the videos to this frame rate")
    parser.add_argument("--size", default=None, help="scale the videos to WIDTHxHEIGHT, e.g. 640x360")
    args = parser.parse_args(argv)  # fmt: skip

    Gst.init(None)
    mounts: list[tuple[str, Path]] = []
    for spec in args.mount:
        name, sep, file = spec.partition("=")
        name = name.strip("/")
        if not sep or not name or not file:
            parser.error(f"--mount needs NAME=FILE, got {spec!r}")
        path = Path(file)
        if not path.is_file():
            parser.error(f"--mount {name}: no such file: {file}")
        mounts.append((name, transcode(path, args.cache_dir, args.fps, args.size)))

    server = GstRtspServer.RTSPServer()
    server.set_address(args.host)
    server.set_service(str(args.port))
    username = os.environ.get("RTSP_USERNAME")
    password = os.environ.get("RTSP_PASSWORD")
    if username:
        auth = GstRtspServer.RTSPAuth()
        token = GstRtspServer.RTSPToken()
        token.set_string(GstRtspServer.RTSP_TOKEN_MEDIA_FACTORY_ROLE, "camera-user")
        auth.add_basic(GstRtspServer.RTSPAuth.make_basic(username, password or ""), token)
        server.set_auth(auth)

    sources: list[LoopingSource] = []
    mount_points = server.get_mount_points()
    for name, path in mounts:
        source = LoopingSource(name, path)
        source.start()
        sources.append(source)
        factory = LiveFactory(source)
        if username:
            factory.add_role_from_structure(
                Gst.Structure.from_string(
                    "camera-user, media.factory.access=(boolean)true, media.factory.construct=(boolean)true"
                )[0]
            )
        mount_points.add_factory(f"/{name}", factory)

    loop = GLib.MainLoop()
    if server.attach(None) == 0:
        log(f"cannot listen on {args.host}:{args.port}")
        return 2
    for signum in (signal.SIGTERM, signal.SIGINT):
        GLib.unix_signal_add(GLib.PRIORITY_HIGH, signum, loop.quit)
    print(f"READY {server.get_bound_port()} " + " ".join(f"/{n}" for n, _ in mounts), flush=True)
    try:
        loop.run()
    finally:
        for source in sources:
            source.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
