/**
 * Settings: what is read from the `fimble.*` section and what is sent to the server.
 *
 * Only the keys listed in PROTOCOL.md ("Settings") go to the server; the others (enable, enabledLanguages,
 * serverPath, ...) stay on the client. Everything here is pure so that it can be unit tested.
 */
import * as os from "os";
import * as path from "path";
import { Inspectable, TRUSTED, TrustContext, findOnPath, folderHolding, hasDirectory, userValue } from "./trust";

/** The subset of vscode.WorkspaceConfiguration that these helpers use. */
export interface ConfigLike extends Inspectable {
  get<T>(key: string): T | undefined;
  get<T>(key: string, defaultValue: T): T;
}

/** The `fimble` settings object of PROTOCOL.md, as sent in initializationOptions and workspace/configuration. */
export interface ServerSettings {
  model: string;
  nGpuLayers: number;
  nThreads: number;
  nCtx: number;
  nBatch: number;
  promptCacheMb: number;
  maxTokens: number;
  temperature: number;
  timeBudgetMs: number;
  contextSources: string[];
  fixMaxAttempts: number;
  fixTimeBudgetMs: number;
  fixAllowUnverified: boolean;
  /** Argument lists, run without a shell. */
  fixCheckers: string[][];
  checkerTimeoutMs: number;
  nextEdit: boolean;
  nextEditModel: string;
  nextEditLines: number;
  /** Remote engines (README "For teams"): in-process llama.cpp, or a shared server. */
  backend: string;
  url: string;
  apiKeyEnv: string;
  requestTimeoutMs: number;
  fallbackModel: string;
  remoteModel: string;
  promptFormat: string;
  /** Documents larger than this (UTF-8 bytes) get no completions or syntax work; 0 = no limit. */
  maxDocumentBytes: number;
  /** vscode.workspace.isTrusted; never read from settings, so a workspace settings file cannot claim trust. */
  workspaceTrusted: boolean;
}

/** Keys (below `fimble.`) whose change must reach the server as workspace/didChangeConfiguration. */
export const SERVER_KEYS = [
  "model",
  "nGpuLayers",
  "nThreads",
  "nCtx",
  "nBatch",
  "promptCacheMb",
  "maxTokens",
  "temperature",
  "timeBudgetMs",
  "contextSources",
  "useContext",
  "fixMaxAttempts",
  "fixTimeBudgetMs",
  "fixAllowUnverified",
  "fixCheckers",
  "checkerTimeoutMs",
  "nextEdit",
  "nextEditModel",
  "nextEditLines",
  "backend",
  "url",
  "apiKeyEnv",
  "requestTimeoutMs",
  "fallbackModel",
  "remoteModel",
  "promptFormat",
  "maxDocumentBytes",
] as const;

/** Keys (below `fimble.`) whose change needs a new server process. */
export const RESTART_KEYS = ["serverPath", "pythonPath", "serverArgs"] as const;

export const DEFAULTS = {
  model: "",
  nGpuLayers: 0,
  nThreads: 0,
  nCtx: 4096,
  nBatch: 512,
  promptCacheMb: 256,
  maxTokens: 64,
  temperature: 0,
  timeBudgetMs: 3000,
  contextSources: ["scope", "definitions", "similar", "ring", "git"] as readonly string[],
  fixMaxAttempts: 3,
  fixTimeBudgetMs: 60000,
  fixAllowUnverified: false,
  fixCheckers: [] as readonly (readonly string[])[],
  checkerTimeoutMs: 20000,
  nextEdit: true,
  nextEditModel: "",
  nextEditLines: 21,
  backend: "llama.cpp",
  url: "",
  apiKeyEnv: "FIMBLE_API_KEY",
  requestTimeoutMs: 10000,
  fallbackModel: "",
  remoteModel: "",
  promptFormat: "auto",
  maxDocumentBytes: 1_000_000,
};

const BACKENDS = ["llama.cpp", "llama-server", "openai"];

function int(value: unknown, fallback: number, min?: number): number {
  const n = typeof value === "number" ? value : typeof value === "string" ? Number(value) : NaN;
  if (!Number.isFinite(n)) {
    return fallback;
  }
  const i = Math.trunc(n);
  return min !== undefined && i < min ? fallback : i;
}

