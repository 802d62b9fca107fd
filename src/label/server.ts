// The label studio's web server: node:http on 127.0.0.1 only, every request checked against a random token that
// is part of the printed URL (another local user can reach the port, but not guess the token: 403).
//
//   GET  /?token=T             the page (page.ts)
//   GET  /api/state?token=T    PageState as JSON
//   POST /api/action?token=T   an ActionRequest; answers after the action is fsynced to the log, with the new state
//                              (400: a request that breaks the rules, 409: the page showed another item than the
//                              current one; each with the current state to show)
//
// The server listens before the completions are sampled, so that a port in use is an error at once, but the URL is
// printed only once the items exist: sampling blocks the event loop, and nobody has the token until then (the API
// answers 503 in the moment between).

import { type IncomingMessage, type ServerResponse, createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { randomBytes, timingSafeEqual } from "node:crypto";
import { TsdpoError, configError } from "../errors.js";
import { type LabelSession, RequestError } from "./store.js";
import type { ActionRequest, PageState } from "./types.js";

export interface LabelServer {
  url: string;
  port: number;
  close(): Promise<void>;
}

/** What the server serves from: the session, once the items exist. */
export interface Studio {
  session: LabelSession | null;
  /** Told what each action saved (the terminal's echo of the page's status line). */
  onSaved(line: string): void;
}

export const newToken = (): string => randomBytes(18).toString("base64url");

const MAX_BODY = 1 << 20;

const SECURITY_HEADERS = {
  "cache-control": "no-store",
  "x-content-type-options": "nosniff",
  "referrer-policy": "no-referrer",
  "x-frame-options": "DENY",
  "content-security-policy":
    "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'; img-src data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
};

function send(res: ServerResponse, status: number, type: string, body: string): void {
  res.writeHead(status, { ...SECURITY_HEADERS, "content-type": `${type}; charset=utf-8`, "content-length": Buffer.byteLength(body) });
  res.end(body);
}

const sendJson = (res: ServerResponse, status: number, value: unknown): void => send(res, status, "application/json", JSON.stringify(value));

function tokenMatches(given: string, token: string): boolean {
  const a = Buffer.from(given), b = Buffer.from(token);
  return a.length === b.length && timingSafeEqual(a, b);
}

function readBody(req: IncomingMessage): Promise<string | null> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on("data", (c: Buffer) => {
      size += c.length;
      if (size > MAX_BODY) {
        resolve(null);
        req.destroy();
      } else chunks.push(c);
    });
    req.on("end", () => resolve(Buffer.concat(chunks).toString("utf8")));
    req.on("error", reject);
  });
}

const NOT_READY = { error: "the items are not ready yet; wait a moment" };

function act(studio: Studio, body: string): { status: number; value: { state?: PageState; error?: string } } {
  const s = studio.session;
  if (!s) return { status: 503, value: NOT_READY };
  let req: ActionRequest;
  try {
    req = JSON.parse(body) as ActionRequest;
  } catch {
    return { status: 400, value: { state: s.state(null), error: "the request is not JSON" } };
  }
  try {
    const saved = s.apply(req);
    studio.onSaved(saved);
    return { status: 200, value: { state: s.state(saved) } };
  } catch (e) {
    if (e instanceof RequestError) return { status: e.status, value: { state: s.state(null), error: e.message } };
    // The file system refused (a full disk): nothing was acknowledged, and the page says so
    if (e instanceof TsdpoError) return { status: 500, value: { state: s.state(null), error: `not saved: ${e.message}` } };
    throw e;
  }
}

/**
 * Listens on 127.0.0.1:`port` (0: a free port). A port in use, or one that needs privileges, is a one-line error
 * before anything else happens.
 */
export function startLabelServer(port: number, token: string, page: string, studio: Studio): Promise<LabelServer> {
  const server = createServer((req, res) => {
    const url = new URL(req.url ?? "/", "http://127.0.0.1");
    if (!tokenMatches(url.searchParams.get("token") ?? "", token))
      return send(res, 403, "text/plain", "403 forbidden: open the URL that tsdpo label printed, with its token\n");
    const route = `${req.method} ${url.pathname}`;
    if (route === "GET /") return send(res, 200, "text/html", page);
    if (route === "GET /api/state") return studio.session ? sendJson(res, 200, studio.session.state(null)) : sendJson(res, 503, NOT_READY);
    if (route === "POST /api/action") {
      readBody(req).then(
        (body) => {
          if (body === null) return sendJson(res, 413, { error: `a request is at most ${MAX_BODY} bytes` });
          try {
            const r = act(studio, body);
            sendJson(res, r.status, r.value);
          } catch (e) {
            process.stderr.write(`internal error: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`);
            sendJson(res, 500, { error: `internal error: ${e instanceof Error ? e.message : String(e)}` });
          }
        },
        () => res.destroy(),
      );
      return;
    }
    send(res, url.pathname === "/" || url.pathname.startsWith("/api/") ? 405 : 404, "text/plain", `no ${route} here\n`);
  });
  return new Promise((resolve, reject) => {
    server.once("error", (e: NodeJS.ErrnoException) => {
      const where = `127.0.0.1:${port}`;
      if (e.code === "EADDRINUSE") reject(configError(`--port ${port}: ${where} is already in use (another tsdpo label, or another server); choose another port, or --port 0 for a free one`));
      else if (e.code === "EACCES") reject(configError(`--port ${port}: not allowed to listen on ${where} (ports below 1024 need privileges); choose a port above 1023, or --port 0`));
      else reject(new TsdpoError("io", `--port ${port}: cannot listen on ${where} (${e.message})`));
    });
    server.listen({ host: "127.0.0.1", port }, () => {
      const bound = (server.address() as AddressInfo).port;
      resolve({
        port: bound,
        url: `http://127.0.0.1:${bound}/?token=${token}`,
        close: () =>
          new Promise<void>((done) => {
            server.close(() => done());
            server.closeAllConnections();
          }),
      });
    });
  });
}
