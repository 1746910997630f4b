#!/usr/bin/env node
// Drives a running code-server with Debian's chromium through playwright-core:
// open a file, type, wait for fimble's ghost text, accept it with Tab, save, run "fimble: Explain selection".
// Started by tests/editors/test_vscode_e2e.py; writes what it saw as JSON to $FIMBLE_E2E_RESULT.
//
// Environment:
//   FIMBLE_E2E_URL          code-server URL with ?folder=...
//   FIMBLE_E2E_FILE         the file to open (a name in the folder)
//   FIMBLE_E2E_TYPE         the text to type at the end of the file
//   FIMBLE_E2E_RESULT       where to write the JSON result
//   FIMBLE_E2E_PROFILE      a fresh chromium --user-data-dir
//   FIMBLE_E2E_NODE_MODULES folder holding playwright-core (editor-clients/vscode/node_modules)
//   FIMBLE_CHROMIUM         chromium binary (default /usr/bin/chromium)
//   FIMBLE_SCREENSHOT_DIR   if set, screenshots go there (the ghost text, and the last state on failure)
//   FIMBLE_E2E_TIMEOUT_MS   patience for each wait (default 120000)
//   FIMBLE_E2E_BAD_MODEL    if set (a file that is not a GGUF model), the driver also checks bad input through the
//                           Settings editor: a missing server binary, then that model, then the recovery to
//   FIMBLE_E2E_SERVER_PATH  the good fimble.serverPath and
//   FIMBLE_E2E_MODEL        the good fimble.model
//   FIMBLE_E2E_SETTINGS     the user settings.json, read to know when the Settings editor has saved a change
//   FIMBLE_E2E_MACHINE_SETTINGS  the remote (machine) settings.json, where machine-scoped settings are saved: a
//                           code-server window is a remote window, so its Settings editor offers them in the
//                           "Remote" tab only
//   FIMBLE_E2E_MODE         "docs": the pictures for the READMEs (see docsFlow), and nothing else; it also needs
//   FIMBLE_E2E_LINE         the line (1-based) at whose end FIMBLE_E2E_TYPE is typed, and
//   FIMBLE_E2E_FIX_FILE     a file with an error on FIMBLE_E2E_FIX_LINE, for "fimble: Fix at cursor"
//                           "install": first the install from the editor (see installFlow), then the ghost text,
//                           and nothing else; it also needs
//   FIMBLE_E2E_PYTHON       a Python 3.11+ that the driver links as
//   FIMBLE_E2E_PYTHON_LINK  python3 in the (until then Python-less) PATH folder of code-server, and
//   FIMBLE_E2E_PIP_CONF     the user's pip.conf (pointing at an unreachable index at first), rewritten with
//   FIMBLE_E2E_GOOD_PIP_CONF  the content that points pip at a local wheel folder
"use strict";

const fs = require("fs");
const path = require("path");
const { createRequire } = require("module");

const env = process.env;
const nodeModules = env.FIMBLE_E2E_NODE_MODULES || path.join(__dirname, "..", "..", "..", "editor-clients", "vscode", "node_modules");
const { chromium } = createRequire(path.join(nodeModules, "noop.js"))("playwright-core");
// The extension's manifest: which settings are machine-scoped.
const MANIFEST = path.join(__dirname, "..", "..", "..", "editor-clients", "vscode", "package.json");
const SETTING_SCOPES = Object.fromEntries(
  Object.entries(JSON.parse(fs.readFileSync(MANIFEST, "utf8")).contributes.configuration.properties).map(
    ([key, schema]) => [key, schema.scope || "window"],
  ),
);

const URL_ = env.FIMBLE_E2E_URL;
const FILE = env.FIMBLE_E2E_FILE || "main.py";
const TYPE = env.FIMBLE_E2E_TYPE || "return a";
const RESULT = env.FIMBLE_E2E_RESULT || path.join(process.cwd(), "vscode-e2e-result.json");
const PROFILE = env.FIMBLE_E2E_PROFILE || fs.mkdtempSync("/tmp/fimble-chromium-");
const SHOTS = env.FIMBLE_SCREENSHOT_DIR || "";
const T = Number(env.FIMBLE_E2E_TIMEOUT_MS || 120000);

