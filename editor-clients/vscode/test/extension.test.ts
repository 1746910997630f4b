/* eslint-disable @typescript-eslint/no-explicit-any */
/** activate() against the mocked `vscode` and `vscode-languageclient/node` modules. */
import * as assert from "node:assert/strict";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { afterEach, beforeEach, test } from "node:test";
import * as vscode from "vscode";
import { activate } from "../src/extension";
import { InstallEvent, ProbeResult, PythonCandidate } from "../src/install";
import { Outcome, RunOptions, processes } from "../src/installRunner";
import * as lc from "./mock/languageclient";
// eslint-disable-next-line @typescript-eslint/no-require-imports
const mock = require("vscode") as typeof import("./mock/vscode");

const manifest = JSON.parse(fs.readFileSync(path.join(__dirname, "..", "..", "package.json"), "utf8"));

let context: {
  subscriptions: { dispose(): unknown }[];
  extensionUri: vscode.Uri;
  globalStorageUri: vscode.Uri;
  globalState: Memento;
};

/** A fake globalState that outlives one activation (as VS Code's does). */
class Memento {
  private values = new Map<string, unknown>();
  get<T>(key: string): T | undefined {
    return this.values.get(key) as T | undefined;
  }
  async update(key: string, value: unknown): Promise<void> {
    this.values.set(key, value);
  }
}

/** Per test: the extension's folder (with bundled/server.json), its global storage, and an empty PATH. */
let tmp: string;
let extDir: string;
let storage: string;
let pathDir: string;
let globalState: Memento;
const savedPath = process.env.PATH;
const realProcesses = { ...processes };
/** Interpreters for which processes.hasFimble says yes; what processes.probe answers; the installer runs. */
let withFimble: Set<string>;
let probeAnswers: (candidate: PythonCandidate) => ProbeResult;
const probed: string[] = [];
const installs: RunOptions[] = [];
let installer: (options: RunOptions) => Promise<Outcome>;

const BUNDLED = { version: "0.1.0", wheel: "fimble-0.1.0-py3-none-any.whl", sha256: "aa11", installer: "fimble_install.py" };

/** An executable file called `name` in the PATH folder. */
function onPath(name: string): string {
  const file = path.join(pathDir, name);
  fs.writeFileSync(file, "#!/bin/sh\nexit 0\n", { mode: 0o755 });
  return file;
}

/** A complete install in the global storage, as the installer leaves it. */
function writeInstall(venv: string, sourceId: string, previous: string | null = null): string {
  const root = path.join(storage, "server");
  const python = path.join(root, venv, "bin", "python");
  fs.mkdirSync(path.dirname(python), { recursive: true });
  fs.writeFileSync(python, "");
  fs.writeFileSync(
    path.join(root, "current.json"),
    JSON.stringify({ venv, version: "0.1.0", source_id: sourceId, previous }),
  );
  return python;
}

/** An installer run that sends these events, then does what the real one does on success. */
function succeeding(venv = "venv-new", events: InstallEvent[] = []): (options: RunOptions) => Promise<Outcome> {
  return async (options) => {
    for (const event of events) {
      options.onEvent(event);
    }
    const previous = JSON.parse(fs.existsSync(path.join(storage, "server", "current.json")) ? fs.readFileSync(path.join(storage, "server", "current.json"), "utf8") : "{}").venv ?? null;
    writeInstall(venv, `sha256:${BUNDLED.sha256}`, previous);
    const done = { event: "done", venv, version: "0.1.0", seconds: 42, previous } as const;
    options.onEvent(done);
    return { kind: "done", event: done };
  };
}

async function flush(): Promise<void> {
  for (let i = 0; i < 20; i++) {
    await new Promise((r) => setImmediate(r));
  }
}

async function start(settings: Record<string, unknown> = {}) {
  mock.setSettings({ "fimble.serverPath": "/venv/bin/fimble", ...settings });
  context = { subscriptions: [], extensionUri: vscode.Uri.file(extDir), globalStorageUri: vscode.Uri.file(storage), globalState };
  const api = await activate(context as unknown as vscode.ExtensionContext);
  await flush();
  return api;
}

function statusItem() {
  return mock.recorded.statusBarItems[0];
}

function latestClient(): lc.LanguageClient {
  const c = lc.instances[lc.instances.length - 1];
  assert.ok(c, "a client was created");
  return c;
}

function editor(text: string[], selection: vscode.Selection, languageId = "python") {
  const uri = vscode.Uri.file("/w/a.py");
  const document = {
    uri,
    languageId,
    lineAt: (line: number) => ({ range: new vscode.Range(line, 0, line, text[line].length), text: text[line] }),
  };
  const ed = { document, selection };
  (vscode.window as any).activeTextEditor = ed;
  return ed;
}

