/* eslint-disable @typescript-eslint/no-explicit-any */
/** A small in-memory stand-in for the `vscode` module: enough for the extension's unit tests. */

export class Disposable {
  constructor(private readonly fn: () => void = () => undefined) {}
  static from(...items: { dispose(): unknown }[]): Disposable {
    return new Disposable(() => items.forEach((i) => i.dispose()));
  }
  dispose(): void {
    this.fn();
  }
}

export class EventEmitter<T> {
  private listeners: ((e: T) => unknown)[] = [];
  event = (listener: (e: T) => unknown): Disposable => {
    this.listeners.push(listener);
    return new Disposable(() => (this.listeners = this.listeners.filter((l) => l !== listener)));
  };
  fire(e: T): void {
    for (const l of [...this.listeners]) {
      l(e);
    }
  }
  dispose(): void {
    this.listeners = [];
  }
}

export class Position {
  constructor(
    readonly line: number,
    readonly character: number,
  ) {}
  isBefore(o: Position): boolean {
    return this.line < o.line || (this.line === o.line && this.character < o.character);
  }
  isEqual(o: Position): boolean {
    return this.line === o.line && this.character === o.character;
  }
}

export class Range {
  readonly start: Position;
  readonly end: Position;
  constructor(a: Position | number, b: Position | number, c?: number, d?: number) {
    if (typeof a === "number") {
      this.start = new Position(a, b as number);
      this.end = new Position(c ?? 0, d ?? 0);
    } else {
      this.start = a;
      this.end = b as Position;
    }
  }
  get isEmpty(): boolean {
    return this.start.isEqual(this.end);
  }
  intersection(o: Range): Range | undefined {
    const start = this.start.isBefore(o.start) ? o.start : this.start;
    const end = this.end.isBefore(o.end) ? this.end : o.end;
    return end.isBefore(start) ? undefined : new Range(start, end);
  }
  union(o: Range): Range {
    return new Range(this.start.isBefore(o.start) ? this.start : o.start, this.end.isBefore(o.end) ? o.end : this.end);
  }
}

export class Selection extends Range {
  get active(): Position {
    return this.end;
  }
}

export class Uri {
  constructor(
    readonly scheme: string,
    readonly path: string,
  ) {}
  static file(p: string): Uri {
    return new Uri("file", p);
  }
  static parse(s: string): Uri {
    const m = /^([a-z-]+):\/\/(.*)$/.exec(s);
    return m ? new Uri(m[1], m[2]) : new Uri("file", s);
  }
  static joinPath(base: Uri, ...parts: string[]): Uri {
    return new Uri(base.scheme, [base.path, ...parts].join("/"));
  }
  get fsPath(): string {
    return this.path;
  }
  toString(): string {
    return `${this.scheme}://${this.path}`;
  }
}

export class ThemeColor {
  constructor(readonly id: string) {}
}

export class MarkdownString {
  constructor(public value = "") {}
  appendMarkdown(s: string): this {
    this.value += s;
    return this;
  }
  appendCodeblock(code: string, language = ""): this {
    this.value += "\n```" + language + "\n" + code + "\n```\n";
    return this;
  }
}

export enum DecorationRangeBehavior {
  OpenOpen = 0,
  ClosedClosed = 1,
  OpenClosed = 2,
  ClosedOpen = 3,
}
export enum OverviewRulerLane {
  Left = 1,
  Center = 2,
  Right = 4,
  Full = 7,
}
export enum TextEditorRevealType {
  Default = 0,
  InCenter = 1,
  InCenterIfOutsideViewport = 2,
  AtTop = 3,
}

export class CancellationTokenSource {
  private readonly cancelled = new EventEmitter<void>();
  private isCancelled = false;
  readonly token = {
    isCancellationRequested: false,
    onCancellationRequested: (l: () => void) => this.cancelled.event(l),
  };
  cancel(): void {
    if (!this.isCancelled) {
      this.isCancelled = true;
      this.token.isCancellationRequested = true;
      this.cancelled.fire();
    }
  }
  dispose(): void {
    this.cancelled.dispose();
  }
}

