"""The fake internet's web server, run inside the test's network namespace: answers GET on
plain HTTP and HTTPS ports with "hello <Host>" and appends every request (port, request line,
path, headers) to a JSON-lines record. Prints "ready" once it listens.

usage: upstream_server.py IP RECORD CERT KEY --http PORT[,PORT] --https PORT[,PORT]"""
import argparse
import http.server
import json
import socketserver
import ssl
import threading

LOCK = threading.Lock()


def handler(record):
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            with LOCK, open(record, "a") as f:
                f.write(json.dumps({"port": self.server.server_address[1],
                                    "line": self.requestline, "path": self.path,
                                    "headers": {k.lower(): v for k, v in self.headers.items()}})
                        + "\n")
            body = ("hello %s\n" % self.headers.get("Host", "")).encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

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
    a = ap.parse_args()
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.load_cert_chain(a.cert, a.key)
    servers = [Server((a.ip, p), handler(a.record)) for p in a.http]
    for p in a.https:
        s = Server((a.ip, p), handler(a.record))
        s.socket = tls.wrap_socket(s.socket, server_side=True)
        servers.append(s)
    for s in servers:
        threading.Thread(target=s.serve_forever, daemon=True).start()
    print("ready", flush=True)
    threading.Event().wait()


if __name__ == "__main__":
    main()
