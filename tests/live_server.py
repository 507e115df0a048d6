"""A live video stream over HTTP, for tests: MPEG-TS (H.264) encoded on the fly and sent at real-time pace.

    python tests/live_server.py --seconds 4 --fps 5        # prints "READY <port>", serves GET /live.ts
    python tests/live_server.py --seconds 4 --udp 5004     # pushes the stream to udp://127.0.0.1:5004, then exits
    python tests/live_server.py --seconds 8 --hls DIR      # writes a live HLS playlist DIR/live.m3u8, then exits

Every request gets a fresh stream from time 0. With --drop-after S the first connection is cut after S
seconds (to test reconnection). Over UDP a keyframe comes every second, as broadcasters send them, so a
receiver that joins late starts within a second.
"""

from __future__ import annotations

import argparse
import contextlib
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import av
import numpy as np


def serve(seconds: float, fps: int, drop_after: float | None) -> None:
    connections = {"count": 0}
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            return None

        def do_GET(self) -> None:
            if self.path != "/live.ts":
                self.send_error(404)
                return
            with lock:
                connections["count"] += 1
                first = connections["count"] == 1
            limit = drop_after if (first and drop_after is not None) else seconds
            self.send_response(200)
            self.send_header("Content-Type", "video/mp2t")
            self.end_headers()
            with contextlib.suppress(BrokenPipeError, ConnectionResetError, av.FFmpegError):
                stream_ts(self.wfile, limit, fps)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    print(f"READY {server.server_address[1]}", flush=True)
    server.serve_forever()


def stream_ts(out, seconds: float, fps: int, container_format: str = "mpegts", options: dict | None = None) -> None:
    """Encode frames of grey level 8·i at real pace into `out` (MPEG-TS by default)."""
    options = options or {"flush_packets": "1"}
    with av.open(out, "w", format=container_format, options=options) as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        stream.options = {"tune": "zerolatency", "preset": "ultrafast", "g": str(fps)}
        began = time.monotonic()
        for i in range(int(seconds * fps)):
            delay = began + i / fps - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            image = np.full((48, 64, 3), 8 * i % 256, np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                container.mux(packet)
            if hasattr(out, "flush"):
                out.flush()
        for packet in stream.encode():
            container.mux(packet)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--fps", type=int, default=5)
    parser.add_argument("--drop-after", type=float, default=None)
    parser.add_argument("--udp", type=int, default=None, help="push to this UDP port on localhost instead")
    parser.add_argument("--hls", default=None, help="write a live HLS playlist (live.m3u8) into this folder instead")
    args = parser.parse_args()
    if args.hls is not None:  # segments of 1 s appear as they are encoded; the playlist ends when the stream does
        live = {"hls_time": "1", "hls_playlist_type": "event"}
        stream_ts(f"{args.hls}/live.m3u8", args.seconds, args.fps, "hls", live)
    elif args.udp is not None:
        stream_ts(f"udp://127.0.0.1:{args.udp}?pkt_size=1316", args.seconds, args.fps)
    else:
        serve(args.seconds, args.fps, args.drop_after)