const result = { steps: [], console: [], ok: false };
const t0 = Date.now();
function step(name, extra) {
  const entry = { name, t: (Date.now() - t0) / 1000, ...(extra || {}) };
  result.steps.push(entry);
  process.stderr.write(`[drive ${entry.t.toFixed(1)}s] ${name}${extra ? " " + JSON.stringify(extra) : ""}\n`);
}
function save() {
  fs.writeFileSync(RESULT, JSON.stringify(result, null, 2));
}

// The editor group that has the focus (the explanation and the prompt open beside it).
const ACTIVE = ".editor-group-container.active";
// The extension's status bar item: id `<extension id>.<item id>`.
const STATUS_ITEM = '[id="fimble.fimble.fimble.status"]';

async function statusText(page) {
  const item = page.locator(STATUS_ITEM).first();
  if ((await item.count()) === 0) {
    return { text: "", label: "" };
  }
  const text = (await item.innerText().catch(() => "")).trim();
  const label =
    (await item.getAttribute("aria-label").catch(() => null)) ||
    (await item.locator("[aria-label]").first().getAttribute("aria-label").catch(() => null)) ||
    "";
  return { text, label };
}

async function waitForStatus(page, re, timeout, extra) {
  const end = Date.now() + timeout;
  let last = { text: "", label: "" };
  while (Date.now() < end) {
    last = await statusText(page);
    if (re.test(last.label) && (!extra || extra(last))) {
      return last;
    }
    await page.waitForTimeout(250);
  }
  throw new Error(`status bar never matched ${re}; last: ${JSON.stringify(last)}`);
}

async function openCommandPalette(page) {
  const input = page.locator(".quick-input-widget input").first();
  const ways = [
    () => page.keyboard.press("F1"),
    () => page.keyboard.press("Control+Shift+P"),
    () => page.locator(".command-center .action-label, .command-center-center").first().click(),
  ];
  for (let attempt = 0; ; attempt++) {
    await ways[attempt % ways.length]();
    try {
      await input.waitFor({ state: "visible", timeout: attempt < 5 ? 5000 : T });
      return input;
    } catch (error) {
      if (attempt >= 5) {
        throw error;
      }
      step("command palette did not open; again");
      await page.keyboard.press("Escape");
    }
  }
}

async function runCommand(page, title) {
  for (let attempt = 1; ; attempt++) {
    try {
      const input = await openCommandPalette(page);
      await input.fill(">" + title, { timeout: 10000 });
      const row = page.locator(".quick-input-list .monaco-list-row", { hasText: title }).first();
      await row.waitFor({ state: "visible", timeout: attempt < 4 ? 10000 : T });
      await page.keyboard.press("Enter");
      return;
    } catch (error) {
      if (attempt >= 4) {
        throw error;
      }
      // The palette lost the focus (a notification, an editor opening): close it and try again.
      step("command palette closed before the command ran; again", { title });
      await page.keyboard.press("Escape");
    }
  }
}

async function ghostText(page) {
  return page.evaluate(() => {
    const parts = [];
    for (const el of document.querySelectorAll(".monaco-editor .ghost-text-decoration, .monaco-editor .ghost-text")) {
      const s = el.textContent || "";
      if (s) {
        parts.push(s);
      }
    }
    return parts.join("\n");
  });
}

/** The visible text of the active editor, ghost text excluded. */
async function editorText(page) {
  return page.evaluate(() => {
    const root = document.querySelector(".editor-group-container.active .monaco-editor .view-lines");
    if (!root) {
      return "";
    }
    const lines = [...root.querySelectorAll(".view-line")];
    lines.sort((a, b) => parseFloat(a.style.top) - parseFloat(b.style.top));
    return lines
      .map((line) => {
        const copy = line.cloneNode(true);
        copy.querySelectorAll('[class*="ghost-text"]').forEach((g) => g.remove());
        return (copy.textContent || "").replace(/\u00a0/g, " ");
      })
      .join("\n");
  });
}