function num(value: unknown, fallback: number, min?: number): number {
  const n = typeof value === "number" ? value : typeof value === "string" ? Number(value) : NaN;
  if (!Number.isFinite(n)) {
    return fallback;
  }
  return min !== undefined && n < min ? fallback : n;
}

/** Checker command lines: non-empty arrays of strings; anything else is dropped. */
function checkers(value: unknown): string[][] {
  if (!Array.isArray(value)) {
    return [];
  }
  return value.filter(
    (argv): argv is string[] => Array.isArray(argv) && argv.length > 0 && argv.every((a) => typeof a === "string"),
  );
}

/** Expands `~` and `${workspaceFolder}`/`${userHome}`/`${env:NAME}` in a path setting. */
export function expandPath(value: string, workspaceFolder?: string, env: NodeJS.ProcessEnv = process.env): string {
  let out = value.trim();
  if (!out) {
    return out;
  }
  out = out.replace(/\$\{(workspaceFolder|userHome|env:([A-Za-z_][A-Za-z0-9_]*))\}/g, (whole, name: string, envName?: string) => {
    if (name === "workspaceFolder") {
      return workspaceFolder ?? whole;
    }
    if (name === "userHome") {
      return os.homedir();
    }
    return env[envName ?? ""] ?? "";
  });
  if (out === "~" || out.startsWith("~/")) {
    out = path.join(os.homedir(), out.slice(1));
  }
  return out;
}

/** A machine-scoped path setting that Restricted Mode refused: it lies inside a workspace folder. */
export type OnRefused = (key: string, value: string, folder: string) => void;

/**
 * Builds the server's settings object from the `fimble` configuration section.
 *
 * The machine-scoped keys (trust.ts MACHINE_KEYS) come from the user's own settings only. In an untrusted
 * workspace, a model file inside a workspace folder is not sent (`onRefused` says which) and no checkers are:
 * checkers run the workspace's code by design (pytest imports conftest.py), so they are withheld even from a server
 * that would not honour `workspaceTrusted: false`.
 */
