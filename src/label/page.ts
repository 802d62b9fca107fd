// The label studio's one page: plain HTML and CSS, and the script client.ts compiles to, inlined, so that the page
// is a single response with nothing to fetch but the API (no framework, no build step beyond tsc).

import { readFileSync } from "node:fs";

const CSS = `
:root { color-scheme: light dark; --line: #8884; --accent: #1f6feb; --warn: #b35900; }
* { box-sizing: border-box; }
body { font: 15px/1.45 system-ui, sans-serif; margin: 0 auto; max-width: 80rem; padding: 1rem 1.5rem 4rem; }
header { display: flex; flex-wrap: wrap; gap: .5rem 1.5rem; align-items: baseline; }
header h1 { font-size: 1.1rem; margin: 0; }
#progress { font-variant-numeric: tabular-nums; }
progress { width: 100%; height: .5rem; margin: .5rem 0 1rem; }
h2 { font-size: 1rem; margin: 0 0 .5rem; }
.prompt, .answer .text { white-space: pre-wrap; overflow-wrap: anywhere; font-family: ui-monospace, monospace; font-size: 14px; }
.prompt { border-left: 3px solid var(--line); padding: .5rem .75rem; margin: 0 0 1rem; }
#source { font-size: .8rem; opacity: .7; font-weight: normal; margin-left: .5rem; }
#answers { display: grid; gap: 1rem; grid-template-columns: repeat(auto-fit, minmax(18rem, 1fr)); }
.answer { border: 1px solid var(--line); border-radius: 6px; padding: .75rem; display: flex; flex-direction: column; }
.answer .text { flex: 1; margin-bottom: .75rem; }
.answer .text.empty::before { content: "(empty)"; opacity: .6; }
.answer.best { border-color: var(--accent); box-shadow: 0 0 0 2px var(--accent); }
.answer.rewriting { border-style: dashed; }
.note { font-weight: normal; font-size: .8rem; color: var(--warn); margin-left: .5rem; }
.buttons, .tools { display: flex; flex-wrap: wrap; gap: .5rem; }
.tools { margin: 1rem 0; }
button { font: inherit; padding: .3rem .7rem; border-radius: 5px; border: 1px solid var(--line); background: transparent; color: inherit; cursor: pointer; }
button.primary { border-color: var(--accent); }
button:disabled { opacity: .45; cursor: default; }
button:focus-visible, textarea:focus-visible { outline: 2px solid var(--accent); outline-offset: 2px; }
kbd { font: 12px ui-monospace, monospace; border: 1px solid var(--line); border-bottom-width: 2px; border-radius: 4px; padding: 0 .3rem; }
#hint { min-height: 1.5rem; }
#editor textarea { width: 100%; min-height: 9rem; font: 14px ui-monospace, monospace; padding: .5rem; }
#status { min-height: 1.5rem; margin-top: 1rem; }
#status.ok { color: #1a7f37; } #status.error { color: #cf222e; font-weight: 600; }
`;

const BODY = `
<header><h1>tsdpo label</h1><span id="progress">loading…</span></header>
<progress id="bar" value="0" max="1"></progress>
<main>
  <div id="item" hidden>
    <h2><span id="item-title"></span><span id="source"></span></h2>
    <div class="prompt" id="prompt"></div>
    <div id="answers"></div>
    <div id="editor" hidden>
      <h2><label for="editor-text">Your answer</label></h2>
      <textarea id="editor-text" spellcheck="true"></textarea>
      <div class="buttons"><button id="btn-save" class="primary">Save <kbd>Ctrl</kbd>+<kbd>Enter</kbd></button><button id="btn-cancel">Cancel <kbd>Esc</kbd></button></div>
    </div>
  </div>
  <div id="finished" hidden>
    <h2>Every item is decided.</h2>
    <p>The pairs are in <code id="out"></code>. Stop the server with Ctrl-C in its terminal; running the same command again
    opens here. Press <kbd>u</kbd> to undo the last decision.</p>
  </div>
  <div class="tools">
    <button id="btn-tie">Tie <kbd>t</kbd></button><button id="btn-skip">Skip <kbd>s</kbd></button>
    <button id="btn-undo">Undo <kbd>u</kbd></button><button id="btn-rewrite">Write a better answer <kbd>e</kbd></button>
  </div>
  <div id="hint"></div>
  <div id="status" role="status" aria-live="polite"></div>
</main>
`;

let page: string | null = null;

/** The page, with the compiled client.js (next to this module) inlined. */
export function labelPage(): string {
  if (page !== null) return page;
  const script = readFileSync(new URL("./client.js", import.meta.url), "utf8").replace(/^\/\/# sourceMappingURL=.*$/m, "");
  if (/<\/script/i.test(script)) throw new Error("internal: client.js contains </script, which would end the inline script early");
  page =
    `<!doctype html>\n<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">` +
    `<title>tsdpo label</title><link rel="icon" href="data:,"><style>${CSS}</style></head>\n<body>${BODY}` +
    `<script type="module">\n${script}</script>\n</body></html>\n`;
  return page;
}