beforeEach(() => {
  mock.reset();
  lc.resetClients();
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), "fimble-ext-test-"));
  extDir = path.join(tmp, "ext");
  storage = path.join(tmp, "storage");
  pathDir = path.join(tmp, "bin");
  for (const dir of [path.join(extDir, "bundled"), storage, pathDir]) {
    fs.mkdirSync(dir, { recursive: true });
  }
  fs.writeFileSync(path.join(extDir, "bundled", "server.json"), JSON.stringify(BUNDLED));
  process.env.PATH = pathDir;
  globalState = new Memento();
  withFimble = new Set();
  probeAnswers = (candidate) => ({ candidate, version: [3, 11, 4], executable: candidate.command });
  probed.length = 0;
  installs.length = 0;
  installer = succeeding();
  processes.hasFimble = async (python) => {
    probed.push(python);
    return withFimble.has(python);
  };
  processes.probe = async (candidate) => {
    probed.push(candidate.command);
    return probeAnswers(candidate);
  };
  processes.runInstaller = (options) => {
    installs.push(options);
    return { done: installer(options), cancel: () => undefined };
  };
});

afterEach(async () => {
  for (const d of context?.subscriptions ?? []) {
    await d.dispose();
  }
  await flush();
  Object.assign(processes, realProcesses);
  process.env.PATH = savedPath;
  fs.rmSync(tmp, { recursive: true, force: true });
});

test("activation registers every contributed command and starts `fimble serve` with the settings", async () => {
  const api = await start({ "fimble.maxTokens": 32, "fimble.model": "/m/tiny.gguf" });
  for (const c of manifest.contributes.commands) {
    assert.ok(mock.recorded.commands.has(c.command), `command ${c.command} is registered`);
  }
  for (const k of manifest.contributes.keybindings) {
    assert.ok(mock.recorded.commands.has(k.command), `command ${k.command} (bound to ${k.key}) is registered`);
  }
  const client = latestClient();
  assert.equal(client.id, "fimble");
  assert.deepEqual(client.serverOptions.command, "/venv/bin/fimble");
  assert.deepEqual(client.serverOptions.args, ["serve"]);
  assert.equal(client.serverOptions.transport, undefined, "no transport: the library would append --stdio");
  assert.equal(client.clientOptions.initializationOptions.maxTokens, 32);
  assert.equal(client.clientOptions.initializationOptions.model, "/m/tiny.gguf");
  assert.equal(client.clientOptions.initializationOptions.nCtx, 4096);
  assert.equal(api.client, client);
  assert.ok(statusItem().visible);
});

test("python -m fimble serve when only pythonPath is set", async () => {
  await start({ "fimble.serverPath": "", "fimble.pythonPath": "/venv/bin/python" });
  assert.deepEqual(latestClient().serverOptions.args, ["-m", "fimble", "serve"]);
});

test("fimble/status drives the status bar; an error shows one message with the log at hand", async () => {
  await start();
  const client = latestClient();
  client.notify("fimble/status", { state: "loading", message: "fimble: loading model 30%" });
  assert.match(statusItem().text, /loading 30%/);
  client.notify("fimble/status", { state: "ready", message: "ready", latencyMs: 250, tokensPerSecond: 20 });
  assert.equal(statusItem().text, "$(check) fimble 250 ms · 20 tok/s");
  client.notify("fimble/status", { state: "error", message: "Cannot load /m/bad.gguf: not a GGUF file" });
  client.notify("fimble/status", { state: "error", message: "Cannot load /m/bad.gguf: not a GGUF file" });
  assert.match(statusItem().text, /error/);
  assert.equal(statusItem().command, "fimble.showLog");
  const errors = mock.recorded.messages.filter((m) => m.level === "error");
  assert.equal(errors.length, 1);
  assert.match(errors[0].text, /not a GGUF file/);
  assert.deepEqual(errors[0].items, ["Show Log", "Open Settings", "Restart"]);
});

test("an error reported as window/showMessage and fimble/status shows one message; warnings pass through", async () => {
  await start();
  const client = latestClient();
  client.notify("window/showMessage", { type: 1, message: "fimble: /m/bad.gguf is not a GGUF model file." });
  client.notify("fimble/status", { state: "error", message: "/m/bad.gguf is not a GGUF model file." });
  client.notify("window/showMessage", { type: 2, message: "slow model" });
  const errors = mock.recorded.messages.filter((m) => m.level === "error");
  assert.equal(errors.length, 1);
  assert.equal(errors[0].text, "fimble: /m/bad.gguf is not a GGUF model file.");
  assert.ok(mock.recorded.messages.some((m) => m.level === "warning" && m.text === "slow model"));
  // After a recovery the same error is news again.
  client.notify("fimble/status", { state: "ready", message: "ok" });
  client.notify("fimble/status", { state: "error", message: "/m/bad.gguf is not a GGUF model file." });
  assert.equal(mock.recorded.messages.filter((m) => m.level === "error").length, 2);
});