export class WorkspaceEdit {
  readonly edits: { uri: Uri; range: Range; text: string }[] = [];
  replace(uri: Uri, range: Range, text: string): void {
    this.edits.push({ uri, range, text });
  }
}

/** A text document held in memory; `applyEdit` and `FakeTextDocument.type` change it like the editor does. */
export class FakeTextDocument {
  version = 1;
  constructor(
    readonly uri: Uri,
    public text: string,
    readonly languageId = "python",
  ) {}
  get lineCount(): number {
    return this.text.split("\n").length;
  }
  lineAt(line: number): { text: string; range: Range } {
    const text = this.text.split("\n")[line] ?? "";
    return { text, range: new Range(line, 0, line, text.length) };
  }
  offsetAt(p: Position): number {
    const lines = this.text.split("\n");
    let at = 0;
    for (let i = 0; i < p.line && i < lines.length; i++) {
      at += lines[i].length + 1;
    }
    return at + Math.min(p.character, lines[p.line]?.length ?? 0);
  }
  positionAt(offset: number): Position {
    const before = this.text.slice(0, offset).split("\n");
    return new Position(before.length - 1, before[before.length - 1].length);
  }
  getText(): string {
    return this.text;
  }
  /** Replaces `range` with `text` (a keystroke, a paste, an edit) and tells the listeners. */
  replace(range: Range, text: string): void {
    this.text = this.text.slice(0, this.offsetAt(range.start)) + text + this.text.slice(this.offsetAt(range.end));
    this.version += 1;
    documentChanges.fire({ document: this, contentChanges: [{ range, text }] });
  }
}

/** An editor on a FakeTextDocument: records its decorations; setting the selection fires the selection event. */
export class FakeTextEditor {
  private current: Selection = new Selection(new Position(0, 0), new Position(0, 0));
  readonly decorations = new Map<unknown, any[]>();
  readonly revealed: Range[] = [];
  constructor(readonly document: FakeTextDocument) {}
  get selection(): Selection {
    return this.current;
  }
  set selection(s: Selection) {
    this.current = s;
    selectionChanges.fire({ textEditor: this, selections: [s] });
  }
  setDecorations(type: unknown, ranges: any[]): void {
    this.decorations.set(type, ranges);
  }
  revealRange(range: Range): void {
    this.revealed.push(range);
  }
}

const documentChanges = new EventEmitter<{ document: FakeTextDocument; contentChanges: unknown[] }>();
const selectionChanges = new EventEmitter<{ textEditor: FakeTextEditor; selections: Selection[] }>();
const activeEditorChanges = new EventEmitter<unknown>();

/** Makes `editor` the active one and fires onDidChangeActiveTextEditor. */
export function setActiveEditor(editor: FakeTextEditor | undefined): void {
  window.activeTextEditor = editor;
  activeEditorChanges.fire(editor);
}

export enum StatusBarAlignment {
  Left = 1,
  Right = 2,
}
export enum ViewColumn {
  Active = -1,
  Beside = -2,
  One = 1,
}
export enum ProgressLocation {
  SourceControl = 1,
  Window = 10,
  Notification = 15,
}
export enum ConfigurationTarget {
  Global = 1,
  Workspace = 2,
  WorkspaceFolder = 3,
}

// ---- recorded state, reset by `reset()` ----

export interface FakeStatusBarItem {
  id: string;
  text: string;
  tooltip: unknown;
  command: unknown;
  backgroundColor: ThemeColor | undefined;
  name?: string;
  accessibilityInformation?: unknown;
  visible: boolean;
  show(): void;
  hide(): void;
  dispose(): void;
}