async function findExplanation(page) {
  for (const frame of page.frames()) {
    try {
      const el = await frame.$("#fimble-explanation");
      if (el) {
        const text = (await el.innerText()).trim();
        const state = ((await frame.$eval("#fimble-state", (s) => s.textContent).catch(() => "")) || "").trim();
        const html = await el.innerHTML();
        return { text, state, html };
      }
    } catch {
      // frame navigated away
    }
  }
  return undefined;
}

/** A syntax error, fimble's diagnostic for it, then "fimble: Fix at cursor": the fix loop must answer. */
async function fixAtCursor(page, editor) {
  await page.keyboard.press("Escape");
  await focusFile(page, editor);
  await page.keyboard.press("Control+End");
  await page.keyboard.press("Enter");
  await page.keyboard.type("x = 1 +", { delay: 30 });
  await editor.locator(".squiggly-error").first().waitFor({ state: "visible", timeout: T });
  step("syntax error flagged");
  const before = await editorText(page);
  await runCommand(page, "fimble: Fix at cursor");
  const end = Date.now() + T;
  let outcome;
  while (Date.now() < end && !outcome) {
    const picker = page.locator(".quick-input-widget", { hasText: "Fix with fimble" });
    if (await picker.isVisible().catch(() => false)) {
      await page.keyboard.press("Enter");
    }
    const messages = await page.evaluate(() =>
      [...document.querySelectorAll(".notifications-toasts .notification-list-item-message, .statusbar-item")]
        .map((e) => (e.textContent || "").trim())
        .filter((t) => /fimble fix:|no verified fix|no fix here|unverified/i.test(t)),
    );
    if (messages.length) {
      outcome = { messages };
    } else if ((await editorText(page)) !== before) {
      outcome = { edited: true };
    } else {
      await page.waitForTimeout(500);
    }
  }
  result.fix = { ...(outcome || { timedOut: true }), editor: await editorText(page) };
  step("fix at cursor", result.fix);
  if (SHOTS) {
    await page.screenshot({ path: path.join(SHOTS, "vscode-fix.png") });
  }
}

/** "fimble: Show the last prompt (debug)" opens a Markdown document with the prompt beside the editor. */
async function showLastPrompt(page) {
  await page.keyboard.press("Escape");
  await runCommand(page, "fimble: Show the last prompt (debug)");
  const doc = page.locator(".monaco-editor .view-lines", { hasText: "fimble prompt" }).first();
  await doc.waitFor({ state: "visible", timeout: T });
  result.prompt = (await doc.innerText()).replace(/\u00a0/g, " ").slice(0, 2000);
  step("last prompt shown");
}

async function openSettingsUi(page) {
  await page.keyboard.press("Escape");
  await runCommand(page, "Preferences: Open Settings (UI)");
  await page.locator(`${ACTIVE} .settings-editor`).first().waitFor({ state: "visible", timeout: T });
}

/** Changes a string setting the way a person does: in the Settings editor (a machine-scoped one in its Remote tab). */
async function setSetting(page, key, value) {
  const machine = SETTING_SCOPES[key] === "machine";
  const settingsFile = machine ? env.FIMBLE_E2E_MACHINE_SETTINGS : env.FIMBLE_E2E_SETTINGS;
  const input = page
    .locator(`${ACTIVE} .settings-editor .setting-item-contents[data-key="${key}"] .setting-item-control input`)
    .first();
  for (let attempt = 1; ; attempt++) {
    // Opening the Settings editor (again) puts the focus in its search box.
    await openSettingsUi(page);
    await page.keyboard.press("Control+A");
    await page.keyboard.type(`@id:${key}`, { delay: 10 });
    if (machine) {
      await page.locator(`${ACTIVE} .settings-editor .settings-tabs-widget .action-label`, { hasText: "Remote" }).first().click();
    }
    try {
      await input.waitFor({ state: "visible", timeout: 15000 });
      break;
    } catch (error) {
      if (attempt >= 4) {
        throw error;
      }
      step("settings search missed; again", { key });
    }
  }
  await input.fill(value);
  await input.press("Tab");
  // The Settings editor writes after a pause: wait for the file before the row goes away.
  if (settingsFile) {
    const end = Date.now() + T;
    for (;;) {
      let current;
      try {
        current = JSON.parse(fs.readFileSync(settingsFile, "utf8"))[key];
      } catch {
        current = undefined; // being written
      }
      if (current === value) {
        break;
      }
      if (Date.now() > end) {
        throw new Error(`${key} was not saved as ${value} (it is ${current})`);
      }
      await page.waitForTimeout(200);
    }
  }
  step("setting changed", { key, value, target: machine ? "remote" : "user" });
}

