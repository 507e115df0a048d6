"""A small RTSP relay, for tests: a publisher pushes a stream in (ANNOUNCE, RECORD), players pull it (DESCRIBE, PLAY).

    python tests/rtsp_server.py        # prints "READY <port>"; then, for example:
    ffmpeg -re -i clip.mp4 -c copy -f rtsp -rtsp_transport tcp rtsp://127.0.0.1:<port>/live

It speaks RTSP 1.0 with RTP interleaved on the TCP connection (what IP cameras and servers such as MediaMTX offer
as "RTSP over TCP"), relays the publisher's session description and RTP packets unchanged, and answers 404 to a
player while nothing is published. Enough for tests, not a media server.
"""

from __future__ import annotations

import contextlib
import socket
import socketserver
import sys
import threading

PUBLIC = "OPTIONS, DESCRIBE, ANNOUNCE, SETUP, PLAY, RECORD, GET_PARAMETER, TEARDOWN"


class Relay:
    """What the publisher announced, and the players to copy its packets to."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.sdp: str | None = None
        self.players: list[socket.socket] = []

    def send(self, packet: bytes) -> None:
        with self.lock:  # whole packets only: a reply to a player is never cut into by one, nor one by another
            for player in list(self.players):
                try:
                    player.sendall(packet)
                except OSError:
                    self.players.remove(player)


RELAY = Relay()


class Connection(socketserver.StreamRequestHandler):
    def handle(self) -> None:
        publishing = False
        while True:
            first = self.rfile.read(1)
            if not first:
                break
            if first == b"$":  # an interleaved RTP or RTCP packet: channel, length, payload
                header = self.rfile.read(3)
                payload = self.rfile.read(int.from_bytes(header[1:3], "big"))
                if publishing:
                    RELAY.send(first + header + payload)
                continue
            method, headers, body = self.read_request(first)
            publishing = self.answer(method, headers, body) or publishing
        with RELAY.lock:
            if self.request in RELAY.players:
                RELAY.players.remove(self.request)
            if publishing:  # the stream is over: so is every player's session
                RELAY.sdp = None
                for player in RELAY.players:
                    with contextlib.suppress(OSError):
                        player.shutdown(socket.SHUT_RDWR)
                RELAY.players.clear()

    def read_request(self, first: bytes) -> tuple[str, dict[str, str], str]:
        lines = [(first + self.rfile.readline()).decode().strip()]
        while lines[-1]:
            lines.append(self.rfile.readline().decode().strip())
        headers = {}
        for line in lines[1:-1]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        body = self.rfile.read(int(headers.get("content-length", 0))).decode()
        return lines[0].split(" ")[0], headers, body

    def answer(self, method: str, headers: dict[str, str], body: str) -> bool:
        """Reply to one request; True when it makes this connection the publisher."""
        reply = {"CSeq": headers.get("cseq", "0"), "Session": "4242"}
        status, content, publishing = "200 OK", "", False
        if method == "OPTIONS":
            reply["Public"] = PUBLIC
        elif method == "ANNOUNCE":
            with RELAY.lock:
                RELAY.sdp = body
        elif method == "DESCRIBE":
            with RELAY.lock:
                sdp = RELAY.sdp
            if sdp is None:
                status = "404 Not Found"
            else:
                content = sdp
                reply["Content-Type"] = "application/sdp"
                reply["Content-Base"] = f"rtsp://{self.server.server_address[0]}:{self.server.server_address[1]}/live/"
        elif method == "SETUP":
            reply["Transport"] = headers.get("transport", "RTP/AVP/TCP;unicast;interleaved=0-1")
        elif method == "RECORD":
            publishing = True
        elif method == "PLAY":
            reply["Range"] = "npt=0.000-"
        elif method not in ("GET_PARAMETER", "TEARDOWN"):
            status = "501 Not Implemented"
        if content:
            reply["Content-Length"] = str(len(content.encode()))
        text = f"RTSP/1.0 {status}\r\n" + "".join(f"{k}: {v}\r\n" for k, v in reply.items()) + "\r\n" + content
        with RELAY.lock:
            self.wfile.write(text.encode())
            if method == "PLAY" and status.startswith("200"):
                RELAY.players.append(self.request)
        return publishing


class Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True


def main() -> None:
    with Server(("127.0.0.1", 0), Connection) as server:
        print(f"READY {server.server_address[1]}", flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            server.serve_forever()


if __name__ == "__main__":
    sys.exit(main())
