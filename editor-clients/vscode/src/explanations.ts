/** Streaming explanations (`fimble/explanation`) and their rendering; no vscode API here, so it is unit tested. */
import MarkdownIt from "markdown-it";

/** `fimble/explanation` params (PROTOCOL.md). */
export interface ExplanationParams {
  token: string;
  delta: string;
  done: boolean;
}

export interface Explanation {
  token: string;
  title: string;
  markdown: string;
  done: boolean;
  error?: string;
}

const md = new MarkdownIt({ html: false, linkify: true, breaks: false });

/** Markdown -> HTML; raw HTML in the model's output is escaped, never run. */
export function renderMarkdown(markdown: string): string {
  return md.render(markdown);
}

/** Keeps the explanations being streamed, by token. */
export class ExplanationStore {
  private readonly items = new Map<string, Explanation>();
  private readonly order: string[] = [];

  constructor(private readonly keep = 20) {}

  begin(token: string, title: string): Explanation {
    const item: Explanation = { token, title, markdown: "", done: false };
    this.items.set(token, item);
    this.order.push(token);
    while (this.order.length > this.keep) {
      const old = this.order.shift();
      if (old !== undefined) {
        this.items.delete(old);
      }
    }
    return item;
  }

  get(token: string): Explanation | undefined {
    return this.items.get(token);
  }

  /** Applies a notification; an unknown token (an explanation the server started itself) is created. */
  apply(params: ExplanationParams, fallbackTitle = "Explanation"): Explanation {
    let item = this.items.get(params.token);
    if (!item) {
      item = this.begin(params.token, fallbackTitle);
    }
    if (!item.done && typeof params.delta === "string") {
      item.markdown += params.delta;
    }
    if (params.done) {
      item.done = true;
    }
    return item;
  }

  /** The final response holds the whole Markdown: it replaces what was streamed. */
  finish(token: string, markdown: string | undefined): Explanation | undefined {
    const item = this.items.get(token);
    if (!item) {
      return undefined;
    }
    if (typeof markdown === "string" && markdown.length > 0) {
      item.markdown = markdown;
    }
    item.done = true;
    return item;
  }

  fail(token: string, error: string): Explanation | undefined {
    const item = this.items.get(token);
    if (!item) {
      return undefined;
    }
    item.error = error;
    item.done = true;
    return item;
  }
}

function escapeHtml(s: string): string {
  return s.replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c] ?? c);
}

/** The body parts of the explanation page. */
export function explanationBody(item: Explanation): { html: string; state: string } {
  let html = item.markdown ? renderMarkdown(item.markdown) : "";
  if (item.error) {
    html += `<p class="error">${escapeHtml(item.error)}</p>`;
  }
  const state = item.error ? "failed" : item.done ? "done" : "generating…";
  if (!html && !item.done) {
    html = '<p class="placeholder">Waiting for the model…</p>';
  }
  return { html, state };
}

/** The whole webview page; `scriptUri`/`cspSource` come from the webview. */
export function explanationPage(item: Explanation, opts: { nonce: string; cspSource: string; scriptUri: string }): string {
  const body = explanationBody(item);
  return `<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="UTF-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; img-src ${opts.cspSource} data:; style-src ${opts.cspSource} 'unsafe-inline'; script-src 'nonce-${opts.nonce}';">
<meta name="viewport" content="width=device-width, initial-scale=1.0">
<title>${escapeHtml(item.title)}</title>
<style>
  body { font-family: var(--vscode-font-family); font-size: var(--vscode-font-size); color: var(--vscode-foreground); padding: 0 12px 24px; line-height: 1.5; }
  header { display: flex; justify-content: space-between; align-items: baseline; border-bottom: 1px solid var(--vscode-panel-border); }
  header h1 { font-size: 1.1em; margin: 10px 0 6px; }
  #fimble-state { opacity: 0.7; font-size: 0.9em; }
  pre, code { font-family: var(--vscode-editor-font-family); }
  pre { background: var(--vscode-textCodeBlock-background); padding: 8px; overflow-x: auto; }
  main { overflow-wrap: anywhere; }
  .placeholder { opacity: 0.7; font-style: italic; }
  .error { color: var(--vscode-errorForeground); }
</style>
</head>
<body>
<header><h1 id="fimble-title">${escapeHtml(item.title)}</h1><span id="fimble-state">${escapeHtml(body.state)}</span></header>
<main id="fimble-explanation" data-token="${escapeHtml(item.token)}">${body.html}</main>
<script nonce="${opts.nonce}" src="${opts.scriptUri}"></script>
</body>
</html>`;
}
