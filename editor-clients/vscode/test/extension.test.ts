/* eslint-disable @typescript-eslint/no-explicit-any */
/** activate() against the mocked `vscode` and `vscode-languageclient/node` modules. */
import * as assert from "node:assert/strict";
import * as fs from "node:fs";
import * as path from "node:path";
import { afterEach, beforeEach, test } from "node:test";
import * as vscode from "vscode";
import { activate } from "../src/extension";
import * as lc from "./mock/languageclient";
// eslint-disable-next-line @typescript-eslint/no-require-imports
const mock = require("vscode") as typeof import("./mock/vscode");

const manifest = JSON.parse(fs.readFileSync(path.join(__dirname, "..", "..", "package.json"), "utf8"));

let context: { subscriptions: { dispose(): unknown }[]; extensionUri: vscode.Uri };

async function flush(): Promise<void> {
  for (let i = 0; i < 20; i++) {
    await new Promise((r) => setImmediate(r));
  }
}

async function start(settings: Record<string, unknown> = {}) {
  mock.setSettings({ "fimble.serverPath": "/venv/bin/fimble", ...settings });
  context = { subscriptions: [], extensionUri: vscode.Uri.file("/ext") };
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
});

afterEach(async () => {
  for (const d of context?.subscriptions ?? []) {
    await d.dispose();
  }
  await flush();
});

test("activation registers every contributed command and starts `fimble serve` with the settings", async () => {
  const api = await start({ "fimble.maxTokens": 32, "fimble.model": "/m/tiny.gguf" });
  for (const c of manifest.contributes.commands) {
    assert.ok(mock.recorded.commands.has(c.command), `command ${c.command} is registered`);
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
  assert.equal(mw.provideInlineCompletionItems({ languageId: "plaintext", uri: vscode.Uri.file("/a.txt") }, pos, {}, {}, next), undefined);
  assert.deepEqual(mw.provideInlineCompletionItems({ languageId: "python", uri: vscode.Uri.file("/a.py") }, pos, {}, {}, next), {
    items: [{ insertText: "x" }],
  });
  assert.equal(calls, 1);
  await vscode.commands.executeCommand("fimble.disable");
  assert.deepEqual(mock.recorded.configUpdates[0], { key: "fimble.enable", value: false, target: vscode.ConfigurationTarget.Global });
  assert.match(statusItem().text, /circle-slash/);
  assert.equal(mw.provideInlineCompletionItems({ languageId: "python", uri: vscode.Uri.file("/a.py") }, pos, {}, {}, next), undefined);
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
  assert.equal(latestClient().serverOptions.options.cwd, "/ext");
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
  await start({ "fimble.serverPath": "" });
  let client = latestClient();
  assert.equal(client.serverOptions.command, "fimble", "not the workspace's python.defaultInterpreterPath");
  assert.equal(client.serverOptions.args[0], "serve");
  for (const d of context.subscriptions) {
    await d.dispose();
  }
  mock.reset();
  lc.resetClients();

  // The user's own python.defaultInterpreterPath does count.
  inWorkspace();
  await start({ "fimble.serverPath": "", "python.defaultInterpreterPath": "/usr/bin/python3.12" });
  client = latestClient();
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
  await start({ "fimble.serverPath": "" });
  client = latestClient();
  assert.notEqual(client.serverOptions.command, "/ws/.venv/bin/python");
  assert.ok(!String(client.serverOptions.command).startsWith("/ws/"));
  assert.equal(client.serverOptions.args[client.serverOptions.args.length - 1], "serve");
});

test("trust granted: the server restarts with workspaceTrusted true and the trusted interpreter", async () => {
  inWorkspace();
  mock.setTrusted(false);
  mock.setPythonExtension("/ws/.venv/bin/python");
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
