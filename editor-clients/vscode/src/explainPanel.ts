/** The webview beside the editor that shows an explanation while it streams in. */
import * as crypto from "crypto";
import * as vscode from "vscode";
import { Explanation, ExplanationParams, ExplanationStore, explanationBody, explanationPage } from "./explanations";

export class ExplainPanel implements vscode.Disposable {
  static readonly viewType = "fimble.explanation";
  private panel: vscode.WebviewPanel | undefined;
  private readonly store = new ExplanationStore();
  private shownToken: string | undefined;
  private pending: ReturnType<typeof setTimeout> | undefined;
  /** Whether the page's script has loaded since the html was last written (messages before that are lost). */
  private pageReady = false;

  constructor(private readonly extensionUri: vscode.Uri) {}

  /** Starts an explanation and reveals the panel beside the editor. */
  begin(token: string, title: string): void {
    const item = this.store.begin(token, title);
    this.show(item, true);
  }

  /** A `fimble/explanation` notification. */
  onNotification(params: ExplanationParams): void {
    if (!params || typeof params.token !== "string") {
      return;
    }
    const known = this.store.get(params.token) !== undefined;
    const item = this.store.apply(params, "fimble: explanation");
    if (!known || this.shownToken === params.token) {
      this.show(item, !known);
    }
  }

  finish(token: string, markdown: string | undefined): void {
    const item = this.store.finish(token, markdown);
    if (item && this.shownToken === token) {
      this.show(item, false, true);
    }
  }

  fail(token: string, error: string): void {
    const item = this.store.fail(token, error);
    if (item && this.shownToken === token) {
      this.show(item, false, true);
    }
  }

  private show(item: Explanation, reveal: boolean, now = false): void {
    if (!this.panel) {
      this.panel = vscode.window.createWebviewPanel(
        ExplainPanel.viewType,
        "fimble: explanation",
        { viewColumn: vscode.ViewColumn.Beside, preserveFocus: true },
        {
          enableScripts: true,
          enableFindWidget: true,
          retainContextWhenHidden: true,
          localResourceRoots: [vscode.Uri.joinPath(this.extensionUri, "media")],
        },
      );
      this.panel.onDidDispose(() => {
        this.clearPending();
        this.panel = undefined;
        this.shownToken = undefined;
      });
      this.panel.webview.onDidReceiveMessage((msg: { type?: string }) => {
        if (msg?.type === "ready") {
          this.pageReady = true;
          const current = this.shownToken ? this.store.get(this.shownToken) : undefined;
          if (current) {
            this.post(current);
          }
        }
      });
      this.shownToken = undefined;
    } else if (reveal) {
      this.panel.reveal(vscode.ViewColumn.Beside, true);
    }
    this.panel.title = item.title;
    if (this.shownToken !== item.token) {
      // A new explanation: write the whole page.
      this.shownToken = item.token;
      this.clearPending();
      const webview = this.panel.webview;
      this.pageReady = false;
      webview.html = explanationPage(item, {
        nonce: crypto.randomBytes(16).toString("base64"),
        cspSource: webview.cspSource,
        scriptUri: webview.asWebviewUri(vscode.Uri.joinPath(this.extensionUri, "media", "explain.js")).toString(),
      });
      return;
    }
    // The same explanation grew: send the new body to the page's script, at most every 80 ms.
    if (now) {
      this.clearPending();
      this.post(item);
    } else if (!this.pending) {
      this.pending = setTimeout(() => {
        this.pending = undefined;
        const current = this.shownToken ? this.store.get(this.shownToken) : undefined;
        if (current) {
          this.post(current);
        }
      }, 80);
    }
  }

  private post(item: Explanation): void {
    if (!this.pageReady) {
      return; // the page posts "ready" when loaded and then gets the latest body
    }
    const body = explanationBody(item);
    void this.panel?.webview.postMessage({ type: "render", token: item.token, title: item.title, ...body });
  }

  private clearPending(): void {
    if (this.pending) {
      clearTimeout(this.pending);
      this.pending = undefined;
    }
  }

  dispose(): void {
    this.clearPending();
    this.panel?.dispose();
  }
}
