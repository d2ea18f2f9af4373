"""A recording JSON API server on loopback, the base of the fake chat platform APIs of the
trigger tests (Telegram's Bot API, Slack's Web API): real HTTP, every POST recorded as
(method, JSON body, Authorization header) and answered by the subclass's handle()."""
import http.server
import json
import threading


class FakeJsonApi:
    def __init__(self):
        self.calls = []
        self.cond = threading.Condition()
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_POST(self):
                n = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(n) or b"{}")
                status, answer = outer.handle(self.path, body, self.headers.get("Authorization"))
                raw = json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                try:
                    self.wfile.write(raw)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # a long poll the daemon gave up on (it stopped or restarted)

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base = "http://127.0.0.1:%d" % self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def record(self, method, body, auth):
        with self.cond:
            self.calls.append((method, body, auth))
            self.cond.notify_all()

    def handle(self, path, body, auth):
        """(status, answer object) for a POST to path."""
        raise NotImplementedError

    def close(self):
        self.server.shutdown()
        self.server.server_close()