test("the server's stderr keeps its log levels in the output channel", async () => {
  await start();
  const { PassThrough } = await import("node:stream");
  const input = new PassThrough();
  const lines: string[] = [];
  const channel = {
    info: (s: string) => lines.push(`info ${s}`),
    warn: (s: string) => lines.push(`warn ${s}`),
    error: (s: string) => lines.push(`error ${s}`),
    debug: (s: string) => lines.push(`debug ${s}`),
    trace: (s: string) => lines.push(`trace ${s}`),
  };
  latestClient().stdioOptions.stderr(input, channel);
  input.end("2026-11-25 12:00:00,123 INFO fimble.lsp.server: loaded\n2026-11-25 12:00:01,000 ERROR x: boom\nTraceback (most recent call last):\n");
  await new Promise((r) => setTimeout(r, 20));
  assert.deepEqual(lines, ["info fimble.lsp.server: loaded", "error x: boom", "error Traceback (most recent call last):"]);
});

test("the server pulls section fimble with the protocol's keys only", async () => {
  await start({ "fimble.enable": true, "fimble.useContext": false, "editor.tabSize": 4 });
  const mw = latestClient().clientOptions.middleware;
  const answer = await mw.workspace.configuration(
    { items: [{ section: "fimble" }, { section: "editor" }] },
    {},
    () => [{ enable: true, raw: 1 }, { tabSize: 4 }],
  );
  assert.deepEqual(answer[1], { tabSize: 4 });
  assert.equal(answer[0].enable, undefined);
  assert.deepEqual(answer[0].contextSources, []);
  assert.equal(answer[0].maxTokens, 64);
});

test("changing a model setting sends workspace/didChangeConfiguration; changing the server path restarts", async () => {
  await start();
  const first = latestClient();
  mock.changeSettings({ "fimble.model": "/m/other.gguf" });
  await flush();
  const sent = first.sentNotifications.filter((n) => n.method === "workspace/didChangeConfiguration");
  assert.equal(sent.length, 1);
  assert.equal(sent[0].params.settings.fimble.model, "/m/other.gguf");
  mock.changeSettings({ "fimble.enabledLanguages": ["python"] });
  await flush();
  assert.equal(first.sentNotifications.length, 1, "client-side keys are not sent");
  mock.changeSettings({ "fimble.serverPath": "/other/fimble" });
  await flush();
  assert.equal(first.disposed, true);
  assert.equal(latestClient().serverOptions.command, "/other/fimble");
});

test("inline completions: off for disabled languages and when disabled; the completion fallback is unused", async () => {
  await start({ "fimble.enabledLanguages": ["*", "!plaintext"] });
  const mw = latestClient().clientOptions.middleware;
  let calls = 0;
  const next = () => {
    calls++;
    return { items: [{ insertText: "x" }] };
  };
  const pos = new vscode.Position(0, 1);
  assert.equal(await mw.provideInlineCompletionItems({ languageId: "plaintext", uri: vscode.Uri.file("/a.txt") }, pos, {}, {}, next), undefined);
  // An accepted completion asks for the next edit: each item carries the command that does.
  assert.deepEqual(await mw.provideInlineCompletionItems({ languageId: "python", uri: vscode.Uri.file("/a.py") }, pos, {}, {}, next), {
    items: [
      {
        insertText: "x",
        command: { title: "fimble: next edit after this completion", command: "fimble.nextEdit.afterAccept", arguments: [undefined] },
      },
    ],
  });
  assert.equal(calls, 1);
  await vscode.commands.executeCommand("fimble.disable");
  assert.deepEqual(mock.recorded.configUpdates[0], { key: "fimble.enable", value: false, target: vscode.ConfigurationTarget.Global });
  assert.match(statusItem().text, /circle-slash/);
  assert.equal(await mw.provideInlineCompletionItems({ languageId: "python", uri: vscode.Uri.file("/a.py") }, pos, {}, {}, next), undefined);
  assert.equal(calls, 1);
  assert.equal(mw.provideCompletionItem({}, pos, {}, {}, next), undefined);
  await vscode.commands.executeCommand("fimble.toggle");
  assert.equal(mock.recorded.configUpdates[1].value, true);
});

