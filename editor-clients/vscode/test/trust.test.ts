import * as assert from "node:assert/strict";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { test } from "node:test";
import { findOnPath, folderHolding, userValue } from "../src/trust";

test("userValue: the user's value, else the default; a workspace or folder value never", () => {
  const inspect = (seen: Record<string, unknown>) => ({ inspect: <T>() => seen as { globalValue?: T; defaultValue?: T } });
  assert.equal(userValue(inspect({ globalValue: "/u", workspaceValue: "/w", defaultValue: "d" }), "k", "f"), "/u");
  assert.equal(userValue(inspect({ workspaceValue: "/w", workspaceFolderValue: "/f", defaultValue: "d" }), "k", "f"), "d");
  assert.equal(userValue(inspect({ workspaceValue: "/w" }), "k", "f"), "f");
  assert.equal(userValue({ inspect: () => undefined }, "k", "f"), "f");
});

test("folderHolding: inside, `..` and look-alike siblings", () => {
  const same = (p: string) => p;
  assert.equal(folderHolding("/ws/a/b", ["/other", "/ws"], "/", same), "/ws");
  assert.equal(folderHolding("/ws", ["/ws"], "/", same), "/ws");
  assert.equal(folderHolding("/ws2/x", ["/ws"], "/", same), undefined);
  assert.equal(folderHolding("/ws/../elsewhere/x", ["/ws"], "/", same), undefined);
  assert.equal(folderHolding("/home/../ws/x", ["/ws"], "/", same), "/ws");
  assert.equal(folderHolding("bin/fimble", ["/ws"], "/ws/sub", same), "/ws");
  assert.equal(folderHolding("..foo/x", ["/ws"], "/ws", same), "/ws");
});

test("folderHolding: a symlink that leads into the workspace counts as inside", () => {
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "fimble-trust-"));
  try {
    const ws = path.join(tmp, "ws");
    fs.mkdirSync(path.join(ws, "bin"), { recursive: true });
    fs.writeFileSync(path.join(ws, "bin", "fimble"), "");
    const link = path.join(tmp, "innocent");
    fs.symlinkSync(path.join(ws, "bin", "fimble"), link);
    assert.equal(folderHolding(link, [ws]), ws);
    // And a workspace folder opened through a symlink still holds its files.
    const wsLink = path.join(tmp, "ws-link");
    fs.symlinkSync(ws, wsLink);
    assert.equal(folderHolding(path.join(ws, "bin", "fimble"), [wsLink]), wsLink);
    assert.equal(folderHolding(path.join(tmp, "other"), [wsLink]), undefined);
  } finally {
    fs.rmSync(tmp, { recursive: true, force: true });
  }
});

test("findOnPath: every match in order, absolute PATH entries only; PATHEXT on Windows", () => {
  const present = new Set(["/a/fimble", "/c/fimble"]);
  const env = { PATH: "/a::./rel:/b:/c" };
  assert.deepEqual(
    findOnPath("fimble", env, "linux", (p) => present.has(p)),
    ["/a/fimble", "/c/fimble"],
  );
  assert.deepEqual(findOnPath("fimble", { PATH: "rel" }, "linux", () => true), []);
  const win = new Set(["C:\\py\\Scripts\\fimble.EXE"]);
  assert.deepEqual(
    findOnPath("fimble", { Path: "C:\\py\\Scripts;.\\bin", PATHEXT: ".COM;.EXE" }, "win32", (p) => win.has(p)),
    ["C:\\py\\Scripts\\fimble.EXE"],
  );
});