async function focusFile(page, editor) {
  await page.locator(".tab", { hasText: FILE }).first().click();
  await editor.locator(".view-lines").click();
}

async function toastTexts(page) {
  return page.evaluate(() =>
    [...document.querySelectorAll(".notifications-toasts .notification-list-item-message")].map((e) =>
      (e.textContent || "").trim().slice(0, 400),
    ),
  );
}

/** Bad input in a real VS Code: the editor must stay usable, the status bar must say what is wrong. */
async function badInput(page, editor) {
  result.badInput = {};
  const goodServer = env.FIMBLE_E2E_SERVER_PATH;
  const goodModel = env.FIMBLE_E2E_MODEL;

  // 1. The server binary does not exist: error status, a message, retries with backoff.
  await setSetting(page, "fimble.serverPath", "/nonexistent/fimble");
  const missing = await waitForStatus(page, /^fimble: error.*failed to start/s, T);
  await page.waitForTimeout(300);
  result.badInput.missingServer = { status: missing, toasts: await toastTexts(page) };
  step("missing server reported", missing);
  if (SHOTS) {
    await page.screenshot({ path: path.join(SHOTS, "vscode-missing-server.png") });
  }
  await focusFile(page, editor);
  await page.keyboard.press("Control+End");
  await page.keyboard.type("  # still typing", { delay: 30 });
  await page.waitForTimeout(300);
  result.badInput.editorWhileMissing = await editorText(page);
  step("editor responsive without a server");

  // 2. The model is not a GGUF file: the server runs but reports the error.
  await setSetting(page, "fimble.model", env.FIMBLE_E2E_BAD_MODEL);
  await setSetting(page, "fimble.serverPath", goodServer);
  const badModel = await waitForStatus(page, /^fimble: error/, T, (s) => !/failed to start|stopped unexpectedly/i.test(s.label));
  await page.waitForTimeout(500);
  result.badInput.badModel = { status: badModel, toasts: await toastTexts(page) };
  step("bad model reported", badModel);
  if (SHOTS) {
    await page.screenshot({ path: path.join(SHOTS, "vscode-bad-model.png") });
  }

  // 3. Back to the good model: ready again, without reloading the window.
  await setSetting(page, "fimble.model", goodModel);
  result.badInput.recovered = await waitForStatus(page, /^fimble: ready/, T);
  step("recovered", result.badInput.recovered);
}

/** The notification toasts on screen: their message and button labels. */
async function toasts(page) {
  return page.evaluate(() =>
    [...document.querySelectorAll(".notifications-toasts .notification-toast")].map((toast) => ({
      text: ((toast.querySelector(".notification-list-item-message") || {}).textContent || "").trim(),
      buttons: [...toast.querySelectorAll(".notification-list-item-buttons-container .monaco-button")].map((b) =>
        (b.textContent || "").trim(),
      ),
    })),
  );
}

/** Waits for a toast whose message matches `re`; `onPoll` sees every toast list on the way. */
async function waitForToast(page, re, timeout, onPoll) {
  const end = Date.now() + timeout;
  let seen = [];
  while (Date.now() < end) {
    seen = await toasts(page);
    if (onPoll) {
      onPoll(seen);
    }
    const hit = seen.find((t) => re.test(t.text));
    if (hit) {
      return hit;
    }
    await page.waitForTimeout(200);
  }
  throw new Error(`no notification matched ${re}; on screen: ${JSON.stringify(seen)}`);
}

async function clickToastButton(page, re, label) {
  const toast = page.locator(".notifications-toasts .notification-toast", { hasText: re }).first();
  await toast.hover();
  await toast.locator(".notification-list-item-buttons-container .monaco-button", { hasText: label }).first().click();
}