test("explain selection streams into a webview beside the editor", async () => {
  await start();
  const client = latestClient();
  editor(["def add(a, b):", "    return a + b"], new vscode.Selection(0, 0, 1, 16));
  lc.behavior.request = async (method, params) => {
    assert.equal(method, "workspace/executeCommand");
    assert.equal(params.command, "fimble.explain");
    const arg = params.arguments[0];
    assert.equal(arg.uri, "file:///w/a.py");
    assert.deepEqual(arg.range, { start: { line: 0, character: 0 }, end: { line: 1, character: 16 } });
    assert.match(arg.token, /^fimble-explain-/);
    const panel = mock.recorded.panels[0];
    assert.ok(panel, "the panel is open before the model answers");
    assert.match(panel.webview.html, /Waiting for the model/);
    panel.webview.receive({ type: "ready" });
    client.notify("fimble/explanation", { token: arg.token, delta: "Adds **two** numbers", done: false });
    client.notify("fimble/explanation", { token: arg.token, delta: ".", done: true });
    await new Promise((r) => setTimeout(r, 120));
    const posted = panel.webview.messages as { html: string }[];
    assert.ok(posted.some((m) => /Adds <strong>two<\/strong> numbers\./.test(m.html)), JSON.stringify(posted));
    return { markdown: "Adds **two** numbers. Final." };
  };
  await vscode.commands.executeCommand("fimble.explainSelection");
  const panel = mock.recorded.panels[0];
  assert.equal(panel.title, "Explain a.py:1-2");
  const last = panel.webview.messages[panel.webview.messages.length - 1] as { html: string; state: string };
  assert.match(last.html, /Final\./);
  assert.equal(last.state, "done");
});

test("an explanation that fails says so in the panel", async () => {
  await start();
  editor(["x = 1"], new vscode.Selection(0, 0, 0, 0));
  lc.behavior.request = async () => {
    mock.recorded.panels[0].webview.receive({ type: "ready" });
    throw new Error("model not loaded");
  };
  await vscode.commands.executeCommand("fimble.explainSelection");
  const panel = mock.recorded.panels[0];
  assert.equal(panel.title, "Explain a.py:1");
  const last = panel.webview.messages[panel.webview.messages.length - 1] as { html: string; state: string };
  assert.equal(last.state, "failed");
  assert.match(last.html, /model not loaded/);
});

test("fix at cursor asks for fimble's quickfixes, resolves the chosen one and applies its edit", async () => {
  await start();
  const client = latestClient();
  editor(["prnt(1)"], new vscode.Selection(0, 2, 0, 2));
  const edit = { changes: { "file:///w/a.py": [{ range: {}, newText: "print(1)" }] } };
  lc.behavior.request = async (method, params) => {
    if (method === "textDocument/codeAction") {
      assert.deepEqual(params.context.only, ["quickfix"]);
      return [{ title: "Fix with fimble: prnt", kind: "quickfix", data: { id: 1 } }];
    }
    if (method === "codeAction/resolve") {
      return { ...params, edit };
    }
    throw new Error(`unexpected ${method}`);
  };
  let applied: unknown;
  (vscode.workspace as any).applyEdit = async (e: unknown) => {
    applied = e;
    return true;
  };
  await vscode.commands.executeCommand("fimble.fixAtCursor");
  assert.deepEqual(
    client.sentRequests.map((r) => r.method),
    ["textDocument/codeAction", "codeAction/resolve"],
  );
  assert.deepEqual(applied, edit);
});

test("fix at cursor: an unverified fix asks first; no fix says why", async () => {
  await start();
  editor(["prnt(1)"], new vscode.Selection(0, 2, 0, 2));
  let resolved: any = { edit: { changes: {} }, title: "Fix with fimble: x (UNVERIFIED: no check passed)" };
  lc.behavior.request = async (method, params) => {
    if (method === "textDocument/codeAction") {
      return [{ title: "Fix with fimble: x", kind: "quickfix", data: {} }];
    }
    return { ...params, ...resolved };
  };
  let applied = 0;
  (vscode.workspace as any).applyEdit = async () => {
    applied++;
    return true;
  };
  await vscode.commands.executeCommand("fimble.fixAtCursor");
  assert.equal(applied, 0, "not applied without a yes");
  assert.ok(mock.recorded.messages.some((m) => m.level === "warning" && /UNVERIFIED.*Apply it\?/.test(m.text)));
  mock.answerMessagesWith("Apply");
  await vscode.commands.executeCommand("fimble.fixAtCursor");
  assert.equal(applied, 1);
  resolved = { title: "No verified fix: the model's candidates did not parse" };
  await vscode.commands.executeCommand("fimble.fixAtCursor");
  assert.equal(applied, 1);
  assert.match(mock.recorded.statusMessages[mock.recorded.statusMessages.length - 1], /No verified fix/);
  lc.behavior.request = async () => [];
  await vscode.commands.executeCommand("fimble.fixAtCursor");
  assert.ok(mock.recorded.messages.some((m) => m.level === "info" && /no fix here/.test(m.text)));
});

