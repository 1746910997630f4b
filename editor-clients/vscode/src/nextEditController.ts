/**
 * Next edits in the editor: asks `fimble/nextEdit` when an edit pauses and after an accepted suggestion, draws the
 * answer as an inline diff with decorations (stable API), and binds Tab (jump, then apply) and Esc (dismiss)
 * through the `fimble.nextEditVisible` context key. The decisions themselves are in nextEdit.ts.
 */
import * as vscode from "vscode";
import { NextEditSession, Pos, Suggestion, drawing, suggestionFrom } from "./nextEdit";

export const NEXT_EDIT_METHOD = "fimble/nextEdit";
/** The context key the Tab and Esc keybindings (package.json) depend on. */
export const VISIBLE_KEY = "fimble.nextEditVisible";
/** Quiet time after the last change before asking: longer than a keystroke's gap, so typing never waits on it. */
export const DEBOUNCE_MS = 500;
/** LSP's RequestCancelled and ContentModified: a newer request or edit made the answer moot; not an error. */
const MOOT_ERRORS = [-32800, -32801];
const SCHEMES = ["file", "untitled", "vscode-remote"];

/** The part of the language client used here. */
export interface NextEditClient {
  sendRequest<R>(method: string, params: unknown, token: vscode.CancellationToken): Promise<R>;
}

export interface NextEditDeps {
  client(): NextEditClient | undefined;
  /** Whether next edits are asked for on their own in this document (settings `fimble.nextEdit`, languages). */
  enabled(document: vscode.TextDocument): boolean;
  /** Whether ghost text from an inline completion is showing in this document (the next edit waits then). */
  completionShowing(document: vscode.TextDocument): boolean;
  log(line: string): void;
  debounceMs?: number;
}

const pos = (p: Pos) => new vscode.Position(p.line, p.character);
const range = (r: { start: Pos; end: Pos }) => new vscode.Range(pos(r.start), pos(r.end));

export class NextEditController implements vscode.Disposable {
  private readonly session = new NextEditSession();
  private readonly disposables: vscode.Disposable[] = [];
  private readonly deleted = vscode.window.createTextEditorDecorationType({
    textDecoration: "line-through",
    backgroundColor: new vscode.ThemeColor("diffEditor.removedTextBackground"),
    rangeBehavior: vscode.DecorationRangeBehavior.ClosedClosed,
  });
  private readonly inserted = vscode.window.createTextEditorDecorationType({
    rangeBehavior: vscode.DecorationRangeBehavior.ClosedClosed,
  });
  private readonly marker = vscode.window.createTextEditorDecorationType({});
  private readonly hover = vscode.window.createTextEditorDecorationType({
    overviewRulerColor: new vscode.ThemeColor("editorOverviewRuler.modifiedForeground"),
    overviewRulerLane: vscode.OverviewRulerLane.Right,
  });
  private pending: vscode.CancellationTokenSource | undefined;
  private timer: ReturnType<typeof setTimeout> | undefined;
  /** The editor the decorations are on. */
  private drawnOn: vscode.TextEditor | undefined;
  private visible = false;

  constructor(private readonly deps: NextEditDeps) {
    this.disposables.push(
      this.deleted,
      this.inserted,
      this.marker,
      this.hover,
      vscode.workspace.onDidChangeTextDocument((e) => this.onChange(e)),
      vscode.window.onDidChangeTextEditorSelection((e) => this.onSelection(e)),
      vscode.window.onDidChangeActiveTextEditor(() => {
        this.cancel();
        this.dismiss();
      }),
      vscode.commands.registerCommand("fimble.nextEdit.accept", () => this.tab()),
      vscode.commands.registerCommand("fimble.nextEdit.dismiss", () => {
        this.cancel();
        this.dismiss();
      }),
      vscode.commands.registerCommand("fimble.nextEdit.suggest", () => this.suggest()),
      vscode.commands.registerCommand("fimble.nextEdit.afterAccept", (then?: vscode.Command) => this.afterAccept(then)),
    );
  }

  /** The suggestion on screen (for tests). */
  get current(): Suggestion | undefined {
    return this.session.current;
  }

  /**
   * The command to put on an inline completion item: it asks for the next edit once the completion is accepted,
   * then runs the item's own command, if any.
   */
  acceptCommand(then?: vscode.Command): vscode.Command {
    return { title: "fimble: next edit after this completion", command: "fimble.nextEdit.afterAccept", arguments: [then] };
  }