/**
 * The install from the editor, as a new user meets it: the offer, accepted; no Python (one error with Retry);
 * a Python but pip failing (the user's pip.conf names an index that is down: one error with Retry); the install
 * started and cancelled; then the user's pip.conf pointing at a wheel folder, and the install runs to the end,
 * its steps shown in the progress notification and the status bar.
 */
async function installFlow(page) {
  const install = (result.install = { progress: [], statusWhileInstalling: [] });
  const collect = (list) => {
    for (const t of list) {
      if (/installing the server|updating the server/i.test(t.text) && !install.progress.includes(t.text)) {
        install.progress.push(t.text);
      }
    }
  };
  const offer = await waitForToast(page, /server is not installed\. Install it now\?/, T);
  install.offer = offer;
  step("install offered", offer);
  install.statusBeforeInstall = await statusText(page);
  if (SHOTS) {
    await page.screenshot({ path: path.join(SHOTS, "vscode-install-offer.png") });
  }
  await clickToastButton(page, /Install it now/, "Install");

  const noPython = await waitForToast(page, /needs Python 3\.11 or newer/, T);
  install.noPython = noPython;
  step("no Python reported", noPython);
  fs.symlinkSync(env.FIMBLE_E2E_PYTHON, env.FIMBLE_E2E_PYTHON_LINK);
  await clickToastButton(page, /needs Python 3\.11 or newer/, "Retry");

  const pipFailed = await waitForToast(page, /pip could not reach|pip found no/, T, collect);
  install.pipFailed = pipFailed;
  install.toastsAfterPipFailure = await toasts(page);
  step("pip failure reported", pipFailed);
  if (SHOTS) {
    await page.screenshot({ path: path.join(SHOTS, "vscode-install-pip-failed.png") });
  }
  fs.writeFileSync(env.FIMBLE_E2E_PIP_CONF, env.FIMBLE_E2E_GOOD_PIP_CONF);
  await clickToastButton(page, /pip could not reach|pip found no/, "Retry");

  // Cancel the running install.
  await waitForToast(page, /installing the server/i, T, collect);
  await clickToastButton(page, /installing the server/i, "Cancel");
  const cancelled = await waitForToast(page, /install was cancelled; nothing of it was kept/, T, collect);
  install.cancelled = cancelled;
  step("install cancelled", cancelled);
  await clickToastButton(page, /install was cancelled/, "Install");

  // To the end: the progress notification names each step; the status bar shows the share done.
  const end = Date.now() + Number(env.FIMBLE_E2E_INSTALL_TIMEOUT_MS || 600000);
  let shot = false;
  for (;;) {
    collect(await toasts(page));
    const status = await statusText(page);
    if (/installing/.test(status.text) && !install.statusWhileInstalling.includes(status.text)) {
      install.statusWhileInstalling.push(status.text);
      if (SHOTS && !shot && /\d+%/.test(status.text)) {
        shot = true;
        await page.screenshot({ path: path.join(SHOTS, "vscode-installing.png") });
      }
    }
    const failed = (await toasts(page)).find((t) => /^fimble: (?!the server is)/.test(t.text) && t.buttons.includes("Retry"));
    if (failed) {
      throw new Error(`the install failed: ${failed.text}`);
    }
    if (/server is installed/.test(JSON.stringify(await toasts(page))) || /^fimble: (loading|ready)/.test(status.label)) {
      break;
    }
    if (Date.now() > end) {
      throw new Error(`the install did not finish; status ${JSON.stringify(status)}`);
    }
    await page.waitForTimeout(200);
  }
  install.done = await waitForToast(page, /server is installed/, T).catch(() => undefined);
  step("installed", { progress: install.progress, done: install.done });
}

