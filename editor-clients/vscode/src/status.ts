/** The status bar item, driven by `fimble/status` notifications and by the server's life cycle. */
import * as vscode from "vscode";

/** `fimble/status` params (PROTOCOL.md). */
export interface StatusParams {
  state: "loading" | "ready" | "generating" | "error";
  message: string;
  model?: string;
  latencyMs?: number;
  tokensPerSecond?: number;
}

export type DisplayState = StatusParams["state"] | "starting" | "stopped" | "notInstalled" | "installing";

export const SHOW_LOG_COMMAND = "fimble.showLog";
export const MENU_COMMAND = "fimble.statusMenu";
export const INSTALL_COMMAND = "fimble.installServer";

export interface StatusView {
  text: string;
  tooltip: string;
  command: string;
  error: boolean;
  warning: boolean;
}

export interface StatusSnapshot {
  state: DisplayState;
  message: string;
  model?: string;
  latencyMs?: number;
  tokensPerSecond?: number;
  enabled: boolean;
}

function basename(p: string): string {
  const parts = p.split(/[\\/]/);
  return parts[parts.length - 1] || p;
}

function stats(s: StatusSnapshot): string {
  const parts: string[] = [];
  if (typeof s.latencyMs === "number" && Number.isFinite(s.latencyMs)) {
    parts.push(`${Math.round(s.latencyMs)} ms`);
  }
  if (typeof s.tokensPerSecond === "number" && Number.isFinite(s.tokensPerSecond)) {
    const tps = s.tokensPerSecond;
    parts.push(`${tps >= 10 ? Math.round(tps) : tps.toFixed(1)} tok/s`);
  }
  return parts.join(" · ");
}

/** Extracts "42%" from a loading message, if there is one. */
export function progressOf(message: string): string | undefined {
  const m = /(\d{1,3}(?:\.\d+)?)\s*%/.exec(message);
  return m ? `${Math.round(Number(m[1]))}%` : undefined;
}

/** Pure rendering of the status bar item, unit tested. */
export function renderStatus(s: StatusSnapshot): StatusView {
  const details: string[] = [];
  const model = s.model ? basename(s.model) : undefined;
  let text: string;
  let command = MENU_COMMAND;
  let error = false;
  let warning = false;
  const last = stats(s);
  switch (s.state) {
    case "starting":
      text = "$(loading~spin) fimble";
      details.push("Starting the fimble server…");
      break;
    case "loading": {
      const pct = progressOf(s.message);
      text = `$(loading~spin) fimble: loading${pct ? " " + pct : "…"}`;
      details.push(s.message || "Loading the model…");
      break;
    }
    case "generating":
      text = `$(sync~spin) fimble${last ? " " + last : ""}`;
      details.push("Generating a suggestion…");
      break;
    case "ready":
      text = `$(check) fimble${last ? " " + last : ""}`;
      details.push(s.message || "Ready");
      break;
    case "error":
      text = "$(error) fimble";
      details.push(s.message || "The fimble server reported an error.");
      details.push("Click to show the log.");
      command = SHOW_LOG_COMMAND;
      error = true;
      break;
    case "notInstalled":
      text = "$(cloud-download) fimble: install";
      details.push(s.message || "The fimble server is not installed.");
      details.push("Click to install it.");
      command = INSTALL_COMMAND;
      warning = true;
      break;
    case "installing": {
      const pct = progressOf(s.message);
      text = `$(sync~spin) fimble: installing${pct ? " " + pct : "…"}`;
      details.push(s.message || "Installing the fimble server…");
      details.push("Click to show the log.");
      command = SHOW_LOG_COMMAND;
      break;
    }
    case "stopped":
    default:
      text = "$(debug-disconnect) fimble";
      details.push(s.message || "The fimble server is not running.");
      command = SHOW_LOG_COMMAND;
      warning = true;
      break;
  }
  if (!s.enabled && s.state !== "error") {
    text = text.replace(/^\$\([^)]*\)/, "$(circle-slash)");
    details.unshift("Inline suggestions are disabled (click for the menu).");
  }
  if (model) {
    details.push(`Model: ${model}`);
  }
  if (last && s.state !== "error") {
    details.push(`Last suggestion: ${last}`);
  }
  return { text, tooltip: details.join("\n"), command, error, warning };
}

export class StatusBar implements vscode.Disposable {
  private readonly item: vscode.StatusBarItem;
  private snapshot: StatusSnapshot = { state: "starting", message: "", enabled: true };

  constructor() {
    this.item = vscode.window.createStatusBarItem("fimble.status", vscode.StatusBarAlignment.Right, 100);
    this.item.name = "fimble";
    this.render();
    this.item.show();
  }

  get current(): Readonly<StatusSnapshot> {
    return this.snapshot;
  }

  /** Applies a `fimble/status` notification. */
  update(params: Omit<Partial<StatusParams>, "state"> & { state: DisplayState }): void {
    const next: StatusSnapshot = { ...this.snapshot, state: params.state, message: params.message ?? "" };
    if (params.model !== undefined) {
      next.model = params.model;
    } else if (["starting", "loading", "error", "notInstalled", "installing"].includes(params.state)) {
      next.model = undefined; // a new server or model: the old name would mislead
    }
    if (params.latencyMs !== undefined) {
      next.latencyMs = params.latencyMs;
    }
    if (params.tokensPerSecond !== undefined) {
      next.tokensPerSecond = params.tokensPerSecond;
    }
    this.snapshot = next;
    this.render();
  }

  setEnabled(enabled: boolean): void {
    this.snapshot = { ...this.snapshot, enabled };
    this.render();
  }

  private render(): void {
    const view = renderStatus(this.snapshot);
    this.item.text = view.text;
    this.item.tooltip = view.tooltip;
    this.item.command = view.command;
    this.item.backgroundColor = view.error
      ? new vscode.ThemeColor("statusBarItem.errorBackground")
      : view.warning
        ? new vscode.ThemeColor("statusBarItem.warningBackground")
        : undefined;
    this.item.accessibilityInformation = { label: `fimble: ${this.snapshot.state}. ${view.tooltip}` };
  }

  dispose(): void {
    this.item.dispose();
  }
}