  private async afterAccept(then?: vscode.Command): Promise<void> {
    const editor = vscode.window.activeTextEditor;
    if (editor && this.deps.enabled(editor.document)) {
      this.schedule(0);
    }
    if (then?.command) {
      await vscode.commands.executeCommand(then.command, ...(then.arguments ?? []));
    }
  }

  private onChange(e: vscode.TextDocumentChangeEvent): void {
    if (e.contentChanges.length === 0) {
      return; // only the dirty state changed
    }
    const uri = e.document.uri.toString();
    if (this.session.documentChanged(uri, e.document.version)) {
      this.clear();
    }
    const editor = vscode.window.activeTextEditor;
    if (editor?.document === e.document) {
      // Whatever was being asked is for older text now.
      this.cancel();
      if (this.deps.enabled(e.document)) {
        this.schedule(this.deps.debounceMs ?? DEBOUNCE_MS);
      }
    }
  }

  private onSelection(e: vscode.TextEditorSelectionChangeEvent): void {
    if (!this.session.current) {
      return;
    }
    if (this.session.cursorMoved(e.textEditor.document.uri.toString(), e.textEditor.selection.active)) {
      this.clear();
    } else if (e.textEditor === vscode.window.activeTextEditor) {
      this.render(e.textEditor);
    }
  }

  /** Asks once the delay passes (restarting it on each call), in the editor that is active then. */
  private schedule(delay: number): void {
    if (this.timer) {
      clearTimeout(this.timer);
    }
    this.timer = setTimeout(() => {
      this.timer = undefined;
      const editor = vscode.window.activeTextEditor;
      if (!editor || !this.deps.enabled(editor.document)) {
        return;
      }
      if (this.deps.completionShowing(editor.document)) {
        this.deps.log("next edit: not asked, ghost text is showing");
        return;
      }
      void this.request(editor, false);
    }, delay);
  }

  /** "fimble: Suggest next edit": asks now, and says why when there is nothing. */
  private async suggest(): Promise<void> {
    const editor = vscode.window.activeTextEditor;
    if (!editor) {
      void vscode.window.showInformationMessage("fimble: open a file to get a next edit.");
      return;
    }
    await this.request(editor, true);
  }

  private cancel(): void {
    if (this.timer) {
      clearTimeout(this.timer);
      this.timer = undefined;
    }
    this.pending?.cancel();
    this.pending = undefined;
  }

  private async request(editor: vscode.TextEditor, explicit: boolean): Promise<void> {
    const document = editor.document;
    if (!SCHEMES.includes(document.uri.scheme)) {
      return;
    }
    const client = this.deps.client();
    if (!client) {
      if (explicit) {
        void vscode.window.showWarningMessage("fimble: the server is not running yet.");
      }
      return;
    }
    this.cancel();
    const cts = new vscode.CancellationTokenSource();
    this.pending = cts;
    const uri = document.uri.toString();
    const version = document.version;
    const cursor = editor.selection.active;
    const origin = { line: cursor.line, character: cursor.character };
    const tell = (why: string) => {
      this.deps.log(`next edit: nothing to show (${why})`);
      if (explicit) {
        vscode.window.setStatusBarMessage(`fimble: no next edit: ${why}`, 8000);
      }
    };
    try {
      const answer = await client.sendRequest<unknown>(
        NEXT_EDIT_METHOD,
        { textDocument: { uri, version }, position: origin },
        cts.token,
      );
      if (cts.token.isCancellationRequested) {
        return;
      }
      if (vscode.window.activeTextEditor !== editor || document.version !== version) {
        this.deps.log(`next edit: dropped, the answer is for version ${version} of a document that moved on`);
        return;
      }
      const got = suggestionFrom(answer, { uri, version, origin }, (a, b) => vscode.Uri.parse(a).toString() === b);
      if ("reason" in got) {
        tell(got.reason);
        return;
      }
      this.session.show(got.suggestion);
      this.render(editor);
    } catch (error) {
      const code = (error as { code?: unknown }).code;
      const message = error instanceof Error ? error.message : String(error);
      if (typeof code === "number" && MOOT_ERRORS.includes(code)) {
        this.deps.log(`next edit: ${message}`);
      } else {
        // No pop-up (PROTOCOL.md): a next edit is a hint, its failure is for the log.
        tell(`the request failed: ${message}`);
      }
    } finally {
      if (this.pending === cts) {
        this.pending = undefined;
      }
      cts.dispose();
    }
  }