/** Quick Open: opens `name` from the workspace and returns its editor. */
async function openFile(page, name) {
  await page.keyboard.press("Control+P");
  const quick = page.locator(".quick-input-widget input").first();
  await quick.waitFor({ state: "visible", timeout: T });
  await quick.fill(name);
  await page.locator(".quick-input-list .monaco-list-row", { hasText: name }).first().waitFor({ state: "visible", timeout: T });
  await page.keyboard.press("Enter");
  await page.locator(".tab.active", { hasText: name }).waitFor({ state: "visible", timeout: T });
  const editor = page.locator(".editor-group-container.active .monaco-editor").first();
  await editor.waitFor({ state: "visible", timeout: T });
  step("file open", { name });
  return editor;
}

/** Puts the cursor at the end of line `line` (1-based) with "Go to Line". */
async function goToLineEnd(page, line) {
  await page.keyboard.press("Control+G");
  const input = page.locator(".quick-input-widget input").first();
  await input.waitFor({ state: "visible", timeout: T });
  await input.fill(`:${line}`);
  await page.keyboard.press("Enter");
  await input.waitFor({ state: "hidden", timeout: T });
  await page.keyboard.press("End");
}

/** Takes a picture for the docs once the notifications and hovers that would cover the editor are gone. */
async function docsShot(page, name) {
  await page.mouse.move(0, 0);
  await page.waitForTimeout(300);
  fs.mkdirSync(SHOTS, { recursive: true });
  const shot = path.join(SHOTS, name);
  await page.screenshot({ path: shot });
  step("screenshot", { shot });
}

/**
 * The pictures for the READMEs, each a state a user sees: ghost text in a real file, the explanation of a function
 * beside it, and a verified fix applied (the code corrected, fimble's message saying how it was checked).
 */
async function docsFlow(page) {
  const docs = (result.docs = {});
  const editor = await openFile(page, FILE);
  result.statusBeforeTyping = await waitForStatus(page, /^fimble: ready/, T);
  await editor.locator(".view-lines").click();
  await goToLineEnd(page, Number(env.FIMBLE_E2E_LINE));
  await page.keyboard.type(TYPE, { delay: 60 });
  step("typed", { text: TYPE });
  const ghost = page.locator(".monaco-editor .ghost-text-decoration, .monaco-editor .ghost-text").first();
  try {
    await ghost.waitFor({ state: "visible", timeout: Math.min(T, 60000) });
  } catch {
    step("no ghost text yet: triggering inline suggestion");
    await runCommand(page, "Trigger Inline Suggestion");
    await ghost.waitFor({ state: "visible", timeout: T });
  }
  // The status bar shows the latency once the answer is in; the picture waits for it.
  docs.status = await waitForStatus(page, /\d+ ms/, T).catch(() => undefined);
  docs.ghostText = await ghostText(page);
  docs.editor = await editorText(page);
  step("ghost text", { ghost: docs.ghostText });
  await docsShot(page, "vscode-ghost-text.png");

  // Accept it, then explain the whole file beside it.
  await page.keyboard.press("Tab");
  await page.keyboard.press("Control+S");
  await page.locator(".tab.active.dirty").waitFor({ state: "detached", timeout: T }).catch(() => undefined);
  docs.accepted = await editorText(page);
  await page.keyboard.press("Control+A");
  await runCommand(page, "fimble: Explain selection");
  const end = Date.now() + T;
  let explanation;
  while (Date.now() < end) {
    explanation = await findExplanation(page);
    if (explanation && /done|failed/.test(explanation.state) && explanation.text) {
      break;
    }
    await page.waitForTimeout(500);
  }
  docs.explanation = explanation;
  step("explanation", explanation ? { state: explanation.state, chars: explanation.text.length } : { missing: true });
  if (!explanation || explanation.state !== "done") {
    throw new Error("the explanation did not finish: no picture of a half-written one");
  }
  await page.keyboard.press("Escape");
  await docsShot(page, "vscode-explain.png");

  // A typo flagged by fimble's diagnostic, then "fimble: Fix at cursor" on its line, alone on screen.
  await runCommand(page, "View: Close All Editors");
  const fixEditor = await openFile(page, env.FIMBLE_E2E_FIX_FILE);
  await fixEditor.locator(".squiggly-error").first().waitFor({ state: "visible", timeout: T });
  await fixEditor.locator(".view-lines").click();
  await goToLineEnd(page, Number(env.FIMBLE_E2E_FIX_LINE));
  const before = await editorText(page);
  await runCommand(page, "fimble: Fix at cursor");
  const fixEnd = Date.now() + T;
  let messages = [];
  while (Date.now() < fixEnd) {
    const picker = page.locator(".quick-input-widget", { hasText: "Fix with fimble" });
    if (await picker.isVisible().catch(() => false)) {
      await page.keyboard.press("Enter");
    }
    messages = await page.evaluate(() =>
      [...document.querySelectorAll(".notifications-toasts .notification-list-item-message, .statusbar-item")]
        .map((e) => (e.textContent || "").trim())
        .filter((t) => /fimble fix:|fimble: fix with fimble|no verified fix|no fix here/i.test(t)),
    );
    if (messages.some((m) => /fimble fix:|no verified fix|no fix here/i.test(m)) && (await editorText(page)) !== before) {
      break;
    }
    if (messages.some((m) => /no verified fix|no fix here/i.test(m))) {
      break;
    }
    await page.waitForTimeout(500);
  }
  await page.keyboard.press("Control+S");
  await page.locator(".tab.active.dirty").waitFor({ state: "detached", timeout: T }).catch(() => undefined);
  // The status bar names the checks that passed once the edit is applied: read the messages again.
  messages = await page.evaluate(() =>
    [...document.querySelectorAll(".notifications-toasts .notification-list-item-message, .statusbar-item")]
      .map((e) => (e.textContent || "").trim())
      .filter((t) => /fimble fix:|fimble: fix with fimble|no verified fix|no fix here/i.test(t)),
  );
  docs.fix = { messages, before, after: await editorText(page) };
  step("fix", docs.fix);
  await docsShot(page, "vscode-fix.png");
  result.statusAtEnd = await statusText(page);
}

