import * as assert from "node:assert/strict";
import * as fs from "node:fs";
import * as path from "node:path";
import { test } from "node:test";
import { DEFAULTS, RESTART_KEYS, SERVER_KEYS } from "../src/settings";
import { MACHINE_KEYS } from "../src/trust";

const root = path.join(__dirname, "..", "..");
const manifest = JSON.parse(fs.readFileSync(path.join(root, "package.json"), "utf8"));
const props = manifest.contributes.configuration.properties as Record<string, { default: unknown; scope?: string }>;

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

test("settings that run a program or send code off the machine are machine-scoped and restricted", () => {
  const restricted: string[] = manifest.capabilities.untrustedWorkspaces.restrictedConfigurations;
  assert.equal(manifest.capabilities.untrustedWorkspaces.supported, "limited");
  for (const key of MACHINE_KEYS) {
    assert.ok(["machine", "application"].includes(props[`fimble.${key}`].scope ?? ""), `fimble.${key} is machine-scoped`);
    assert.ok(restricted.includes(`fimble.${key}`), `fimble.${key} is a restricted configuration`);
  }
  for (const key of restricted) {
    assert.ok(key in props, `${key} (restricted) is contributed`);
  }
  const scoped = Object.keys(props).filter((k) => ["machine", "application"].includes(props[k].scope ?? ""));
  assert.deepEqual(scoped.sort(), MACHINE_KEYS.map((k) => `fimble.${k}`).sort(), "no other setting is machine-scoped");
  assert.ok(!("fimble.workspaceTrusted" in props), "trust is VS Code's to say, not a setting");
});
