// The agent example's bridge: GET /health, and a WebSocket on /ws speaking the claude-code
// message protocol the `websocket` trigger driver uses:
//   client {"type":"init","tenantId"}  -> {"type":"ready"}
//   client {"type":"prompt","text"}    -> {"type":"output","text"} ... {"type":"idle"}
//   anything going wrong               -> {"type":"error","message"}
// A prompt is answered by the model API (Anthropic's Messages API at ANTHROPIC_BASE_URL);
// the conversation is kept in WORKSPACE_DIR/<tenant>/conversation.md, which is the
// instance's workspace: it hibernates with the instance and is sent back as history.
// With BRIDGE_SOCKET set it also serves on that unix socket (for `network.access: none`,
// where the driver connects through the instance's socket dir, /run/boilerhouse/http.sock).
// Only Node's standard library (Debian's nodejs 18): http, crypto, fs and the global fetch.
import { createHash } from "node:crypto";
import { mkdirSync, readFileSync, appendFileSync, existsSync, rmSync } from "node:fs";
import { createServer } from "node:http";
import { join } from "node:path";

const PORT = Number(process.env.BRIDGE_PORT || 7880);
const SOCKET = process.env.BRIDGE_SOCKET;
const WS_PATH = process.env.BRIDGE_WS_PATH || "/ws";
const WORKSPACE = process.env.WORKSPACE_DIR || "/workspace";
const BASE = (process.env.ANTHROPIC_BASE_URL || "https://api.anthropic.com").replace(/\/$/, "");
const KEY = process.env.ANTHROPIC_API_KEY || "";
const MODEL = process.env.CLAUDE_MODEL || "sonnet";
const GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
const MAX_FRAME = 1 << 20;

// ---- frames (RFC 6455; the client masks, we do not) ----

function frame(opcode, payload) {
  const n = payload.length;
  const head = n < 126 ? Buffer.from([0x80 | opcode, n])
    : n < 65536 ? Buffer.from([0x80 | opcode, 126, n >> 8, n & 255])
    : Buffer.concat([Buffer.from([0x80 | opcode, 127]), bigLen(n)]);
  return Buffer.concat([head, payload]);
}

function bigLen(n) {
  const b = Buffer.alloc(8);
  b.writeBigUInt64BE(BigInt(n));
  return b;
}

// The first complete frame of buf: {opcode, fin, payload, used}, null if incomplete.
function parse(buf) {
  if (buf.length < 2) return null;
  let len = buf[1] & 0x7f, h = 2;
  if (!(buf[1] & 0x80)) throw new Error("unmasked client frame");
  if (len === 126) { if (buf.length < 4) return null; len = buf.readUInt16BE(2); h = 4; }
  else if (len === 127) { if (buf.length < 10) return null; len = Number(buf.readBigUInt64BE(2)); h = 10; }
  if (len > MAX_FRAME) throw new Error("frame too large");
  if (buf.length < h + 4 + len) return null;
  const mask = buf.subarray(h, h + 4);
  const payload = Buffer.from(buf.subarray(h + 4, h + 4 + len));
  for (let i = 0; i < len; i++) payload[i] ^= mask[i & 3];
  return { opcode: buf[0] & 0x0f, fin: !!(buf[0] & 0x80), payload, used: h + 4 + len };
}

// ---- the agent ----

const TENANT = /^[A-Za-z0-9._-]{1,63}$/;
let sessions = 0;

function conversationFile(tenant) {
  const dir = join(WORKSPACE, tenant);
  mkdirSync(dir, { recursive: true });
  return join(dir, "conversation.md");
}

// The history as Messages API turns, read back from the workspace file.
function history(file) {
  if (!existsSync(file)) return [];
  const turns = [];
  for (const block of readFileSync(file, "utf8").split(/^## /m).slice(1)) {
    const nl = block.indexOf("\n");
    const role = block.slice(0, nl).trim();
    if (role === "user" || role === "assistant")
      turns.push({ role, content: block.slice(nl + 1).trim() });
  }
  return turns;
}

async function ask(file, text) {
  const messages = [...history(file), { role: "user", content: text }];
  const res = await fetch(BASE + "/v1/messages", {
    method: "POST",
    headers: { "content-type": "application/json", "anthropic-version": "2023-06-01",
               "x-api-key": KEY },
    body: JSON.stringify({ model: MODEL, max_tokens: 1024, messages }),
  });
  const body = await res.text();
  if (!res.ok) throw new Error(`model API answered ${res.status}: ${body.slice(0, 300)}`);
  const answer = (JSON.parse(body).content || []).filter(c => c.type === "text")
    .map(c => c.text).join("");
  appendFileSync(file, `## user\n${text}\n\n## assistant\n${answer}\n\n`);
  return answer;
}

function session(socket, head) {
  let buf = head, parts = [], tenant = null, busy = Promise.resolve();
  const send = msg => socket.write(frame(0x1, Buffer.from(JSON.stringify(msg))));
  const onMessage = text => {
    let msg;
    try { msg = JSON.parse(text); } catch { return send({ type: "error", message: "not JSON" }); }
    if (msg.type === "init") {
      if (!TENANT.test(String(msg.tenantId))) return send({ type: "error", message: "bad tenantId" });
      tenant = msg.tenantId;
      conversationFile(tenant);
      console.log(`session ${++sessions} opened for ${tenant}`);
      return send({ type: "ready" });
    }
    if (msg.type !== "prompt") return;
    if (!tenant) return send({ type: "error", message: "prompt before init" });
    // One prompt at a time per session, in order.
    busy = busy.then(() => ask(conversationFile(tenant), String(msg.text || ""))).then(
      answer => { send({ type: "output", text: answer }); send({ type: "idle" }); },
      e => send({ type: "error", message: String(e.cause || e.message || e) }));
  };
  socket.on("data", d => {
    buf = Buffer.concat([buf, d]);
    try {
      for (let f; (f = parse(buf)); ) {
        buf = buf.subarray(f.used);
        if (f.opcode === 0x9) socket.write(frame(0xA, f.payload));
        else if (f.opcode === 0x8) { socket.end(frame(0x8, f.payload.subarray(0, 2))); return; }
        else if (f.opcode <= 0x2) {
          parts.push(f.payload);
          if (f.fin) { onMessage(Buffer.concat(parts).toString("utf8")); parts = []; }
        }
      }
    } catch (e) {
      socket.end(frame(0x8, Buffer.from([0x03, 0xea]))); // 1002: protocol error
    }
  });
  socket.on("error", () => socket.destroy());
}

function health(req, res) {
  if (req.url === "/health") { res.writeHead(200, { "content-type": "text/plain" }); return res.end("ok\n"); }
  res.writeHead(404); res.end();
}

function upgrade(req, socket, head) {
  const key = req.headers["sec-websocket-key"];
  if (req.url !== WS_PATH || !key || (req.headers.upgrade || "").toLowerCase() !== "websocket") {
    socket.end("HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n");
    return;
  }
  const accept = createHash("sha1").update(key + GUID).digest("base64");
  socket.write("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
               `Sec-WebSocket-Accept: ${accept}\r\n\r\n`);
  session(socket, head);
}

mkdirSync(WORKSPACE, { recursive: true });
for (const where of SOCKET ? [PORT, SOCKET] : [PORT]) {
  if (typeof where === "string") rmSync(where, { force: true }); // a stale socket file
  createServer(health).on("upgrade", upgrade).listen(where, () =>
    console.log(`bridge on ${where}, WebSocket ${WS_PATH}, model API ${BASE}`));
}
