// Errors a user can act on. Every message names the file (and line, key or field where there is one) and says
// what to do. The CLI prints `error: <message>` and exits non-zero without a stack trace for these; anything else
// is a bug in tsdpo and keeps its stack.

export type ErrorKind =
  | "input" // a file the user gave us is malformed, truncated or inconsistent
  | "config" // an option or config key is unknown or has the wrong type/value
  | "unsupported" // well-formed input that tsdpo does not handle (yet)
  | "numeric" // a non-finite loss or gradient during training
  | "io"; // the file system refused (missing file, permissions)

export class TsdpoError extends Error {
  readonly kind: ErrorKind;
  constructor(kind: ErrorKind, message: string) {
    super(message);
    this.name = "TsdpoError";
    this.kind = kind;
  }
}

/**
 * A chat template's own raise_exception(...): the template refuses one conversation (Gemma 2's refuses a system
 * message, most a wrong order of roles). A config error where a template is rendered by itself; the data loader
 * tells it apart from a broken template and reports it as a problem of the row, with its file, line and field.
 * `reason` is the template's own message, `hint` what to do (a sentence without its full stop).
 */
export class TemplateRefusal extends TsdpoError {
  constructor(
    message: string,
    readonly reason: string,
    readonly hint: string,
  ) {
    super("config", message);
  }
}

export function inputError(message: string): TsdpoError {
  return new TsdpoError("input", message);
}
export function configError(message: string): TsdpoError {
  return new TsdpoError("config", message);
}
export function unsupportedError(message: string): TsdpoError {
  return new TsdpoError("unsupported", message);
}

/**
 * JSON.parse's complaint about `text`, with V8's "at position N" (a character index) turned into the line and column
 * an editor shows, so a message about a config file points at the place to fix.
 */
export function describeJsonError(text: string, err: unknown): string {
  const msg = err instanceof Error ? err.message : String(err);
  const m = /at position (\d+)(?! \(line)/.exec(msg);
  if (!m) return msg;
  const pos = Number(m[1]);
  const lineStart = text.lastIndexOf("\n", pos - 1) + 1;
  const line = text.slice(0, lineStart).split("\n").length;
  return msg.replace(m[0], `at line ${line} column ${pos - lineStart + 1}`);
}

/**
 * A value from a user's file (parsed JSON), for an error message: JSON.stringify's text when it is short, else its
 * first `max` characters and "…". JSON.stringify itself would overflow the stack on a deeply nested value (a
 * corrupt file can nest [[[[...]]]] 100,000 deep, which JSON.parse reads fine) and copy a huge one whole.
 */
export function describeValue(v: unknown, max = 200): string {
  let out = "";
  const walk = (x: unknown): void => {
    if (Array.isArray(x)) {
      out += "[";
      for (let i = 0; i < x.length && out.length <= max; i++) {
        if (i > 0) out += ",";
        walk(x[i]);
      }
      out += "]";
    } else if (x !== null && typeof x === "object") {
      out += "{";
      let first = true;
      for (const k in x) {
        if (out.length > max) break;
        if (!first) out += ",";
        first = false;
        out += JSON.stringify(k.length > max ? k.slice(0, max) : k) + ":";
        walk((x as Record<string, unknown>)[k]);
      }
      out += "}";
    } else if (typeof x === "string") out += JSON.stringify(x.length > max ? x.slice(0, max) : x);
    else if (typeof x === "bigint") out += String(x);
    else out += String(JSON.stringify(x));
  };
  walk(v);
  return out.length > max ? out.slice(0, max) + "…" : out;
}