export function readServerSettings(
  cfg: ConfigLike,
  workspaceFolder?: string,
  trust: TrustContext = TRUSTED,
  onRefused?: OnRefused,
): ServerSettings {
  const user = <T>(key: string, fallback: T): T => userValue<T>(cfg, key, fallback);
  const modelPath = (key: "model" | "fallbackModel" | "nextEditModel"): string => {
    const value = expandPath(String(user<string>(key, DEFAULTS[key]) ?? ""), workspaceFolder);
    const folder = value && !trust.trusted ? folderHolding(value, trust.folders, trust.serverCwd) : undefined;
    if (folder !== undefined) {
      onRefused?.(key, value, folder);
      return "";
    }
    return value;
  };
  const backend = String(user<string>("backend", DEFAULTS.backend));
  const settings: ServerSettings = {
    model: modelPath("model"),
    nGpuLayers: int(cfg.get("nGpuLayers"), DEFAULTS.nGpuLayers, -1),
    nThreads: int(cfg.get("nThreads"), DEFAULTS.nThreads, 0),
    nCtx: int(cfg.get("nCtx"), DEFAULTS.nCtx, 0),
    nBatch: int(cfg.get("nBatch"), DEFAULTS.nBatch, 1),
    promptCacheMb: int(cfg.get("promptCacheMb"), DEFAULTS.promptCacheMb, 0),
    maxTokens: int(cfg.get("maxTokens"), DEFAULTS.maxTokens, 1),
    temperature: num(cfg.get("temperature"), DEFAULTS.temperature, 0),
    timeBudgetMs: int(cfg.get("timeBudgetMs"), DEFAULTS.timeBudgetMs, 1),
    contextSources: [...DEFAULTS.contextSources],
    fixMaxAttempts: int(cfg.get("fixMaxAttempts"), DEFAULTS.fixMaxAttempts, 1),
    fixTimeBudgetMs: int(cfg.get("fixTimeBudgetMs"), DEFAULTS.fixTimeBudgetMs, 1000),
    fixAllowUnverified: cfg.get<boolean>("fixAllowUnverified", DEFAULTS.fixAllowUnverified) === true,
    fixCheckers: trust.trusted ? checkers(user<unknown>("fixCheckers", [])) : [],
    checkerTimeoutMs: int(cfg.get("checkerTimeoutMs"), DEFAULTS.checkerTimeoutMs, 100),
    nextEdit: cfg.get<boolean>("nextEdit", DEFAULTS.nextEdit) !== false,
    nextEditModel: modelPath("nextEditModel"),
    nextEditLines: int(cfg.get("nextEditLines"), DEFAULTS.nextEditLines, 3),
    backend: BACKENDS.includes(backend) ? backend : DEFAULTS.backend,
    url: String(user<string>("url", DEFAULTS.url) ?? "").trim(),
    apiKeyEnv: String(user<string>("apiKeyEnv", DEFAULTS.apiKeyEnv) ?? "").trim() || DEFAULTS.apiKeyEnv,
    requestTimeoutMs: int(cfg.get("requestTimeoutMs"), DEFAULTS.requestTimeoutMs, 100),
    fallbackModel: modelPath("fallbackModel"),
    remoteModel: String(user<string>("remoteModel", DEFAULTS.remoteModel) ?? "").trim(),
    promptFormat: String(cfg.get<string>("promptFormat", DEFAULTS.promptFormat) ?? "").trim() || DEFAULTS.promptFormat,
    maxDocumentBytes: int(cfg.get("maxDocumentBytes"), DEFAULTS.maxDocumentBytes, 0),
    workspaceTrusted: trust.trusted,
  };
  const useContext = cfg.get<boolean>("useContext", true) !== false;
  const sources = cfg.get<unknown>("contextSources");
  if (!useContext) {
    settings.contextSources = [];
  } else if (Array.isArray(sources)) {
    settings.contextSources = [...new Set(sources.filter((s): s is string => typeof s === "string"))];
  }
  return settings;
}

/**
 * Whether inline suggestions are on for a language.
 * `patterns`: language ids, `*` for all, `!id` to turn one off; the last matching entry wins.
 */
export function isLanguageEnabled(languageId: string, patterns: readonly string[] | undefined, enabled = true): boolean {
  if (!enabled) {
    return false;
  }
  const list = Array.isArray(patterns) && patterns.length > 0 ? patterns : ["*"];
  let result = false;
  for (const raw of list) {
    const entry = String(raw).trim();
    const negate = entry.startsWith("!");
    const id = negate ? entry.slice(1) : entry;
    if (id === "*" || id === languageId) {
      result = !negate;
    }
  }
  return result;
}

export interface ServerCommand {
  command: string;
  args: string[];
  /** Where the command came from, for the log and error messages. */
  source: "serverPath" | "pythonPath" | "installed" | "python extension" | "python.defaultInterpreterPath" | "PATH";
  /** Candidates Restricted Mode passed over, and why (for the log). */
  refused?: string[];
}

export interface CommandInputs {
  serverPath?: string;
  pythonPath?: string;
  serverArgs?: readonly string[];
  /** The server the extension installed (install.ts managedCommand), if any. */
  installed?: ServerCommand;
  /**
   * Interpreter reported by the Python extension, if any and if it has fimble (the caller leaves it out in
   * Restricted Mode).
   */
  pythonExtensionInterpreter?: string;
  /** The user's own `python.defaultInterpreterPath`, if any (never a workspace value) and if it has fimble. */
  defaultInterpreterPath?: string;
  workspaceFolder?: string;
  trust?: TrustContext;
  /** Every executable of that name on PATH, in lookup order (trust.ts findOnPath). */
  which?: (name: string) => string[];
}

/** No fimble server is configured, installed or found: the extension offers to install one. */
export class ServerNotInstalled extends Error {}