/** Headless chromium with a page for the code-server window. */
async function launchBrowser() {
  if (!URL_) {
    throw new Error("FIMBLE_E2E_URL is not set");
  }
  const context = await chromium.launchPersistentContext(PROFILE, {
    executablePath: env.FIMBLE_CHROMIUM || "/usr/bin/chromium",
    headless: true,
    viewport: { width: 1400, height: 900 },
    args: [
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
      "--disable-dev-shm-usage",
    ],
  });
  const page = context.pages()[0] || (await context.newPage());
  page.setDefaultTimeout(T);
  page.on("console", (msg) => {
    if (msg.type() === "error" && result.console.length < 50) {
      result.console.push(msg.text().slice(0, 500));
    }
  });
  return { context, page };
}

/** Loads the window and waits for fimble's status bar item, which appears once the extension is active. */
async function loadWorkbench(page) {
  await page.goto(URL_, { waitUntil: "domcontentloaded", timeout: T });
  await page.locator(".monaco-workbench").waitFor({ state: "visible", timeout: T });
  step("workbench loaded");
  await page.locator(STATUS_ITEM).first().waitFor({ state: "visible", timeout: T });
  step("fimble status bar item", await statusText(page));
}

/** Keeps what the page showed when a flow failed: the error, the status, the text, a screenshot. */
async function recordFailure(page, error) {
  result.error = String((error && error.stack) || error);
  step("failed", { error: String(error && error.message) });
  result.statusAtEnd = await statusText(page).catch(() => undefined);
  result.editorAtFailure = await editorText(page).catch(() => undefined);
  const shotDir = SHOTS || path.dirname(RESULT);
  await page.screenshot({ path: path.join(shotDir, "vscode-failure.png") }).catch(() => undefined);
  result.failureScreenshot = path.join(shotDir, "vscode-failure.png");
}