test("show last prompt opens the prompt of the last completion position", async () => {
  await start();
  const client = latestClient();
  const mw = client.clientOptions.middleware;
  const uri = vscode.Uri.file("/w/a.py");
  mw.provideInlineCompletionItems({ languageId: "python", uri }, new vscode.Position(3, 7), {}, {}, () => undefined);
  lc.behavior.request = async (method, params) => {
    assert.equal(method, "fimble/debugPrompt");
    assert.deepEqual(params, { textDocument: { uri: "file:///w/a.py" }, position: { line: 3, character: 7 } });
    return { prompt: "<|fim_prefix|>def f", parts: [{ source: "prefix", tokens: 3, ms: 1 }], format: "qwen" };
  };
  await vscode.commands.executeCommand("fimble.showLastPrompt");
  const doc = mock.recorded.openedDocuments[0];
  assert.equal(doc.language, "markdown");
  assert.match(doc.content ?? "", /<\|fim_prefix\|>def f/);
  assert.match(doc.content ?? "", /line 4, column 8/);
});

test("a server that fails to start: error status and message, the retry is scheduled, not looped", async () => {
  lc.behavior.start = async () => {
    throw new Error("Launching server using command /nope failed. Error: spawn /nope ENOENT");
  };
  const api = await start({ "fimble.serverPath": "/nope" });
  assert.equal(api.client, undefined);
  assert.equal(lc.instances.length, 1);
  assert.match(statusItem().text, /error/);
  assert.match(String(statusItem().tooltip), /ENOENT/);
  assert.match(String(statusItem().tooltip), /Retrying in 2 s/);
  const errors = mock.recorded.messages.filter((m) => m.level === "error");
  assert.equal(errors.length, 1);
  // Commands that need the server say so instead of failing.
  editor(["x"], new vscode.Selection(0, 0, 0, 0));
  await vscode.commands.executeCommand("fimble.explainSelection");
  assert.ok(mock.recorded.messages.some((m) => m.level === "warning" && /not running/.test(m.text)));
});

test("the library's own error notifications are silenced (the status bar reports)", async () => {
  await start();
  const client = latestClient() as any;
  let seen: unknown[] = [];
  const proto = Object.getPrototypeOf(Object.getPrototypeOf(client));
  const original = proto.error;
  proto.error = function (...args: unknown[]) {
    seen = args;
  };
  try {
    client.error("couldn't create connection", undefined, "force");
  } finally {
    proto.error = original;
  }
  assert.deepEqual(seen, ["couldn't create connection", undefined, false]);
});

// ---- workspace trust ----

function inWorkspace(folder = "/ws"): void {
  (vscode.workspace as any).workspaceFolders = [{ uri: vscode.Uri.file(folder) }];
}

async function pullConfiguration(client: lc.LanguageClient, sections: (string | undefined)[]): Promise<any[]> {
  const mw = client.clientOptions.middleware;
  // What the library would answer by itself: the raw merged section, workspace settings included.
  const raw = (section: string | undefined) => (section?.startsWith("fimble") ? { workspaceTrusted: true, url: "http://evil" } : {});
  return mw.workspace.configuration({ items: sections.map((section) => ({ section })) }, {}, () => sections.map(raw));
}

test("the server never runs in a workspace folder: its working directory is the extension's", async () => {
  inWorkspace();
  await start();
  assert.equal(latestClient().serverOptions.options.cwd, extDir);
});

test("Restricted Mode: workspaceTrusted false in initializationOptions, every configuration answer and change", async () => {
  inWorkspace();
  mock.setTrusted(false);
  mock.setWorkspaceSettings({ "fimble.workspaceTrusted": true, "fimble.maxTokens": 20 });
  await start({ "fimble.fixCheckers": [["pytest", "-x"]] });
  const client = latestClient();
  const init = client.clientOptions.initializationOptions;
  assert.equal(init.workspaceTrusted, false);
  assert.deepEqual(init.fixCheckers, [], "checkers run the workspace's code: none in Restricted Mode");
  const answers = await pullConfiguration(client, ["fimble", "fimble.workspaceTrusted", "editor"]);
  assert.equal(answers[0].workspaceTrusted, false);
  assert.equal(answers[0].url, "", "the raw section (with workspace values) is never passed on");
  assert.equal(answers[0].maxTokens, 20);
  assert.equal(answers[1], false);
  assert.deepEqual(answers[2], {});
  mock.changeSettings({ "fimble.maxTokens": 30 });
  await flush();
  const sent = client.sentNotifications.filter((n) => n.method === "workspace/didChangeConfiguration");
  assert.equal(sent.length, 1);
  assert.equal(sent[0].params.settings.fimble.workspaceTrusted, false);
});

test("a trusted workspace sends workspaceTrusted true", async () => {
  inWorkspace();
  await start();
  const client = latestClient();
  assert.equal(client.clientOptions.initializationOptions.workspaceTrusted, true);
  assert.equal((await pullConfiguration(client, ["fimble"]))[0].workspaceTrusted, true);
});