/**
 * How to start the server: `fimble.serverPath` (`<path> serve`), else `fimble.pythonPath`
 * (`<python> -m fimble serve`), else the server the extension installed, else the Python extension's interpreter,
 * else `python.defaultInterpreterPath`, else `fimble serve` from PATH; with none of them, ServerNotInstalled.
 *
 * In Restricted Mode a candidate that lies inside a workspace folder is passed over (a command name is looked up on
 * PATH first, and the first match outside the workspace is used); when every candidate is, this throws with the
 * reasons.
 */
export function resolveServerCommand(inputs: CommandInputs): ServerCommand {
  const extra = (inputs.serverArgs ?? []).filter((a) => typeof a === "string");
  const trust = inputs.trust ?? TRUSTED;
  const which = inputs.which ?? ((name: string) => findOnPath(name));
  const refused: string[] = [];
  /** The program to run for a candidate, or undefined when Restricted Mode refuses it. */
  const vet = (program: string, what: string): string | undefined => {
    if (trust.trusted) {
      return program;
    }
    const inside = (p: string) => folderHolding(p, trust.folders, trust.serverCwd);
    if (hasDirectory(program)) {
      const folder = inside(program);
      if (folder === undefined) {
        return program;
      }
      refused.push(`${what} (${program}) lies inside the untrusted workspace folder ${folder}`);
      return undefined;
    }
    const found = which(program);
    const outside = found.find((p) => inside(p) === undefined);
    if (outside !== undefined || found.length === 0) {
      // Nothing found: spawning the bare name fails as it would have, with the usual message.
      return outside ?? program;
    }
    refused.push(`${what} (${program} on PATH: ${found.join(", ")}) lies inside the untrusted workspace`);
    return undefined;
  };
  const result = (command: string, args: string[], source: ServerCommand["source"]): ServerCommand =>
    refused.length ? { command, args, source, refused } : { command, args, source };
  const python = ["-m", "fimble", "serve", ...extra];

  const serverPath = expandPath(inputs.serverPath ?? "", inputs.workspaceFolder);
  const fromServerPath = serverPath && vet(serverPath, "fimble.serverPath");
  if (fromServerPath) {
    return result(fromServerPath, ["serve", ...extra], "serverPath");
  }
  const pythonPath = expandPath(inputs.pythonPath ?? "", inputs.workspaceFolder);
  const fromPythonPath = pythonPath && vet(pythonPath, "fimble.pythonPath");
  if (fromPythonPath) {
    return result(fromPythonPath, python, "pythonPath");
  }
  const installed = inputs.installed && vet(inputs.installed.command, "the installed server");
  if (installed && inputs.installed) {
    return result(installed, inputs.installed.args, "installed");
  }
  const fromExtension = expandPath(inputs.pythonExtensionInterpreter ?? "", inputs.workspaceFolder);
  const extensionPython = fromExtension && vet(fromExtension, "the Python extension's interpreter");
  if (extensionPython) {
    return result(extensionPython, python, "python extension");
  }
  const defaultInterpreter = expandPath(inputs.defaultInterpreterPath ?? "", inputs.workspaceFolder);
  if (defaultInterpreter && defaultInterpreter !== "python" && defaultInterpreter !== "python3") {
    const chosen = vet(defaultInterpreter, "python.defaultInterpreterPath");
    if (chosen) {
      return result(chosen, python, "python.defaultInterpreterPath");
    }
  }
  const onPath = which("fimble");
  const fromPath = onPath.length > 0 && vet("fimble", "fimble");
  if (fromPath) {
    return result(fromPath, ["serve", ...extra], "PATH");
  }
  if (refused.length === 0) {
    throw new ServerNotInstalled("The fimble server is not installed (no fimble.serverPath, no fimble on PATH).");
  }
  throw new Error(
    `Restricted Mode: fimble starts no program from inside the workspace: ${refused.join("; ")}. ` +
      'Trust the workspace, or set "fimble.serverPath" to a fimble outside it.',
  );
}

/** Formats a command line for the log. */
export function formatCommand(cmd: ServerCommand): string {
  const quote = (s: string) => (/^[\w@%+=:,./-]+$/.test(s) ? s : `'${s.replace(/'/g, "'\\''")}'`);
  return [cmd.command, ...cmd.args].map(quote).join(" ");
}