async function main() {
  const { context, page } = await launchBrowser();
  try {
    await loadWorkbench(page);
    if (env.FIMBLE_E2E_MODE === "docs") {
      await docsFlow(page);
      result.ok = true;
      return;
    }
    const installMode = env.FIMBLE_E2E_MODE === "install";
    if (installMode) {
      await installFlow(page);
    }

    // Open the file with Quick Open.
    await page.keyboard.press("Control+P");
    const quick = page.locator(".quick-input-widget input").first();
    await quick.waitFor({ state: "visible", timeout: T });
    await quick.fill(FILE);
    await page.locator(".quick-input-list .monaco-list-row", { hasText: FILE }).first().waitFor({ state: "visible", timeout: T });
    await page.keyboard.press("Enter");
    await page.locator(".tab.active", { hasText: FILE }).waitFor({ state: "visible", timeout: T });
    const editor = page.locator(".editor-group-container.active .monaco-editor").first();
    await editor.waitFor({ state: "visible", timeout: T });
    step("file open");

    result.statusBeforeTyping = await waitForStatus(page, /^fimble: ready/, T);
    step("server ready", result.statusBeforeTyping);

    await editor.locator(".view-lines").click();
    await page.keyboard.press("Control+End");
    await page.keyboard.type(TYPE, { delay: 60 });
    step("typed", { text: TYPE });

    // Wait for the ghost text; if the automatic trigger got lost, trigger it explicitly.
    const ghost = page.locator(".monaco-editor .ghost-text-decoration, .monaco-editor .ghost-text").first();
    try {
      await ghost.waitFor({ state: "visible", timeout: Math.min(T, 45000) });
    } catch {
      step("no ghost text yet: triggering inline suggestion");
      await runCommand(page, "Trigger Inline Suggestion");
      await ghost.waitFor({ state: "visible", timeout: T });
    }
    result.ghostText = await ghostText(page);
    step("ghost text", { ghost: result.ghostText });
    if (SHOTS) {
      fs.mkdirSync(SHOTS, { recursive: true });
      const shot = path.join(SHOTS, "vscode-ghost-text.png");
      await page.screenshot({ path: shot });
      result.screenshot = shot;
    }
    result.statusAfterCompletion = await waitForStatus(page, /\d+ ms/, T).catch(() => undefined);
    result.editorBeforeTab = await editorText(page);

    await page.keyboard.press("Tab");
    await page.waitForTimeout(500);
    result.editorAfterTab = await editorText(page);
    step("accepted with Tab");
    await page.keyboard.press("Control+S");
    await page.locator(".tab.active.dirty").waitFor({ state: "detached", timeout: T }).catch(() => undefined);
    step("saved");
    if (installMode) {
      result.statusAtEnd = await statusText(page);
      result.ok = true;
      return;
    }

    // Explain the whole file.
    await page.keyboard.press("Escape");
    await editor.locator(".view-lines").click();
    await page.keyboard.press("Control+A");
    await runCommand(page, "fimble: Explain selection");
    step("explain requested");
    const end = Date.now() + T;
    let explanation;
    while (Date.now() < end) {
      explanation = await findExplanation(page);
      if (explanation && /done|failed/.test(explanation.state) && explanation.text) {
        break;
      }
      await page.waitForTimeout(500);
    }
    result.explanation = explanation;
    step("explanation", explanation ? { state: explanation.state, chars: explanation.text.length } : { missing: true });
    if (SHOTS) {
      await page.screenshot({ path: path.join(SHOTS, "vscode-explain.png") });
    }
    await fixAtCursor(page, editor);
    await showLastPrompt(page);
    if (env.FIMBLE_E2E_BAD_MODEL) {
      await badInput(page, editor);
    }
    result.statusAtEnd = await statusText(page);
    result.ok = true;
  } catch (error) {
    await recordFailure(page, error);
  } finally {
    save();
    await context.close().catch(() => undefined);
  }
  process.exit(result.ok ? 0 : 1);
}

// Other drivers (next_edit.js) reuse the helpers and run their own flow.
module.exports = {
  ACTIVE,
  FILE,
  SHOTS,
  T,
  docsShot,
  editorText,
  goToLineEnd,
  launchBrowser,
  loadWorkbench,
  openFile,
  openSettingsUi,
  recordFailure,
  result,
  runCommand,
  save,
  statusText,
  step,
  waitForStatus,
};

if (require.main === module) {
  main().then(() => process.exit(result.ok ? 0 : 1), (error) => {
    result.error = String((error && error.stack) || error);
    save();
    process.stderr.write(result.error + "\n");
    process.exit(2);
  });
}
