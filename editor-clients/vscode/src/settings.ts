/**
 * Settings: what is read from the `fimble.*` section and what is sent to the server.
 *
 * Only the keys listed in PROTOCOL.md ("Settings") go to the server; the others (enable, enabledLanguages,
 * serverPath, ...) stay on the client. Everything here is pure so that it can be unit tested.
 */
import * as os from "os";
import * as path from "path";

/** The subset of vscode.WorkspaceConfiguration that these helpers use. */
export interface ConfigLike {
  get<T>(key: string): T | undefined;
  get<T>(key: string, defaultValue: T): T;
}

/** The `fimble` settings object of PROTOCOL.md, as sent in initializationOptions and workspace/configuration. */
export interface ServerSettings {
  model: string;
  nGpuLayers: number;
  nThreads: number;
  nCtx: number;
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
  /** Remote engines (README "For teams"): in-process llama.cpp, or a shared server. */
  backend: string;
  url: string;
  apiKeyEnv: string;
  requestTimeoutMs: number;
  fallbackModel: string;
  remoteModel: string;
  promptFormat: string;
}

/** Keys (below `fimble.`) whose change must reach the server as workspace/didChangeConfiguration. */
export const SERVER_KEYS = [
  "model",
  "nGpuLayers",
  "nThreads",
  "nCtx",
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
  "backend",
  "url",
  "apiKeyEnv",
  "requestTimeoutMs",
  "fallbackModel",
  "remoteModel",
  "promptFormat",
] as const;

/** Keys (below `fimble.`) whose change needs a new server process. */
export const RESTART_KEYS = ["serverPath", "pythonPath", "serverArgs"] as const;

export const DEFAULTS = {
  model: "",
  nGpuLayers: 0,
  nThreads: 0,
  nCtx: 4096,
  maxTokens: 64,
  temperature: 0,
  timeBudgetMs: 3000,
  contextSources: ["scope", "definitions", "similar", "ring", "git"] as readonly string[],
  fixMaxAttempts: 3,
  fixTimeBudgetMs: 60000,
  fixAllowUnverified: false,
  fixCheckers: [] as readonly (readonly string[])[],
  checkerTimeoutMs: 20000,
  backend: "llama.cpp",
  url: "",
  apiKeyEnv: "FIMBLE_API_KEY",
  requestTimeoutMs: 10000,
  fallbackModel: "",
  remoteModel: "",
  promptFormat: "auto",
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

/** Builds the server's settings object from the `fimble` configuration section. */
export function readServerSettings(cfg: ConfigLike, workspaceFolder?: string): ServerSettings {
  const settings: ServerSettings = {
    model: expandPath(String(cfg.get<string>("model", DEFAULTS.model) ?? ""), workspaceFolder),
    nGpuLayers: int(cfg.get("nGpuLayers"), DEFAULTS.nGpuLayers, -1),
    nThreads: int(cfg.get("nThreads"), DEFAULTS.nThreads, 0),
    nCtx: int(cfg.get("nCtx"), DEFAULTS.nCtx, 0),
    maxTokens: int(cfg.get("maxTokens"), DEFAULTS.maxTokens, 1),
    temperature: num(cfg.get("temperature"), DEFAULTS.temperature, 0),
    timeBudgetMs: int(cfg.get("timeBudgetMs"), DEFAULTS.timeBudgetMs, 1),
    contextSources: [...DEFAULTS.contextSources],
    fixMaxAttempts: int(cfg.get("fixMaxAttempts"), DEFAULTS.fixMaxAttempts, 1),
    fixTimeBudgetMs: int(cfg.get("fixTimeBudgetMs"), DEFAULTS.fixTimeBudgetMs, 1),
    fixAllowUnverified: cfg.get<boolean>("fixAllowUnverified", DEFAULTS.fixAllowUnverified) === true,
    fixCheckers: checkers(cfg.get<unknown>("fixCheckers")),
    checkerTimeoutMs: int(cfg.get("checkerTimeoutMs"), DEFAULTS.checkerTimeoutMs, 1),
    backend: BACKENDS.includes(String(cfg.get("backend"))) ? String(cfg.get("backend")) : DEFAULTS.backend,
    url: String(cfg.get<string>("url", DEFAULTS.url) ?? "").trim(),
    apiKeyEnv: String(cfg.get<string>("apiKeyEnv", DEFAULTS.apiKeyEnv) ?? "").trim() || DEFAULTS.apiKeyEnv,
    requestTimeoutMs: int(cfg.get("requestTimeoutMs"), DEFAULTS.requestTimeoutMs, 1),
    fallbackModel: expandPath(String(cfg.get<string>("fallbackModel", DEFAULTS.fallbackModel) ?? ""), workspaceFolder),
    remoteModel: String(cfg.get<string>("remoteModel", DEFAULTS.remoteModel) ?? "").trim(),
    promptFormat: String(cfg.get<string>("promptFormat", DEFAULTS.promptFormat) ?? "").trim() || DEFAULTS.promptFormat,
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
  source: "serverPath" | "pythonPath" | "python extension" | "python.defaultInterpreterPath" | "PATH";
}

export interface CommandInputs {
  serverPath?: string;
  pythonPath?: string;
  serverArgs?: readonly string[];
  /** Interpreter reported by the Python extension, if any. */
  pythonExtensionInterpreter?: string;
  /** The `python.defaultInterpreterPath` setting, if any. */
  defaultInterpreterPath?: string;
  workspaceFolder?: string;
}

/**
 * How to start the server: `fimble.serverPath` (`<path> serve`), else `fimble.pythonPath`
 * (`<python> -m fimble serve`), else the Python extension's interpreter, else `fimble serve` from PATH.
 */
export function resolveServerCommand(inputs: CommandInputs): ServerCommand {
  const extra = (inputs.serverArgs ?? []).filter((a) => typeof a === "string");
  const serverPath = expandPath(inputs.serverPath ?? "", inputs.workspaceFolder);
  if (serverPath) {
    return { command: serverPath, args: ["serve", ...extra], source: "serverPath" };
  }
  const pythonPath = expandPath(inputs.pythonPath ?? "", inputs.workspaceFolder);
  if (pythonPath) {
    return { command: pythonPath, args: ["-m", "fimble", "serve", ...extra], source: "pythonPath" };
  }
  const fromExtension = expandPath(inputs.pythonExtensionInterpreter ?? "", inputs.workspaceFolder);
  if (fromExtension) {
    return { command: fromExtension, args: ["-m", "fimble", "serve", ...extra], source: "python extension" };
  }
  const defaultInterpreter = expandPath(inputs.defaultInterpreterPath ?? "", inputs.workspaceFolder);
  if (defaultInterpreter && defaultInterpreter !== "python" && defaultInterpreter !== "python3") {
    return {
      command: defaultInterpreter,
      args: ["-m", "fimble", "serve", ...extra],
      source: "python.defaultInterpreterPath",
    };
  }
  return { command: "fimble", args: ["serve", ...extra], source: "PATH" };
}

/** Formats a command line for the log. */
export function formatCommand(cmd: ServerCommand): string {
  const quote = (s: string) => (/^[\w@%+=:,./-]+$/.test(s) ? s : `'${s.replace(/'/g, "'\\''")}'`);
  return [cmd.command, ...cmd.args].map(quote).join(" ");
}
