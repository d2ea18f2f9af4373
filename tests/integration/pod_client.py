"""A client inside a Pod's network namespace (test_egress_sidecar.py runs it there as the
workload's uid): one network operation, its outcome printed as one JSON line. Addresses are
the ones a workload would use; the Pod's nft rules decide where the packets really go.

usage: pod_client.py dns SERVER NAME           {"rcode": n, "answers": [ip, ...]}
       pod_client.py http IP HOST PATH          {"status": n, "body": text}
       pod_client.py https IP SNI PATH CAFILE   {"status": n, "body": text, "issuer": cn}
       pod_client.py connect IP PORT SECONDS    {"connected": bool, "error": text}
       pod_client.py raw IP PORT                {"status": n, "body": text}: sends stdin as it
                                                is (a whole HTTP request) and reads the answer
A failure to connect or handshake is {"error": text}."""
import json
import random
import socket
import ssl
import struct
import sys


def dns(server, name):
    qid = random.randrange(65536)
    q = struct.pack(">HHHHHH", qid, 0x0100, 1, 0, 0, 0)
    q += b"".join(bytes([len(p)]) + p.encode() for p in name.split(".")) + b"\0"
    q += struct.pack(">HH", 1, 1)  # A, IN
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(10)
        s.sendto(q, (server, 53))
        r, _ = s.recvfrom(4096)
    rid, flags, _, ancount = struct.unpack(">HHHH", r[:8])
    assert rid == qid, "reply to another query"
    off, answers = len(q), []
    for _ in range(ancount):  # the name is a 2-byte pointer (the sidecar's answers are)
        rtype, _, _, rdlen = struct.unpack(">HHIH", r[off + 2:off + 12])
        if rtype == 1:
            answers.append(socket.inet_ntoa(r[off + 12:off + 12 + rdlen]))
        off += 12 + rdlen
    return {"rcode": flags & 0xf, "answers": answers}


def exchange(sock, host, path):
    sock.sendall(("GET %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n"
                  % (path, host)).encode())
    return answer(sock)


def answer(sock):
    """The whole answer on sock, until the server closes it."""
    data = b""
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return {"status": int(head.split()[1]) if head else 0,
            "body": body.decode(errors="replace")}


def http(ip, host, path):
    with socket.create_connection((ip, 80), timeout=10) as s:
        return exchange(s, host, path)


def https(ip, sni, path, cafile):
    ctx = ssl.create_default_context(cafile=cafile)
    with socket.create_connection((ip, 443), timeout=10) as raw:
        with ctx.wrap_socket(raw, server_hostname=sni) as s:
            issuer = dict(x[0] for x in s.getpeercert()["issuer"])
            out = exchange(s, sni, path)
    out["issuer"] = issuer.get("commonName", "")
    return out


def raw(ip, port):
    """The request on stdin, sent as it is (bytes, so a test can put anything in it)."""
    request = sys.stdin.buffer.read()
    with socket.create_connection((ip, int(port)), timeout=10) as s:
        s.sendall(request)
        s.shutdown(socket.SHUT_WR)
        return answer(s)


def connect(ip, port, seconds):
    try:
        socket.create_connection((ip, int(port)), timeout=float(seconds)).close()
        return {"connected": True}
    except OSError as e:
        return {"connected": False, "error": repr(e)}


def main():
    ops = {"dns": dns, "http": http, "https": https, "connect": connect, "raw": raw}
    try:
        out = ops[sys.argv[1]](*sys.argv[2:])
    except (OSError, ssl.SSLError) as e:
        out = {"error": repr(e)}
    print(json.dumps(out))


if __name__ == "__main__":
    main()
