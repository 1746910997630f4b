/**
 * Workspace trust: what a workspace may choose, and what only the user may.
 *
 * A folder someone else wrote (a cloned repository, an unpacked archive) must not make fimble run a program, load a
 * model file or send code somewhere. So:
 * - the settings that do one of these are machine-scoped in package.json and read here from the user's own
 *   settings only (`userValue`): a workspace or folder value never counts, trusted or not;
 * - in an untrusted workspace (VS Code's Restricted Mode) fimble also starts no program and loads no model file that
 *   lies inside a workspace folder (`folderHolding`), even when the user's own settings point there, and tells the
 *   server `workspaceTrusted: false` (it then runs no git command and no checker).
 * Everything here is pure or takes its I/O as a parameter, so that it can be unit tested.
 */
import * as fs from "fs";
import * as path from "path";

/**
 * Keys (below `fimble.`) that run a program, make llama.cpp parse a file, or choose where code is sent.
 * `remoteModel` belongs: on a gateway (LiteLLM, OpenRouter) the model name picks the provider that gets the code.
 */
export const MACHINE_KEYS = [
  "serverPath",
  "pythonPath",
  "serverArgs",
  "model",
  "fallbackModel",
  "nextEditModel",
  "fixCheckers",
  "backend",
  "url",
  "apiKeyEnv",
  "remoteModel",
] as const;

/** The subset of vscode.WorkspaceConfiguration.inspect that `userValue` needs. */
export interface Inspectable {
  inspect<T>(key: string): { defaultValue?: T; globalValue?: T } | undefined;
}

/**
 * The user's own value of a setting: user settings (remote-machine settings in a remote window), else the
 * default. Workspace and folder values are never looked at (`get()` would merge them in).
 */
export function userValue<T>(cfg: Inspectable, key: string, fallback: T): T {
  const seen = cfg.inspect<T>(key);
  return seen?.globalValue ?? seen?.defaultValue ?? fallback;
}

export interface TrustContext {
  /** vscode.workspace.isTrusted */
  trusted: boolean;
  /** The workspace folders (file system paths). */
  folders: readonly string[];
  /** The server's working directory, against which a relative program or model path is resolved. */
  serverCwd?: string;
}

export const TRUSTED: TrustContext = { trusted: true, folders: [] };

export type Realpath = (p: string) => string;

const realpathOrSelf: Realpath = (p) => {
  try {
    return fs.realpathSync.native(p);
  } catch {
    return p;
  }
};

function isWithin(child: string, parent: string): boolean {
  const rel = path.relative(parent, child);
  return rel === "" || (rel !== ".." && !rel.startsWith(".." + path.sep) && !path.isAbsolute(rel));
}

/**
 * The workspace folder that holds `file` (as written, or once symlinks are resolved), if any.
 * A relative `file` is taken relative to `base`.
 */
export function folderHolding(
  file: string,
  folders: readonly string[],
  base = process.cwd(),
  realpath: Realpath = realpathOrSelf,
): string | undefined {
  const absolute = path.resolve(base, file);
  const candidates = [absolute, realpath(absolute)];
  for (const folder of folders) {
    const roots = [path.resolve(folder), realpath(path.resolve(folder))];
    if (candidates.some((c) => roots.some((r) => isWithin(c, r)))) {
      return folder;
    }
  }
  return undefined;
}

/** Whether `program` names a file (it has a directory part) rather than a command looked up on PATH. */
export function hasDirectory(program: string): boolean {
  return program.includes("/") || (process.platform === "win32" && program.includes("\\"));
}

/**
 * Every executable called `name` on PATH, in lookup order (absolute paths only: a relative PATH entry
 * depends on the working directory, which is not known here).
 */
export function findOnPath(
  name: string,
  env: NodeJS.ProcessEnv = process.env,
  platform: NodeJS.Platform = process.platform,
  isExecutable: (p: string) => boolean = isExecutableFile,
): string[] {
  const windows = platform === "win32";
  const paths = windows ? path.win32 : path.posix;
  const exts = windows ? ["", ...(env.PATHEXT ?? ".COM;.EXE;.BAT;.CMD").split(";").filter(Boolean)] : [""];
  const dirs = (env.PATH ?? env.Path ?? "").split(paths.delimiter).filter((d) => d && paths.isAbsolute(d));
  const found: string[] = [];
  for (const dir of dirs) {
    for (const ext of exts) {
      const candidate = paths.join(dir, name + ext);
      if (!found.includes(candidate) && isExecutable(candidate)) {
        found.push(candidate);
      }
    }
  }
  return found;
}

function isExecutableFile(p: string): boolean {
  try {
    if (!fs.statSync(p).isFile()) {
      return false;
    }
    fs.accessSync(p, fs.constants.X_OK);
    return true;
  } catch {
    return false;
  }
}