test("a workspace value of a machine-scoped setting is ignored, trusted or not", async () => {
  inWorkspace();
  mock.setWorkspaceSettings({
    "fimble.serverPath": "/ws/evil-fimble",
    "fimble.pythonPath": "/ws/evil-python",
    "fimble.serverArgs": ["--evil"],
    "fimble.model": "/ws/evil.gguf",
    "fimble.url": "http://evil.example",
    "fimble.backend": "openai",
    "fimble.fixCheckers": [["sh", "-c", "evil"]],
  });
  await start({ "fimble.model": "/m/mine.gguf" });
  const client = latestClient();
  assert.equal(client.serverOptions.command, "/venv/bin/fimble");
  assert.deepEqual(client.serverOptions.args, ["serve"]);
  const init = client.clientOptions.initializationOptions;
  assert.equal(init.model, "/m/mine.gguf");
  assert.equal(init.url, "");
  assert.equal(init.backend, "llama.cpp");
  assert.deepEqual(init.fixCheckers, []);
});

test("the interpreter never comes from workspace settings; the Python extension's only in a trusted workspace", async () => {
  inWorkspace();
  mock.setWorkspaceSettings({ "python.defaultInterpreterPath": "/ws/.venv/bin/python" });
  withFimble.add("/ws/.venv/bin/python");
  await start({ "fimble.serverPath": "" });
  assert.equal(lc.instances.length, 0, "not the workspace's python.defaultInterpreterPath");
  assert.ok(!probed.includes("/ws/.venv/bin/python"), "not even asked");
  for (const d of context.subscriptions) {
    await d.dispose();
  }
  mock.reset();
  lc.resetClients();

  // The user's own python.defaultInterpreterPath does count, when it has fimble.
  inWorkspace();
  withFimble.add("/usr/bin/python3.12");
  await start({ "fimble.serverPath": "", "python.defaultInterpreterPath": "/usr/bin/python3.12" });
  let client = latestClient();
  assert.deepEqual([client.serverOptions.command, ...client.serverOptions.args], ["/usr/bin/python3.12", "-m", "fimble", "serve"]);
  for (const d of context.subscriptions) {
    await d.dispose();
  }
  mock.reset();
  lc.resetClients();

  // The Python extension's interpreter (a workspace can select one): not in Restricted Mode.
  inWorkspace();
  mock.setTrusted(false);
  mock.setPythonExtension("/ws/.venv/bin/python");
  const fimbleOnPath = onPath("fimble");
  await start({ "fimble.serverPath": "" });
  client = latestClient();
  assert.equal(client.serverOptions.command, fimbleOnPath);
  assert.deepEqual(client.serverOptions.args, ["serve"]);
  assert.ok(!probed.includes("/ws/.venv/bin/python"));
});

test("trust granted: the server restarts with workspaceTrusted true and the trusted interpreter", async () => {
  inWorkspace();
  mock.setTrusted(false);
  mock.setPythonExtension("/ws/.venv/bin/python");
  withFimble.add("/ws/.venv/bin/python");
  onPath("fimble");
  await start({ "fimble.serverPath": "" });
  const first = latestClient();
  assert.equal(first.clientOptions.initializationOptions.workspaceTrusted, false);
  mock.grantTrust();
  await flush();
  assert.equal(first.disposed, true);
  const second = latestClient();
  assert.notEqual(second, first);
  assert.equal(second.clientOptions.initializationOptions.workspaceTrusted, true);
  assert.deepEqual([second.serverOptions.command, ...second.serverOptions.args], ["/ws/.venv/bin/python", "-m", "fimble", "serve"]);
  assert.ok(mock.recorded.outputLines.some((l) => /trusted now: restarting/.test(l)));
});

test("Restricted Mode: a program or model inside the workspace is not used, and the user is told once", async () => {
  inWorkspace();
  mock.setTrusted(false);
  await start({
    "fimble.serverPath": "${workspaceFolder}/.venv/bin/fimble",
    "fimble.pythonPath": "/usr/bin/python3",
    "fimble.model": "${workspaceFolder}/models/m.gguf",
  });
  const client = latestClient();
  assert.equal(client.serverOptions.command, "/usr/bin/python3");
  assert.equal(client.clientOptions.initializationOptions.model, "");
  assert.ok(mock.recorded.outputLines.some((l) => /not starting fimble\.serverPath \(\/ws\/\.venv\/bin\/fimble\)/.test(l)));
  await pullConfiguration(client, ["fimble"]);
  await pullConfiguration(client, ["fimble"]);
  const warnings = mock.recorded.messages.filter((m) => m.level === "warning" && /fimble\.model/.test(m.text));
  assert.equal(warnings.length, 1, JSON.stringify(mock.recorded.messages));
  assert.match(warnings[0].text, /Restricted Mode: not loading fimble\.model \(\/ws\/models\/m\.gguf\).*Trust the workspace/);
  assert.deepEqual(warnings[0].items, ["Manage Workspace Trust"]);
});

