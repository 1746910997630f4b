import * as assert from "node:assert/strict";
import * as fs from "node:fs";
import * as path from "node:path";
import { test } from "node:test";
import { DEFAULTS, RESTART_KEYS, SERVER_KEYS } from "../src/settings";

const root = path.join(__dirname, "..", "..");
const manifest = JSON.parse(fs.readFileSync(path.join(root, "package.json"), "utf8"));
const props = manifest.contributes.configuration.properties as Record<string, { default: unknown }>;

test("every setting the code reads is contributed, with the server's defaults", () => {
  for (const key of [...SERVER_KEYS, ...RESTART_KEYS, "enable", "enabledLanguages"]) {
    assert.ok(`fimble.${key}` in props, `fimble.${key} is contributed`);
  }
  for (const [key, value] of Object.entries(DEFAULTS)) {
    assert.deepEqual(props[`fimble.${key}`].default, value, `default of fimble.${key}`);
  }
});

test("the manifest fits VS Code 1.100 (code-server 4.100.3) and the main file is built", () => {
  assert.match(manifest.engines.vscode, /^\^1\.(9\d|1\d\d)\./);
  const types = manifest.devDependencies["@types/vscode"].replace(/^[~^]/, "");
  assert.ok(manifest.engines.vscode.replace("^", "") >= types, "@types/vscode is not newer than engines.vscode");
  assert.ok(fs.existsSync(path.join(root, manifest.main)), `${manifest.main} exists`);
  assert.ok(manifest.activationEvents.includes("onStartupFinished"));
  assert.equal(manifest.devDependencies["@vscode/vsce"], "3.7.1");
});

test("commands the server registers (fimble.explain) are not also contributed by the extension", () => {
  const ids = manifest.contributes.commands.map((c: { command: string }) => c.command);
  assert.ok(!ids.includes("fimble.explain"));
});
