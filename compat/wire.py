#!/usr/bin/env python3
"""A recording relay between the SDKs and kith.

Usage: wire.py UPSTREAM_PORT LOG_FILE PORT_FILE

Listens on a free port of 127.0.0.1 (written to PORT_FILE once listening), forwards every
request to kith on 127.0.0.1:UPSTREAM_PORT unchanged (method, path, headers, body bytes; a
chunked body is forwarded chunked) and returns kith's answer unchanged. For each request it
appends one JSON line to LOG_FILE: what the SDK put on the wire (path, Content-Type,
Content-Encoding, whether the body starts with the gzip magic bytes, the auth scheme and key,
the decoded JSON body) and kith's status and answer. The checker asserts on that log.
Standard library only.
"""

import base64
import gzip
import http.client
import json
import os
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

HOP_BY_HOP = {
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "host",
    "content-length",
}


class Relay(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    upstream_port = 0
    log_file = None
    lock = threading.Lock()

    def log_message(self, *args):  # quiet: the JSON log is the record
        pass

    def read_body(self):
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            body = b""
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline().strip():  # trailers
                        pass
                    return body, True
                body += self.rfile.read(size)
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length), False

    def relay(self):
        body, chunked = self.read_body()
        headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
        upstream = http.client.HTTPConnection("127.0.0.1", self.upstream_port, timeout=60)
        try:
            if chunked:
                headers["Transfer-Encoding"] = "chunked"
                upstream.request(self.command, self.path, body=iter([body]), headers=headers, encode_chunked=True)
            else:
                upstream.request(self.command, self.path, body=body, headers=headers)
            answer = upstream.getresponse()
            answer_body = answer.read()
            status, answer_headers = answer.status, answer.getheaders()
        finally:
            upstream.close()
        self.record(body, chunked, status, answer_body)
        self.send_response_only(status)
        for name, value in answer_headers:
            if name.lower() not in HOP_BY_HOP:
                self.send_header(name, value)
        self.send_header("Content-Length", str(len(answer_body)))
        self.end_headers()
        self.wfile.write(answer_body)

    def record(self, body, chunked, status, answer_body):
        gzipped = body[:2] == b"\x1f\x8b"
        decoded, error = None, None
        try:
            decoded = json.loads(gzip.decompress(body) if gzipped else body) if body else None
        except Exception as exc:  # the log must say what it could not read, not stop the relay
            error = repr(exc)
        auth = self.headers.get("Authorization", "")
        scheme, _, credential = auth.partition(" ")
        key = None
        if scheme.lower() == "basic":
            try:
                key = base64.b64decode(credential).decode().split(":", 1)[0]
            except Exception:
                key = None
        elif scheme.lower() == "bearer":
            key = credential
        try:
            answer = json.loads(answer_body) if answer_body else None
        except ValueError:
            answer = answer_body.decode(errors="replace")
        entry = {
            "method": self.command,
            "path": self.path,
            "content_type": self.headers.get("Content-Type"),
            "content_encoding": self.headers.get("Content-Encoding"),
            "user_agent": self.headers.get("User-Agent"),
            "chunked": chunked,
            "gzip_magic": gzipped,
            "bytes": len(body),
            "auth_scheme": scheme or None,
            "auth_key": key,
            "body": decoded,
            "body_error": error,
            "status": status,
            "answer": answer,
        }
        with self.lock, open(self.log_file, "a", encoding="utf-8") as out:
            out.write(json.dumps(entry) + "\n")

    do_POST = relay
    do_GET = relay
    do_PUT = relay
    do_OPTIONS = relay


def main():
    upstream_port, log_file, port_file = int(sys.argv[1]), sys.argv[2], sys.argv[3]
    Relay.upstream_port = upstream_port
    Relay.log_file = log_file
    server = ThreadingHTTPServer(("127.0.0.1", 0), Relay)
    server.daemon_threads = True
    with open(port_file + ".tmp", "w", encoding="utf-8") as out:
        out.write(str(server.server_address[1]))
    # renamed into place, so the reader never sees a half-written port
    os.replace(port_file + ".tmp", port_file)
    server.serve_forever()


if __name__ == "__main__":
    main()