  private render(editor: vscode.TextEditor): void {
    const s = this.session.current;
    if (!s) {
      this.clear();
      return;
    }
    if (this.drawnOn && this.drawnOn !== editor) {
      this.clear();
      this.session.show(s);
    }
    const doc = editor.document;
    const d = drawing(s, editor.selection.active, (line) => (line < doc.lineCount ? doc.lineAt(line).text : ""));
    const ghost = new vscode.ThemeColor("editorGhostText.foreground");
    editor.setDecorations(this.deleted, d.deleted.map(range));
    editor.setDecorations(
      this.inserted,
      d.inserted.map((i) => ({
        range: range({ start: i.at, end: i.at }),
        renderOptions: {
          after: {
            contentText: i.text,
            color: ghost,
            backgroundColor: new vscode.ThemeColor("diffEditor.insertedTextBackground"),
          },
        },
      })),
    );
    const markerAt = doc.lineAt(Math.min(d.marker.line, doc.lineCount - 1)).range.end;
    editor.setDecorations(this.marker, [
      {
        range: new vscode.Range(markerAt, markerAt),
        renderOptions: { after: { contentText: `  ${d.marker.text}`, color: ghost, fontStyle: "italic" } },
      },
    ]);
    const diff = new vscode.MarkdownString();
    diff.appendMarkdown("**fimble: next edit** (Tab: jump, Tab again: apply, Esc: dismiss)\n\n");
    diff.appendCodeblock(d.hover.diff, "diff");
    editor.setDecorations(this.hover, [{ range: range(d.hover.lines), hoverMessage: diff }]);
    this.drawnOn = editor;
    this.setVisible(true);
  }

  /** Takes the suggestion off the screen (the session already let it go, or does now). */
  private clear(): void {
    this.session.dismiss();
    const editor = this.drawnOn;
    this.drawnOn = undefined;
    if (editor) {
      for (const type of [this.deleted, this.inserted, this.marker, this.hover]) {
        editor.setDecorations(type, []);
      }
    }
    this.setVisible(false);
  }

  private dismiss(): void {
    if (this.session.current || this.visible) {
      this.clear();
    }
  }

  private setVisible(visible: boolean): void {
    if (visible !== this.visible) {
      this.visible = visible;
      void vscode.commands.executeCommand("setContext", VISIBLE_KEY, visible);
    }
  }

  /** Tab: jump to the edit, or apply it when the cursor is there. */
  private async tab(): Promise<void> {
    const editor = vscode.window.activeTextEditor;
    const action = editor && this.session.tab(editor.document.uri.toString(), editor.selection.active);
    if (!editor || !action) {
      // The key was bound for a suggestion that is gone: Tab does what it does without one.
      this.clear();
      await vscode.commands.executeCommand("tab");
      return;
    }
    if (action.kind === "jump") {
      const to = pos(action.to);
      editor.selection = new vscode.Selection(to, to);
      editor.revealRange(new vscode.Range(to, to), vscode.TextEditorRevealType.InCenterIfOutsideViewport);
      this.render(editor);
      return;
    }
    this.clear();
    await this.apply(editor, action.suggestion);
  }

  /**
   * All the edits as one WorkspaceEdit: one undo step. VS Code sends the extension's document version with it and
   * refuses it when the text moved on meanwhile; a change seen here already is refused before.
   */
  private async apply(editor: vscode.TextEditor, s: Suggestion): Promise<void> {
    const doc = editor.document;
    if (doc.version !== s.version) {
      this.deps.log(`next edit: not applied, the document changed (version ${doc.version}, not ${s.version})`);
      return;
    }
    const edit = new vscode.WorkspaceEdit();
    let shift = 0;
    for (const e of s.edits) {
      edit.replace(doc.uri, range(e.range), e.text);
      shift += e.text.length - (doc.offsetAt(pos(e.range.end)) - doc.offsetAt(pos(e.range.start)));
    }
    // The cursor goes to the end of the last edit's text, where the user would have been after typing it.
    const last = s.edits[s.edits.length - 1];
    const endOffset = doc.offsetAt(pos(last.range.end)) + shift;
    const applied = await vscode.workspace.applyEdit(edit);
    if (!applied) {
      this.deps.log("next edit: not applied, VS Code refused the edit (the document changed?)");
      return;
    }
    if (vscode.window.activeTextEditor === editor) {
      const end = doc.positionAt(endOffset);
      editor.selection = new vscode.Selection(end, end);
    }
    this.deps.log(`next edit: applied ${s.edits.length} edit(s)`);
    if (this.deps.enabled(doc)) {
      this.schedule(0);
    }
  }

  dispose(): void {
    this.cancel();
    this.clear();
    this.disposables.forEach((d) => d.dispose());
  }
}
