#!/usr/bin/env node
// Next edits in a real VS Code (code-server + chromium): rename a parameter by typing, see the next edit drawn on
// the line that uses it, Tab (jump), Tab (apply), one undo; then Esc, and `fimble.nextEdit: false`.
// Started by tests/editors/test_vscode_next_edit.py against a server whose model renames FIMBLE_E2E_OLD to
// FIMBLE_E2E_NEW; writes what it saw as JSON to $FIMBLE_E2E_RESULT. Helpers and the other variables: drive.js.
//
// Environment (besides drive.js's FIMBLE_E2E_URL, _FILE, _RESULT, _PROFILE, _NODE_MODULES, _TIMEOUT_MS,
// FIMBLE_CHROMIUM, FIMBLE_SCREENSHOT_DIR):
//   FIMBLE_E2E_OLD, FIMBLE_E2E_NEW  the name on FIMBLE_E2E_LINE (1-based) at FIMBLE_E2E_COLUMN (1-based), and the
//                                   name typed over it
//   FIMBLE_E2E_SETTINGS             the user settings.json, where the driver turns fimble.nextEdit off
"use strict";

const fs = require("fs");
const drive = require("./drive.js");

const { result, step, T } = drive;
const env = process.env;
const OLD = env.FIMBLE_E2E_OLD || "radius";
const NEW = env.FIMBLE_E2E_NEW || "r";
const LINE = Number(env.FIMBLE_E2E_LINE || 4);
const COLUMN = Number(env.FIMBLE_E2E_COLUMN || 10);
const JUMP_HINT = "Tab: jump to next edit";
// After the debounce (500 ms) the scripted server answers at once: this is long enough to have seen a suggestion.
const QUIET_MS = 4000;

/**
 * What the next edit draws in the active editor, per view line (sorted top to bottom): text struck through, and
 * the text decorations add after (or before) a span, the ghost text and the hint. VS Code draws decoration text
 * with CSS pseudo-elements, so it is read from the computed style, not the DOM text.
 */
async function nextEditDom(page) {
  return page.evaluate(() => {
    const root = document.querySelector(".editor-group-container.active .monaco-editor .view-lines");
    if (!root) {
      return [];
    }
    const unquote = (content) => {
      if (!content || content === "none" || content === "normal") {
        return "";
      }
      try {
        return JSON.parse(content);
      } catch {
        return content.replace(/^"|"$/g, "");
      }
    };
    const lines = [...root.querySelectorAll(".view-line")];
    lines.sort((a, b) => parseFloat(a.style.top) - parseFloat(b.style.top));
    return lines.map((line) => {
      const struck = [];
      const added = [];
      for (const span of line.querySelectorAll("span")) {
        const style = getComputedStyle(span);
        if (style.textDecorationLine.includes("line-through") && span.children.length === 0 && span.textContent) {
          struck.push(span.textContent.replace(/\u00a0/g, " "));
        }
        for (const pseudo of ["::before", "::after"]) {
          const text = unquote(getComputedStyle(span, pseudo).content);
          if (text) {
            added.push(text.replace(/\u00a0/g, " "));
          }
        }
      }
      return { text: (line.textContent || "").replace(/\u00a0/g, " "), struck, added };
    });
  });
}

/** Whether a next edit is drawn: a struck-through span or decoration text other than the hint. */
function drawn(lines) {
  return lines.some((l) => l.struck.length > 0 || l.added.some((a) => !a.includes(JUMP_HINT) && !a.includes("Tab: apply")));
}

async function waitForDrawing(page, want, timeout) {
  const end = Date.now() + timeout;
  let lines = [];
  while (Date.now() < end) {
    lines = await nextEditDom(page);
    if (drawn(lines) === want) {
      return lines;
    }
    await page.waitForTimeout(200);
  }
  throw new Error(`the next edit was ${want ? "never drawn" : "still drawn"}: ${JSON.stringify(lines)}`);
}

async function waitForText(page, predicate, what) {
  const end = Date.now() + T;
  let text = "";
  while (Date.now() < end) {
    text = await drive.editorText(page);
    if (predicate(text)) {
      return text;
    }
    await page.waitForTimeout(200);
  }
  throw new Error(`${what}; the editor shows ${JSON.stringify(text)}`);
}

/** The cursor as VS Code's status bar says it: "Ln 6, Col 22". */
async function cursorText(page) {
  const item = page.locator('[id="status.editor.selection"]').first();
  return ((await item.innerText().catch(() => "")) || "").trim();
}

/** Puts the cursor at `line`:`column` (1-based) with "Go to Line". */
async function goTo(page, line, column) {
  await page.keyboard.press("Control+G");
  const input = page.locator(".quick-input-widget input").first();
  await input.waitFor({ state: "visible", timeout: T });
  await input.fill(`:${line}:${column}`);
  await page.keyboard.press("Enter");
  await input.waitFor({ state: "hidden", timeout: T });
}

