import * as assert from "node:assert/strict";
import { beforeEach, test } from "node:test";
import * as vscode from "vscode";
import { INSTALL_COMMAND, MENU_COMMAND, SHOW_LOG_COMMAND, StatusBar, progressOf, renderStatus } from "../src/status";
// eslint-disable-next-line @typescript-eslint/no-require-imports
const mock = require("vscode") as typeof import("./mock/vscode");

beforeEach(() => mock.reset());

test("progressOf finds a percentage", () => {
  assert.equal(progressOf("loading model 41.6%"), "42%");
  assert.equal(progressOf("loading"), undefined);
});

test("renderStatus: each state", () => {
  const base = { message: "", enabled: true };
  const loading = renderStatus({ ...base, state: "loading", message: "fimble: loading model 40%" });
  assert.match(loading.text, /loading~spin.*loading 40%/);
  const ready = renderStatus({ ...base, state: "ready", message: "ready", latencyMs: 123.4, tokensPerSecond: 45.6 });
  assert.equal(ready.text, "$(check) fimble 123 ms · 46 tok/s");
  assert.equal(ready.command, MENU_COMMAND);
  const slow = renderStatus({ ...base, state: "ready", tokensPerSecond: 2.345 });
  assert.match(slow.text, /2\.3 tok\/s/);
  const gen = renderStatus({ ...base, state: "generating", latencyMs: 10 });
  assert.match(gen.text, /sync~spin/);
  const err = renderStatus({ ...base, state: "error", message: "model.gguf: not a GGUF file", model: "/m/model.gguf" });
  assert.equal(err.command, SHOW_LOG_COMMAND);
  assert.equal(err.error, true);
  assert.match(err.tooltip, /not a GGUF file/);
  assert.match(err.tooltip, /Model: model\.gguf/);
  const off = renderStatus({ ...base, state: "ready", enabled: false });
  assert.match(off.text, /^\$\(circle-slash\)/);
  assert.match(off.tooltip, /disabled/);
});

test("StatusBar applies fimble/status notifications to its item", () => {
  const bar = new StatusBar();
  const item = mock.recorded.statusBarItems[0];
  assert.equal(item.visible, true);
  assert.match(item.text, /fimble/);
  bar.update({ state: "loading", message: "loading 10%" });
  assert.match(item.text, /10%/);
  bar.update({ state: "ready", message: "ready", model: "/x/tiny.gguf", latencyMs: 80, tokensPerSecond: 12 });
  assert.equal(item.text, "$(check) fimble 80 ms · 12 tok/s");
  assert.equal(item.backgroundColor, undefined);
  bar.update({ state: "generating", message: "" });
  assert.match(item.text, /80 ms/); // keeps the last numbers
  bar.update({ state: "error", message: "cannot load", model: "/x/tiny.gguf" });
  assert.ok((item.backgroundColor as unknown) instanceof vscode.ThemeColor);
  assert.equal((item.backgroundColor as unknown as { id: string }).id, "statusBarItem.errorBackground");
  assert.equal(item.command, SHOW_LOG_COMMAND);
  assert.match(String(item.tooltip), /Model: tiny\.gguf/);
  // A new server or a failed load without a model name: the old name is not shown.
  bar.update({ state: "error", message: "cannot load /x/bad.gguf" });
  assert.doesNotMatch(String(item.tooltip), /Model:/);
  assert.match(item.text, /error/);
  bar.dispose();
  assert.equal(item.visible, false);
});

test("renderStatus: not installed offers the install; installing shows the progress and the log", () => {
  const base = { message: "", enabled: true };
  const missing = renderStatus({ ...base, state: "notInstalled", message: "The install failed: pip failed." });
  assert.equal(missing.text, "$(cloud-download) fimble: install");
  assert.equal(missing.command, INSTALL_COMMAND);
  assert.equal(missing.warning, true);
  assert.match(missing.tooltip, /The install failed: pip failed\.\nClick to install it\./);
  const installing = renderStatus({ ...base, state: "installing", message: "34% — Compiling llama.cpp — 25%" });
  assert.equal(installing.text, "$(sync~spin) fimble: installing 34%");
  assert.equal(installing.command, SHOW_LOG_COMMAND);
});