// ---- installing the server (issue #18) ----

const INSTALL_STEPS: InstallEvent[] = [
  { event: "step", step: "venv", title: "Creating the virtual environment", percent: 0 },
  { event: "log", text: "$ python -I -m venv /store/server/venv-new" },
  { event: "step", step: "packages", title: "Getting the packages", percent: 8 },
  { event: "progress", step: "packages", message: "pygls-2.1.1-py3-none-any.whl" },
  { event: "step", step: "install", title: "Installing the packages", percent: 75 },
  { event: "step", step: "verify", title: "Checking the server", percent: 87 },
  { event: "step", step: "model", title: "Preparing the default model", percent: 92 },
];

const offers = () => mock.recorded.messages.filter((m) => /server is not installed\. Install it now\?/.test(m.text));
const errorsShown = () => mock.recorded.messages.filter((m) => m.level === "error");

test("no server anywhere: the install is offered once, and nothing happens without consent", async () => {
  onPath("python3");
  await start({ "fimble.serverPath": "" });
  assert.equal(lc.instances.length, 0);
  assert.equal(offers().length, 1);
  assert.deepEqual(offers()[0].items, ["Install", "Not now"]);
  assert.equal(installs.length, 0, "no consent, no install");
  assert.equal(statusItem().text, "$(cloud-download) fimble: install");
  assert.equal(statusItem().command, "fimble.installServer");
  // A restart finds nothing again: no second prompt (the status bar still offers it).
  await vscode.commands.executeCommand("fimble.restartServer");
  await flush();
  assert.equal(offers().length, 1);
});

test("accepting installs with named steps and a cancel button, logs everything, then starts the installed server", async () => {
  inWorkspace();
  const python3 = onPath("python3");
  installer = succeeding("venv-new", INSTALL_STEPS);
  mock.answerMessagesWith("Install");
  await start({ "fimble.serverPath": "", "fimble.serverArgs": ["--log-level", "DEBUG"] });
  await flush();
  assert.equal(installs.length, 1);
  const run = installs[0];
  const root = path.join(storage, "server");
  assert.equal(run.python, python3, "the probed interpreter's own executable");
  assert.equal(run.cwd, root, "never a workspace folder");
  assert.deepEqual(run.args, ["install", "--root", root, "--source", path.join(extDir, "bundled", BUNDLED.wheel)]);
  assert.equal(run.script, path.join(extDir, "bundled", "fimble_install.py"));
  const progress = mock.recorded.progress[0];
  assert.equal(progress.title, "fimble: installing the server");
  assert.equal(progress.cancellable, true);
  assert.deepEqual(
    progress.reports.map((r) => r.message),
    [
      "Creating the virtual environment…",
      "Getting the packages…",
      "Getting the packages — pygls-2.1.1-py3-none-any.whl",
      "Installing the packages…",
      "Checking the server…",
      "Preparing the default model…",
    ],
  );
  assert.ok(mock.recorded.outputLines.some((l) => l.includes("[install] $ python -I -m venv")), "the full log");
  const client = latestClient();
  assert.deepEqual(
    [client.serverOptions.command, ...client.serverOptions.args],
    [path.join(root, "venv-new", "bin", "python"), "-I", "-u", "-m", "fimble", "serve", "--log-level", "DEBUG"],
  );
  assert.equal(client.serverOptions.options.cwd, extDir);
  assert.ok(mock.recorded.messages.some((m) => /server is installed \(fimble 0\.1\.0, 42 s\)/.test(m.text)));
  assert.equal(errorsShown().length, 0);
});

test("no usable Python: one clear error with Retry, which installs once Python is there", async () => {
  onPath("python3");
  let pythonIsNew = false;
  probeAnswers = (candidate) => ({ candidate, version: pythonIsNew ? [3, 12, 0] : [3, 9, 2], executable: candidate.command });
  mock.answerMessagesWith((text, items) => {
    if (items.includes("Install")) {
      return "Install";
    }
    if (items.includes("Retry") && !pythonIsNew) {
      pythonIsNew = true; // the user installs a newer Python, then clicks Retry
      return "Retry";
    }
    return undefined;
  });
  await start({ "fimble.serverPath": "" });
  await flush();
  const errors = errorsShown();
  assert.equal(errors.length, 1);
  assert.match(errors[0].text, /needs Python 3\.11 or newer, and fimble found only .*python3 is 3\.9\.2/);
  assert.deepEqual(errors[0].items, ["Retry", "Show Log"]);
  assert.equal(installs.length, 1, "Retry installed with the new Python");
  assert.equal(latestClient().serverOptions.args[2], "-m");
});