export interface FakeWebviewPanel {
  title: string;
  webview: {
    html: string;
    cspSource: string;
    messages: unknown[];
    postMessage(m: unknown): Promise<boolean>;
    asWebviewUri(u: Uri): Uri;
    onDidReceiveMessage(l: (m: unknown) => void): Disposable;
    receive(m: unknown): void;
  };
  revealed: number;
  reveal(): void;
  onDidDispose(l: () => void): Disposable;
  dispose(): void;
}

export const recorded = {
  statusBarItems: [] as FakeStatusBarItem[],
  messages: [] as { level: "info" | "warning" | "error"; text: string; items: string[] }[],
  outputLines: [] as string[],
  commands: new Map<string, (...args: any[]) => unknown>(),
  executed: [] as { command: string; args: unknown[] }[],
  panels: [] as FakeWebviewPanel[],
  configUpdates: [] as { key: string; value: unknown; target: unknown }[],
  openedDocuments: [] as { language?: string; content?: string }[],
  statusMessages: [] as string[],
  decorationTypes: [] as { options: unknown; disposed: boolean }[],
  appliedEdits: [] as WorkspaceEdit[],
  /** What applyEdit answers: false plays VS Code refusing an edit for a document that moved on. */
  applyEditResult: true,
  progress: [] as { title: string; cancellable: boolean; reports: { message?: string; increment?: number }[] }[],
};

/** User settings (flat keys such as "fimble.model"), and the workspace's own `.vscode/settings.json`. */
let settings: Record<string, unknown> = {};
let workspaceSettings: Record<string, unknown> = {};
const configListeners = new EventEmitter<{ affectsConfiguration(section: string): boolean }>();
const trustListeners = new EventEmitter<void>();

/** Replaces all user settings. */
export function setSettings(values: Record<string, unknown>): void {
  settings = { ...values };
}

/**
 * Replaces the workspace settings. Like VS Code, `get()` lets them win over user settings (for every key: the
 * extension must not rely on VS Code dropping machine-scoped workspace values); `inspect()` tells them apart.
 */
export function setWorkspaceSettings(values: Record<string, unknown>): void {
  workspaceSettings = { ...values };
}

/** Opens the workspace in Restricted Mode (false) or trusted (true, the default). */
export function setTrusted(trusted: boolean): void {
  workspace.isTrusted = trusted;
}

/** The user trusts the workspace: fires onDidGrantWorkspaceTrust. */
export function grantTrust(): void {
  workspace.isTrusted = true;
  trustListeners.fire();
}

/** The Python extension, reporting `interpreter` as its active environment (undefined: not installed). */
export function setPythonExtension(interpreter: string | undefined): void {
  pythonInterpreter = interpreter;
}
let pythonInterpreter: string | undefined;

/** Changes settings and fires onDidChangeConfiguration for the changed keys. */
export function changeSettings(values: Record<string, unknown>): void {
  Object.assign(settings, values);
  const keys = Object.keys(values);
  configListeners.fire({
    affectsConfiguration: (section: string) => keys.some((k) => k === section || k.startsWith(section + ".")),
  });
}

/** Answer for the show*Message calls (none by default): a button label, or a function choosing one. */
export let messageAnswer: string | ((text: string, items: string[]) => string | undefined) | undefined;
export function answerMessagesWith(item: typeof messageAnswer): void {
  messageAnswer = item;
}

const cancelListeners = new EventEmitter<void>();
let progressCancelled = false;
/** The user clicks Cancel on the running progress notification. */
export function cancelProgress(): void {
  progressCancelled = true;
  cancelListeners.fire();
}

export function reset(): void {
  recorded.statusBarItems.length = 0;
  recorded.messages.length = 0;
  recorded.outputLines.length = 0;
  recorded.commands.clear();
  recorded.executed.length = 0;
  recorded.panels.length = 0;
  recorded.configUpdates.length = 0;
  recorded.openedDocuments.length = 0;
  recorded.statusMessages.length = 0;
  recorded.progress.length = 0;
  recorded.decorationTypes.length = 0;
  recorded.appliedEdits.length = 0;
  recorded.applyEditResult = true;
  cancelListeners.dispose();
  progressCancelled = false;
  settings = {};
  workspaceSettings = {};
  workspace.isTrusted = true;
  workspace.workspaceFolders = undefined;
  pythonInterpreter = undefined;
  messageAnswer = undefined;
  window.activeTextEditor = undefined;
}

