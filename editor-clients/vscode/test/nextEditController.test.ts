/* eslint-disable @typescript-eslint/no-explicit-any */
/** The next-edit controller against the mocked `vscode` module: when it asks, what it draws, Tab, Esc, staleness. */
import * as assert from "node:assert/strict";
import { afterEach, beforeEach, test } from "node:test";
import * as vscode from "vscode";
import { NEXT_EDIT_METHOD, NextEditClient, NextEditController, VISIBLE_KEY } from "../src/nextEditController";
import { APPLY_HINT, JUMP_HINT } from "../src/nextEdit";
// eslint-disable-next-line @typescript-eslint/no-require-imports
const mock = require("vscode") as typeof import("./mock/vscode");

const TEXT = 'import math\n\n\ndef area(radius):\n    """Area of a circle."""\n    return math.pi * radius * radius\n';
const RENAMED = TEXT.replace("def area(radius)", "def area(r)");

/** A server answering next-edit requests with `answer(params)`; each request is kept with its cancellation. */
class FakeServer implements NextEditClient {
  readonly requests: { params: any; token: vscode.CancellationToken }[] = [];
  answer: (params: any) => unknown = () => ({ edits: [] });
  /** When set, requests wait for `release()` before answering. */
  hold = false;
  private waiting: (() => void)[] = [];
  async sendRequest<R>(method: string, params: unknown, token: vscode.CancellationToken): Promise<R> {
    assert.equal(method, NEXT_EDIT_METHOD);
    this.requests.push({ params, token });
    if (this.hold) {
      await new Promise<void>((resolve) => this.waiting.push(resolve));
    }
    return this.answer(params) as R;
  }
  release(): void {
    this.waiting.splice(0).forEach((r) => r());
  }
}

/** The rename's other uses, as the server answers for the document's current version. */
function rename(params: any) {
  const doc = params.textDocument;
  const edit = (start: number, end: number) => ({
    range: { start: { line: 5, character: start }, end: { line: 5, character: end } },
    text: "r",
    textDocument: doc,
  });
  return { edits: [edit(21, 27), edit(30, 36)] };
}

let server: FakeServer;
let controller: NextEditController;
let doc: InstanceType<typeof mock.FakeTextDocument>;
let editor: InstanceType<typeof mock.FakeTextEditor>;
let enabled: boolean;
let ghostShowing: boolean;
const logged: string[] = [];

const settle = (ms = 30) => new Promise((resolve) => setTimeout(resolve, ms));
const types = () => mock.recorded.decorationTypes;
/** What is drawn now: the ranges of each decoration type, in creation order (deleted, inserted, marker, hover). */
const drawn = () => types().map((t) => editor.decorations.get(t) ?? []);
const contextKey = () =>
  mock.recorded.executed.filter((e) => e.command === "setContext" && e.args[0] === VISIBLE_KEY).map((e) => e.args[1]);
const at = (line: number, character: number) => new vscode.Selection(line, character, line, character);

/** Types "r" over "radius" on the def line, as the user does before the suggestion. */
function typeRename(): void {
  doc.replace(new vscode.Range(3, 9, 3, 15), "r");
  editor.selection = at(3, 10);
}

beforeEach(() => {
  mock.reset();
  logged.length = 0;
  server = new FakeServer();
  server.answer = rename;
  enabled = true;
  ghostShowing = false;
  doc = new mock.FakeTextDocument(mock.Uri.file("/ws/circle.py"), TEXT);
  editor = new mock.FakeTextEditor(doc);
  mock.setActiveEditor(editor);
  controller = new NextEditController({
    client: () => server,
    enabled: () => enabled,
    completionShowing: () => ghostShowing,
    log: (line) => logged.push(line),
    debounceMs: 5,
  });
});

afterEach(() => controller.dispose());