/** Turns a boolean setting off the way a person does, in the Settings editor, and waits until it is saved. */
async function uncheck(page, key) {
  const checkbox = page
    .locator(`${drive.ACTIVE} .settings-editor .setting-item-contents[data-key="${key}"] .setting-value-checkbox`)
    .first();
  for (let attempt = 1; ; attempt++) {
    await drive.openSettingsUi(page);
    await page.keyboard.press("Control+A");
    await page.keyboard.type(`@id:${key}`, { delay: 10 });
    try {
      await checkbox.waitFor({ state: "visible", timeout: 15000 });
      break;
    } catch (error) {
      if (attempt >= 4) {
        throw error;
      }
      step("settings search missed; again", { key });
    }
  }
  await checkbox.click();
  const end = Date.now() + T;
  for (;;) {
    let value;
    try {
      value = JSON.parse(fs.readFileSync(env.FIMBLE_E2E_SETTINGS, "utf8"))[key];
    } catch {
      value = undefined; // being written
    }
    if (value === false) {
      break;
    }
    if (Date.now() > end) {
      throw new Error(`${key} was not saved as false (it is ${value})`);
    }
    await page.waitForTimeout(200);
  }
  step("setting changed", { key, value: false });
}

async function nextEditFlow(page) {
  const ne = (result.nextEdit = {});
  const editor = await drive.openFile(page, drive.FILE);
  result.statusBeforeTyping = await drive.waitForStatus(page, /^fimble: ready/, T);
  await editor.locator(".view-lines").click();

  // Rename the parameter by typing over it.
  await goTo(page, LINE, COLUMN);
  await page.keyboard.press("Control+Shift+ArrowRight");
  await page.keyboard.type(NEW, { delay: 60 });
  step("renamed", { from: OLD, to: NEW });
  ne.shown = await waitForDrawing(page, true, T);
  ne.cursorBeforeJump = await cursorText(page);
  step("next edit drawn", { lines: ne.shown.filter((l) => l.struck.length || l.added.length) });
  if (drive.SHOTS) {
    await drive.docsShot(page, "vscode-next-edit.png");
  }

  await page.keyboard.press("Tab");
  const end = Date.now() + T;
  while (Date.now() < end && (await cursorText(page)) === ne.cursorBeforeJump) {
    await page.waitForTimeout(100);
  }
  ne.cursorAfterJump = await cursorText(page);
  ne.afterJump = await nextEditDom(page);
  step("Tab: jumped", { cursor: ne.cursorAfterJump });

  await page.keyboard.press("Tab");
  const applied = `math.pi * ${NEW} * ${NEW}`;
  ne.afterApply = await waitForText(page, (t) => t.includes(applied), "Tab did not apply the next edit");
  step("Tab: applied");

  await page.keyboard.press("Control+Z");
  ne.afterUndo = await waitForText(page, (t) => !t.includes(applied), "Ctrl+Z did not undo the next edit");
  await page.keyboard.press("Control+S");
  await page.locator(".tab.active.dirty").waitFor({ state: "detached", timeout: T }).catch(() => undefined);
  step("undone and saved");

  // The undo is an edit too: once it pauses the suggestion is back, and Esc dismisses it for good.
  ne.shownAgain = await waitForDrawing(page, true, T);
  await page.keyboard.press("Escape");
  await waitForDrawing(page, false, T);
  await page.waitForTimeout(QUIET_MS);
  ne.afterEscape = await nextEditDom(page);
  step("Esc: dismissed");

  // Turned off: an edit that pauses draws nothing; asked for explicitly, the server says why there is nothing.
  await uncheck(page, "fimble.nextEdit");
  await page.locator(".tab", { hasText: drive.FILE }).first().click();
  await editor.locator(".view-lines").click();
  await goTo(page, LINE + 1, 1);
  await page.keyboard.press("End");
  await page.keyboard.type(" ", { delay: 60 });
  await page.waitForTimeout(QUIET_MS);
  ne.offAfterEdit = await nextEditDom(page);
  step("turned off: edited and waited");
  await drive.runCommand(page, "fimble: Suggest next edit");
  const msgEnd = Date.now() + T;
  ne.offMessage = "";
  while (Date.now() < msgEnd && !ne.offMessage) {
    ne.offMessage = await page.evaluate(() =>
      [...document.querySelectorAll(".statusbar-item")]
        .map((e) => (e.textContent || "").trim())
        .find((t) => /no next edit/i.test(t)) || "",
    );
    await page.waitForTimeout(200);
  }
  ne.offAfterCommand = await nextEditDom(page);
  step("turned off: asked", { message: ne.offMessage });
}

async function main() {
  const { context, page } = await drive.launchBrowser();
  try {
    await drive.loadWorkbench(page);
    await nextEditFlow(page);
    result.statusAtEnd = await drive.statusText(page);
    result.ok = true;
  } catch (error) {
    await drive.recordFailure(page, error);
  } finally {
    drive.save();
    await context.close().catch(() => undefined);
  }
}

main().then(
  () => process.exit(result.ok ? 0 : 1),
  (error) => {
    result.error = String((error && error.stack) || error);
    drive.save();
    process.stderr.write(result.error + "\n");
    process.exit(2);
  },
);