function makeConfiguration(section?: string) {
  const full = (key: string) => (section ? `${section}.${key}` : key);
  return {
    get<T>(key: string, defaultValue?: T): T | undefined {
      const k = full(key);
      if (k in workspaceSettings) {
        return workspaceSettings[k] as T;
      }
      return (k in settings ? (settings[k] as T) : defaultValue) as T | undefined;
    },
    has(key: string): boolean {
      return full(key) in settings || full(key) in workspaceSettings;
    },
    inspect<T>(key: string) {
      return {
        key: full(key),
        defaultValue: undefined as T | undefined,
        globalValue: settings[full(key)] as T | undefined,
        workspaceValue: workspaceSettings[full(key)] as T | undefined,
        workspaceFolderValue: undefined as T | undefined,
      };
    },
    async update(key: string, value: unknown, target?: unknown): Promise<void> {
      recorded.configUpdates.push({ key: full(key), value, target });
      changeSettings({ [full(key)]: value });
    },
  };
}

function message(level: "info" | "warning" | "error") {
  return (text: string, ...items: unknown[]): Promise<string | undefined> => {
    const labels = items.filter((i): i is string => typeof i === "string");
    recorded.messages.push({ level, text, items: labels });
    const answer = typeof messageAnswer === "function" ? messageAnswer(text, labels) : messageAnswer;
    return Promise.resolve(answer !== undefined && labels.includes(answer) ? answer : undefined);
  };
}

function outputChannel(name: string) {
  const line = (level: string) => (s: string) => recorded.outputLines.push(`[${level}] ${s}`);
  return {
    name,
    logLevel: 2,
    onDidChangeLogLevel: new EventEmitter<number>().event,
    append: (s: string) => recorded.outputLines.push(s),
    appendLine: (s: string) => recorded.outputLines.push(s),
    replace: () => undefined,
    clear: () => undefined,
    shown: 0,
    show(): void {
      this.shown += 1;
    },
    hide: () => undefined,
    dispose: () => undefined,
    trace: line("trace"),
    debug: line("debug"),
    info: line("info"),
    warn: line("warn"),
    error: line("error"),
  };
}