test("an edit that pauses asks once, for the current version at the cursor, and draws the answer", async () => {
  typeRename();
  await settle();
  assert.equal(server.requests.length, 1);
  assert.deepEqual(server.requests[0].params, {
    textDocument: { uri: doc.uri.toString(), version: 2 },
    position: { line: 3, character: 10 },
  });
  const [deleted, inserted, marker, hover] = drawn();
  assert.deepEqual(
    deleted.map((r: vscode.Range) => [r.start.line, r.start.character, r.end.character]),
    [
      [5, 21, 27],
      [5, 30, 36],
    ],
  );
  assert.deepEqual(
    inserted.map((d: any) => [d.range.start.line, d.range.start.character, d.renderOptions.after.contentText]),
    [
      [5, 27, "r"],
      [5, 36, "r"],
    ],
  );
  assert.equal(marker[0].range.start.line, 3, "the hint is on the cursor's line");
  assert.equal(marker[0].renderOptions.after.contentText.trim(), `${JUMP_HINT} (line 6)`);
  assert.match(hover[0].hoverMessage.value, /- {4}return math\.pi \* radius \* radius\n\+ {4}return math\.pi \* r \* r/);
  assert.deepEqual(contextKey(), [true]);
  assert.deepEqual(types()[0].options, {
    textDecoration: "line-through",
    backgroundColor: new vscode.ThemeColor("diffEditor.removedTextBackground"),
    rangeBehavior: vscode.DecorationRangeBehavior.ClosedClosed,
  });
});

test("Tab jumps to the edit, Tab again applies both edits as one WorkspaceEdit and asks again", async () => {
  typeRename();
  await settle();
  await vscode.commands.executeCommand("fimble.nextEdit.accept");
  assert.deepEqual([editor.selection.active.line, editor.selection.active.character], [5, 21]);
  assert.equal(editor.revealed.length, 1);
  assert.equal(controller.current?.version, 2, "still shown after the jump");
  assert.equal(drawn()[2][0].renderOptions.after.contentText.trim(), APPLY_HINT);
  assert.equal(drawn()[2][0].range.start.line, 5);

  server.answer = () => ({ edits: [], reason: "the model wrote the region unchanged" });
  await vscode.commands.executeCommand("fimble.nextEdit.accept");
  assert.equal(mock.recorded.appliedEdits.length, 1, "one WorkspaceEdit: one undo step");
  assert.equal(mock.recorded.appliedEdits[0].edits.length, 2);
  assert.equal(doc.getText(), RENAMED.replace("radius * radius", "r * r"));
  assert.deepEqual([editor.selection.active.line, editor.selection.active.character], [5, 26], "after the last edit");
  assert.equal(controller.current, undefined);
  assert.ok(drawn().every((ranges) => ranges.length === 0), "nothing drawn after the apply");
  assert.deepEqual(contextKey(), [true, false]);
  await settle();
  assert.equal(server.requests.length, 2, "accepting a next edit asks for the next one");
  assert.equal(server.requests[1].params.textDocument.version, 3);
});

test("an apply VS Code refuses (the text moved on) changes nothing and is logged", async () => {
  typeRename();
  await settle();
  editor.selection = at(5, 0);
  mock.recorded.applyEditResult = false;
  await vscode.commands.executeCommand("fimble.nextEdit.accept");
  assert.equal(doc.getText(), RENAMED);
  assert.ok(logged.some((l) => /VS Code refused/.test(l)), logged.join("\n"));
});

test("Esc dismisses; so do any edit and the cursor leaving both places", async () => {
  typeRename();
  await settle();
  await vscode.commands.executeCommand("fimble.nextEdit.dismiss");
  assert.equal(controller.current, undefined);
  assert.ok(drawn().every((ranges) => ranges.length === 0));
  await settle();
  assert.equal(server.requests.length, 1, "Esc asks for nothing");

  // Back and forth between the two places keeps it; elsewhere drops it.
  await vscode.commands.executeCommand("fimble.nextEdit.suggest");
  assert.ok(controller.current);
  editor.selection = at(5, 3);
  editor.selection = at(3, 0);
  assert.ok(controller.current);
  editor.selection = at(0, 0);
  assert.equal(controller.current, undefined);

  await vscode.commands.executeCommand("fimble.nextEdit.suggest");
  assert.ok(controller.current);
  doc.replace(new vscode.Range(0, 0, 0, 0), "#");
  assert.equal(controller.current, undefined, "an edit");
  assert.deepEqual(contextKey(), [true, false, true, false, true, false]);
});