test("pip failing: one message naming the fix, the status bar offers the retry; a cancel keeps nothing", async () => {
  onPath("python3");
  installer = async (options) => {
    options.onEvent({ event: "step", step: "packages", title: "Getting the packages", percent: 8 });
    const message = "pip could not reach the package index (Connection refused) to get pygls. Check the network ...";
    options.onEvent({ event: "error", code: "network", message });
    return { kind: "error", code: "network", message };
  };
  mock.answerMessagesWith("Install");
  await start({ "fimble.serverPath": "" });
  await flush();
  const errors = errorsShown();
  assert.equal(errors.length, 1);
  assert.match(errors[0].text, /^fimble: pip could not reach the package index/);
  assert.deepEqual(errors[0].items, ["Retry", "Show Log"]);
  assert.equal(statusItem().command, "fimble.installServer");
  assert.match(String(statusItem().tooltip), /The install failed: pip could not reach/);
  assert.equal(lc.instances.length, 0, "nothing half-installed is used");

  // Cancelling: the installer is told, and the user hears that nothing was kept.
  let cancelled = 0;
  processes.runInstaller = (options) => {
    installs.push(options);
    let finish: (o: Outcome) => void = () => undefined;
    const done = new Promise<Outcome>((resolve) => (finish = resolve));
    return {
      done,
      cancel: () => {
        cancelled++;
        finish({ kind: "cancelled" });
      },
    };
  };
  mock.answerMessagesWith(undefined);
  const running = vscode.commands.executeCommand("fimble.installServer");
  await flush();
  mock.cancelProgress();
  await running;
  assert.equal(cancelled, 1);
  assert.ok(mock.recorded.messages.some((m) => /install was cancelled; nothing of it was kept/.test(m.text)));
  assert.equal(lc.instances.length, 0);
});

test("Restricted Mode: the install is never offered or run, and the user is told why", async () => {
  inWorkspace();
  mock.setTrusted(false);
  onPath("python3");
  mock.answerMessagesWith("Install");
  await start({ "fimble.serverPath": "" });
  await vscode.commands.executeCommand("fimble.installServer");
  await flush();
  assert.equal(offers().length, 0);
  assert.equal(installs.length, 0);
  assert.deepEqual(probed, [], "not even a Python is run");
  const warnings = mock.recorded.messages.filter((m) => m.level === "warning" && /Restricted Mode/.test(m.text));
  assert.ok(warnings.length >= 1);
  assert.deepEqual(warnings[0].items, ["Manage Workspace Trust"]);
  assert.match(String(statusItem().tooltip), /needs a trusted workspace/);
});

test("an extension update reinstalls once; the old install serves until the new one is up, then goes", async () => {
  const oldPython = writeInstall("venv-old", "sha256:older");
  onPath("python3");
  installer = succeeding("venv-new", INSTALL_STEPS);
  await start({ "fimble.serverPath": "" });
  await flush();
  assert.equal(installs.length, 1, "the update ran by itself, once");
  assert.equal(mock.recorded.progress[0].title, "fimble: updating the server");
  assert.equal(lc.instances[0].serverOptions.command, oldPython, "the old install served meanwhile");
  const client = latestClient();
  const root = path.join(storage, "server");
  assert.equal(client.serverOptions.command, path.join(root, "venv-new", "bin", "python"));
  assert.ok(fs.existsSync(path.join(root, "venv-old")), "kept until the new server is up");
  client.notify("fimble/status", { state: "ready", message: "ready" });
  assert.ok(!fs.existsSync(path.join(root, "venv-old")), "removed once it is");
  assert.ok(fs.existsSync(path.join(root, "venv-new")));
});

test("a failed update is not retried at every start, and the old install keeps serving", async () => {
  const oldPython = writeInstall("venv-old", "sha256:older");
  onPath("python3");
  installer = async () => ({ kind: "error", code: "pip-failed", message: "pip failed (exit code 1): boom." });
  await start({ "fimble.serverPath": "" });
  await flush();
  assert.equal(installs.length, 1);
  assert.match(errorsShown()[0].text, /updating the server failed \(the installed one keeps running\): pip failed/);
  assert.equal(latestClient().serverOptions.command, oldPython);
  for (const d of context.subscriptions) {
    await d.dispose();
  }
  mock.reset();
  lc.resetClients();
  await start({ "fimble.serverPath": "" });
  await flush();
  assert.equal(installs.length, 1, "tried once for this extension version");
  assert.equal(latestClient().serverOptions.command, oldPython);
});

test("removing the installed server stops it and deletes its folder", async () => {
  writeInstall("venv-1", `sha256:${BUNDLED.sha256}`);
  mock.answerMessagesWith("Remove");
  await start({ "fimble.serverPath": "" });
  assert.equal(lc.instances.length, 1);
  await vscode.commands.executeCommand("fimble.removeServer");
  await flush();
  assert.ok(!fs.existsSync(path.join(storage, "server")));
  assert.equal(lc.instances[0].disposed, true);
  assert.equal(statusItem().command, "fimble.installServer");
});
