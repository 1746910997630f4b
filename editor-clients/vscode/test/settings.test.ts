import * as assert from "node:assert/strict";
import * as os from "node:os";
import * as path from "node:path";
import { test } from "node:test";
import {
  ConfigLike,
  DEFAULTS,
  expandPath,
  formatCommand,
  isLanguageEnabled,
  readServerSettings,
  resolveServerCommand,
} from "../src/settings";

function cfg(values: Record<string, unknown>): ConfigLike {
  return {
    get<T>(key: string, defaultValue?: T): T {
      return (key in values ? values[key] : defaultValue) as T;
    },
  } as ConfigLike;
}

test("readServerSettings: defaults are the server's, keys as in PROTOCOL.md", () => {
  const s = readServerSettings(cfg({}));
  assert.deepEqual(s, {
    model: "",
    nGpuLayers: 0,
    nThreads: 0,
    nCtx: 4096,
    maxTokens: 64,
    temperature: 0,
    timeBudgetMs: 3000,
    contextSources: ["scope", "definitions", "similar", "ring", "git"],
    fixMaxAttempts: 3,
    fixTimeBudgetMs: 60000,
    fixAllowUnverified: false,
    fixCheckers: [],
    checkerTimeoutMs: 20000,
    backend: "llama.cpp",
    url: "",
    apiKeyEnv: "FIMBLE_API_KEY",
    requestTimeoutMs: 10000,
    fallbackModel: "",
    remoteModel: "",
    promptFormat: "auto",
  });
  assert.deepEqual(Object.keys(s).sort(), [
    "apiKeyEnv",
    "backend",
    "checkerTimeoutMs",
    "contextSources",
    "fallbackModel",
    "fixAllowUnverified",
    "fixCheckers",
    "fixMaxAttempts",
    "fixTimeBudgetMs",
    "maxTokens",
    "model",
    "nCtx",
    "nGpuLayers",
    "nThreads",
    "promptFormat",
    "remoteModel",
    "requestTimeoutMs",
    "temperature",
    "timeBudgetMs",
    "url",
  ]);
  assert.equal(DEFAULTS.maxTokens, 64);
});

test("readServerSettings: values, coercion and rejected values", () => {
  const s = readServerSettings(
    cfg({
      model: "${workspaceFolder}/m.gguf",
      nGpuLayers: -1,
      nThreads: "4",
      nCtx: 2048.7,
      maxTokens: 0, // below minimum: default
      temperature: 0.2,
      timeBudgetMs: "soon", // not a number: default
      contextSources: ["scope", "scope", 7, "git"],
      enable: false, // a client-side key: never sent
      fixCheckers: [["ruff", "check", "{file}"], [], "pytest", [1, 2]],
      fixAllowUnverified: "yes", // not a boolean: off
    }),
    "/ws",
  );
  assert.equal(s.model, "/ws/m.gguf");
  assert.equal(s.nGpuLayers, -1);
  assert.equal(s.nThreads, 4);
  assert.equal(s.nCtx, 2048);
  assert.equal(s.maxTokens, 64);
  assert.equal(s.temperature, 0.2);
  assert.equal(s.timeBudgetMs, 3000);
  assert.deepEqual(s.contextSources, ["scope", "git"]);
  assert.deepEqual(s.fixCheckers, [["ruff", "check", "{file}"]]);
  assert.equal(s.fixAllowUnverified, false);
  assert.ok(!("enable" in s));
});

test("readServerSettings: remote engine settings, an unknown backend falls back to in-process", () => {
  const s = readServerSettings(cfg({ backend: "llama-server", url: " http://gpu:8080 ", requestTimeoutMs: 5000 }));
  assert.equal(s.backend, "llama-server");
  assert.equal(s.url, "http://gpu:8080");
  assert.equal(s.requestTimeoutMs, 5000);
  assert.equal(readServerSettings(cfg({ backend: "vllm-turbo" })).backend, "llama.cpp");
});

test("readServerSettings: context off sends an empty source list", () => {
  assert.deepEqual(readServerSettings(cfg({ useContext: false, contextSources: ["git"] })).contextSources, []);
  assert.deepEqual(readServerSettings(cfg({ contextSources: [] })).contextSources, []);
});

test("expandPath: ~, ${userHome}, ${env:X}, ${workspaceFolder}", () => {
  assert.equal(expandPath("~/m.gguf"), path.join(os.homedir(), "m.gguf"));
  assert.equal(expandPath("${userHome}/x"), `${os.homedir()}/x`);
  assert.equal(expandPath("${env:FOO}/bin", undefined, { FOO: "/opt" }), "/opt/bin");
  assert.equal(expandPath("${workspaceFolder}/a", "/w"), "/w/a");
  assert.equal(expandPath("${workspaceFolder}/a"), "${workspaceFolder}/a");
  assert.equal(expandPath("  "), "");
});

test("isLanguageEnabled: wildcard, negation, global switch", () => {
  assert.equal(isLanguageEnabled("python", ["*"]), true);
  assert.equal(isLanguageEnabled("python", undefined), true);
  assert.equal(isLanguageEnabled("python", []), true);
  assert.equal(isLanguageEnabled("python", ["*"], false), false);
  assert.equal(isLanguageEnabled("plaintext", ["*", "!plaintext"]), false);
  assert.equal(isLanguageEnabled("python", ["*", "!plaintext"]), true);
  assert.equal(isLanguageEnabled("go", ["python", "typescript"]), false);
  assert.equal(isLanguageEnabled("typescript", ["python", "typescript"]), true);
});

test("resolveServerCommand: serverPath, then pythonPath, then the Python extension, then PATH", () => {
  assert.deepEqual(resolveServerCommand({ serverPath: "/venv/bin/fimble", pythonPath: "/usr/bin/python3" }), {
    command: "/venv/bin/fimble",
    args: ["serve"],
    source: "serverPath",
  });
  assert.deepEqual(resolveServerCommand({ pythonPath: "/venv/bin/python", serverArgs: ["--log-level", "debug"] }), {
    command: "/venv/bin/python",
    args: ["-m", "fimble", "serve", "--log-level", "debug"],
    source: "pythonPath",
  });
  assert.deepEqual(resolveServerCommand({ pythonExtensionInterpreter: "/env/bin/python" }).source, "python extension");
  assert.deepEqual(resolveServerCommand({ defaultInterpreterPath: "python" }).source, "PATH");
  assert.deepEqual(resolveServerCommand({ defaultInterpreterPath: "/x/python3.11" }).command, "/x/python3.11");
  assert.deepEqual(resolveServerCommand({}), { command: "fimble", args: ["serve"], source: "PATH" });
  assert.equal(resolveServerCommand({ serverPath: "${workspaceFolder}/.venv/bin/fimble", workspaceFolder: "/w" }).command, "/w/.venv/bin/fimble");
});

test("formatCommand quotes what needs quoting", () => {
  assert.equal(formatCommand({ command: "/a b/fimble", args: ["serve", "it's"], source: "serverPath" }), "'/a b/fimble' serve 'it'\\''s'");
});