test("Tab with nothing left to show is an ordinary Tab", async () => {
  await vscode.commands.executeCommand("fimble.nextEdit.accept");
  assert.ok(mock.recorded.executed.some((e) => e.command === "tab"));
});

test("a newer request cancels the older one; an answer for older text is dropped", async () => {
  server.hold = true;
  typeRename();
  await settle();
  assert.equal(server.requests.length, 1);
  doc.replace(new vscode.Range(0, 0, 0, 0), "#");
  assert.ok(server.requests[0].token.isCancellationRequested, "an edit cancels the request in flight");
  await settle();
  assert.equal(server.requests.length, 2);
  assert.equal(server.requests[1].params.textDocument.version, 3);
  // Yet another keystroke before the second answer: only the third, for version 4, is shown.
  doc.replace(new vscode.Range(0, 0, 0, 0), "#");
  await settle();
  assert.equal(server.requests.length, 3);
  server.release();
  await settle();
  assert.equal(controller.current?.version, 4, "only the answer for the current text is shown");
  assert.ok(server.requests.slice(0, 2).every((r) => r.token.isCancellationRequested));

  // An answer that arrives although its request was not cancelled, for a version that moved on, is dropped too.
  const stale = new mock.FakeTextDocument(mock.Uri.file("/ws/other.py"), TEXT);
  const otherEditor = new mock.FakeTextEditor(stale);
  mock.setActiveEditor(otherEditor);
  assert.equal(controller.current, undefined, "another editor dismisses");
  server.hold = true;
  const asked = vscode.commands.executeCommand("fimble.nextEdit.suggest");
  await settle(1);
  stale.version += 1; // changed without an event reaching the controller first
  server.release();
  await asked;
  assert.equal(controller.current, undefined);
  assert.ok(logged.some((l) => /dropped/.test(l)), logged.join("\n"));
});

test("nothing is asked while ghost text shows or with next edits off; the command still asks and says why", async () => {
  ghostShowing = true;
  typeRename();
  await settle();
  assert.equal(server.requests.length, 0);
  ghostShowing = false;
  enabled = false;
  doc.replace(new vscode.Range(0, 0, 0, 0), "#");
  await settle();
  assert.equal(server.requests.length, 0);
  server.answer = () => ({ edits: [], reason: "next edits are turned off (nextEdit)" });
  await vscode.commands.executeCommand("fimble.nextEdit.suggest");
  assert.equal(server.requests.length, 1);
  assert.deepEqual(mock.recorded.statusMessages, ["fimble: no next edit: next edits are turned off (nextEdit)"]);
});

test("an accepted completion asks at once, then runs the item's own command", async () => {
  const cmd = controller.acceptCommand({ title: "x", command: "test.after", arguments: [1] });
  let ran: unknown[] | undefined;
  const reg = vscode.commands.registerCommand("test.after", (...args: unknown[]) => (ran = args));
  try {
    await vscode.commands.executeCommand(cmd.command, ...(cmd.arguments ?? []));
    assert.deepEqual(ran, [1]);
    await settle(1);
    assert.equal(server.requests.length, 1);
  } finally {
    reg.dispose();
  }
});

test("errors go to the log, never to a pop-up", async () => {
  server.answer = () => {
    throw Object.assign(new Error("boom"), { code: -32603 });
  };
  await vscode.commands.executeCommand("fimble.nextEdit.suggest");
  assert.equal(mock.recorded.messages.length, 0);
  assert.ok(logged.some((l) => /boom/.test(l)));
  server.answer = () => {
    throw Object.assign(new Error("Content modified"), { code: -32801 });
  };
  await vscode.commands.executeCommand("fimble.nextEdit.suggest");
  assert.equal(mock.recorded.messages.length, 0);
  assert.deepEqual(mock.recorded.statusMessages, ["fimble: no next edit: the request failed: boom"]);
});