export const window = {
  activeTextEditor: undefined as unknown,
  onDidChangeTextEditorSelection: selectionChanges.event,
  onDidChangeActiveTextEditor: activeEditorChanges.event,
  createTextEditorDecorationType(options: unknown) {
    const type = { options, disposed: false, dispose: () => (type.disposed = true) };
    recorded.decorationTypes.push(type);
    return type;
  },
  createStatusBarItem(id: string, _alignment?: StatusBarAlignment, _priority?: number): FakeStatusBarItem {
    const item: FakeStatusBarItem = {
      id,
      text: "",
      tooltip: undefined,
      command: undefined,
      backgroundColor: undefined,
      visible: false,
      show() {
        this.visible = true;
      },
      hide() {
        this.visible = false;
      },
      dispose() {
        this.visible = false;
      },
    };
    recorded.statusBarItems.push(item);
    return item;
  },
  createOutputChannel: (name: string) => outputChannel(name),
  setStatusBarMessage(text: string): Disposable {
    recorded.statusMessages.push(text);
    return new Disposable();
  },
  showInformationMessage: message("info"),
  showWarningMessage: message("warning"),
  showErrorMessage: message("error"),
  async showQuickPick<T>(items: T[]): Promise<T | undefined> {
    return items[0];
  },
  async withProgress<R>(
    options: { title?: string; cancellable?: boolean },
    task: (
      progress: { report(v: { message?: string; increment?: number }): void },
      token: { isCancellationRequested: boolean; onCancellationRequested(l: () => void): Disposable },
    ) => Promise<R>,
  ): Promise<R> {
    const entry = { title: options?.title ?? "", cancellable: options?.cancellable === true, reports: [] as { message?: string; increment?: number }[] };
    recorded.progress.push(entry);
    progressCancelled = false;
    const token = {
      get isCancellationRequested() {
        return progressCancelled;
      },
      onCancellationRequested: (l: () => void) => cancelListeners.event(l),
    };
    return task({ report: (v) => entry.reports.push(v) }, token);
  },
  createWebviewPanel(_viewType: string, title: string): FakeWebviewPanel {
    const disposeListeners: (() => void)[] = [];
    const messageListeners: ((m: unknown) => void)[] = [];
    const panel: FakeWebviewPanel = {
      title,
      revealed: 0,
      webview: {
        html: "",
        cspSource: "vscode-resource:",
        messages: [],
        postMessage(m: unknown) {
          this.messages.push(m);
          return Promise.resolve(true);
        },
        asWebviewUri: (u: Uri) => u,
        onDidReceiveMessage(l: (m: unknown) => void) {
          messageListeners.push(l);
          return new Disposable();
        },
        receive(m: unknown) {
          messageListeners.forEach((l) => l(m));
        },
      },
      reveal() {
        this.revealed += 1;
      },
      onDidDispose(l: () => void) {
        disposeListeners.push(l);
        return new Disposable();
      },
      dispose() {
        disposeListeners.forEach((l) => l());
      },
    };
    recorded.panels.push(panel);
    return panel;
  },
  async showTextDocument(doc: unknown): Promise<unknown> {
    return { document: doc };
  },
};

export const workspace = {
  isTrusted: true,
  onDidGrantWorkspaceTrust: trustListeners.event,
  workspaceFolders: undefined as { uri: Uri }[] | undefined,
  getConfiguration: (section?: string) => makeConfiguration(section),
  onDidChangeConfiguration: configListeners.event,
  async openTextDocument(options: { language?: string; content?: string }): Promise<unknown> {
    recorded.openedDocuments.push(options);
    return { uri: Uri.parse("untitled://doc"), ...options };
  },
  onDidChangeTextDocument: documentChanges.event,
  async applyEdit(edit: WorkspaceEdit): Promise<boolean> {
    recorded.appliedEdits.push(edit);
    if (!recorded.applyEditResult || !edit?.edits) {
      return recorded.applyEditResult;
    }
    // Like VS Code: the edits of one document together, ranges against the text before any of them.
    const editor = window.activeTextEditor as FakeTextEditor | undefined;
    const doc = editor?.document;
    if (doc && edit.edits.every((e) => e.uri.toString() === doc.uri.toString())) {
      let text = doc.text;
      for (const e of [...edit.edits].reverse()) {
        text = text.slice(0, doc.offsetAt(e.range.start)) + e.text + text.slice(doc.offsetAt(e.range.end));
      }
      doc.text = text;
      doc.version += 1;
      documentChanges.fire({ document: doc, contentChanges: edit.edits });
    }
    return true;
  },
};

export const commands = {
  registerCommand(command: string, callback: (...args: any[]) => unknown): Disposable {
    if (recorded.commands.has(command)) {
      throw new Error(`command '${command}' already exists`);
    }
    recorded.commands.set(command, callback);
    return new Disposable(() => recorded.commands.delete(command));
  },
  async executeCommand(command: string, ...args: unknown[]): Promise<unknown> {
    recorded.executed.push({ command, args });
    const cb = recorded.commands.get(command);
    return cb ? cb(...args) : undefined;
  },
};

export const languages = {
  getDiagnostics: (): unknown[] => [],
};

export const extensions = {
  getExtension(id: string) {
    if (id !== "ms-python.python" || pythonInterpreter === undefined) {
      return undefined;
    }
    const path = pythonInterpreter;
    return { isActive: true, exports: { environments: { getActiveEnvironmentPath: () => ({ path }) } } };
  },
};
