"""The fake internet's web server, run inside the test's network namespace: answers GET on
plain HTTP and HTTPS ports with "hello <Host>" and appends every request (port, request line,
path, headers; a POST's JSON body too) to a JSON-lines record. Prints "ready" once it listens.

With --model-key KEY it is also a fake Anthropic Messages API: POST /v1/messages answers 401
unless x-api-key is KEY, else a message whose text names the prompt and how many turns of
history came with it ("model heard <n> turns; last: <prompt>").

usage: upstream_server.py IP RECORD CERT KEY --http PORT[,PORT] --https PORT[,PORT]
                          [--model-key KEY]"""
import argparse
import http.server
import json
import socketserver
import ssl
import threading

LOCK = threading.Lock()


def model_answer(key, headers, body):
    """(status, answer) of the fake Messages API."""
    if headers.get("x-api-key") != key:
        return 401, {"type": "error", "error": {"type": "authentication_error",
                                                "message": "invalid x-api-key"}}
    turns = body.get("messages") or []
    last = turns[-1]["content"] if turns else ""
    return 200, {"id": "msg_fake", "type": "message", "role": "assistant",
                 "model": body.get("model", ""), "stop_reason": "end_turn",
                 "content": [{"type": "text",
                              "text": "model heard %d turns; last: %s" % (len(turns), last)}]}


def handler(record, model_key=None):
    class Handler(http.server.BaseHTTPRequestHandler):
        def note(self, body=None):
            rec = {"port": self.server.server_address[1], "line": self.requestline,
                   "path": self.path, "headers": self.lower_headers()}
            if body is not None:
                rec["body"] = body
            with LOCK, open(record, "a") as f:
                f.write(json.dumps(rec) + "\n")

        def answer(self, status, body, ctype="text/plain"):
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self):
            self.note()
            self.answer(200, ("hello %s\n" % self.headers.get("Host", "")).encode())

        def do_POST(self):
            raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            try:
                body = json.loads(raw)
            except ValueError:
                body = raw.decode(errors="replace")
            self.note(body)
            if model_key is None or self.path != "/v1/messages" or not isinstance(body, dict):
                return self.answer(404, b"no such endpoint\n")
            status, out = model_answer(model_key, self.lower_headers(), body)
            self.answer(status, json.dumps(out).encode(), "application/json")

        def lower_headers(self):
            return {k.lower(): v for k, v in self.headers.items()}

        def log_message(self, *a):
            pass
    return Handler


class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True


def ports(text):
    return [int(p) for p in text.split(",") if p]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("ip")
    ap.add_argument("record")
    ap.add_argument("cert")
    ap.add_argument("key")
    ap.add_argument("--http", type=ports, default=[80])
    ap.add_argument("--https", type=ports, default=[443])
    ap.add_argument("--model-key")
    a = ap.parse_args()
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.load_cert_chain(a.cert, a.key)
    servers = [Server((a.ip, p), handler(a.record, a.model_key)) for p in a.http]
    for p in a.https:
        s = Server((a.ip, p), handler(a.record, a.model_key))
        s.socket = tls.wrap_socket(s.socket, server_side=True)
        servers.append(s)
    for s in servers:
        threading.Thread(target=s.serve_forever, daemon=True).start()
    print("ready", flush=True)
    threading.Event().wait()


if __name__ == "__main__":
    main()
