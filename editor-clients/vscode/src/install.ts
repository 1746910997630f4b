/**
 * The fimble server the extension installs itself (issue #18): the server it carries (bundled/), the install in
 * the extension's global storage, the Python that builds it, and the installer's progress events.
 *
 * The installer is editor-clients/install/fimble_install.py, shared with the Neovim plugin; it writes
 * `current.json` last, so an install is either complete and named there or not used at all. Everything here is
 * pure or takes its I/O as a parameter, so that it can be unit tested.
 */
import * as fs from "fs";
import * as path from "path";
import { ServerCommand } from "./settings";
import { folderHolding, hasDirectory } from "./trust";

export const MIN_PYTHON = [3, 11] as const;

/** bundled/server.json, written by `npm run package` (scripts/bundle_server.py). */
export interface BundledServer {
  version: string;
  /** The wheel's file name in `dir`. */
  wheel: string;
  sha256: string;
  /** The installer script's file name in `dir`. */
  installer: string;
  /** The bundled/ folder. */
  dir: string;
}

export function readBundled(extensionPath: string, read: (p: string) => string = readText): BundledServer | undefined {
  const dir = path.join(extensionPath, "bundled");
  try {
    const data = JSON.parse(read(path.join(dir, "server.json"))) as Partial<BundledServer>;
    if (typeof data.wheel !== "string" || typeof data.sha256 !== "string" || typeof data.installer !== "string") {
      return undefined;
    }
    return { version: String(data.version ?? ""), wheel: data.wheel, sha256: data.sha256, installer: data.installer, dir };
  } catch {
    return undefined;
  }
}

/** The install current.json names. */
export interface ManagedInstall {
  root: string;
  /** The venv folder's name (under root). */
  venv: string;
  python: string;
  version: string;
  /** `sha256:<wheel's sha256>` for a wheel. */
  sourceId: string;
  /** The venv this one replaced, kept until a server from the new one is up. */
  previous?: string;
}

export function venvPython(venvDir: string, platform: NodeJS.Platform = process.platform): string {
  return platform === "win32" ? path.join(venvDir, "Scripts", "python.exe") : path.join(venvDir, "bin", "python");
}

/** The install in `root`, when current.json names a venv whose Python is there (anything else is not used). */
export function readManagedInstall(
  root: string,
  exists: (p: string) => boolean = fs.existsSync,
  read: (p: string) => string = readText,
  platform: NodeJS.Platform = process.platform,
): ManagedInstall | undefined {
  let data: Record<string, unknown>;
  try {
    data = JSON.parse(read(path.join(root, "current.json"))) as Record<string, unknown>;
  } catch {
    return undefined;
  }
  const venv = data?.venv;
  if (typeof venv !== "string" || !/^venv-[\w.-]+$/.test(venv)) {
    return undefined;
  }
  const python = venvPython(path.join(root, venv), platform);
  if (!exists(python)) {
    return undefined;
  }
  const previous = typeof data.previous === "string" && /^venv-[\w.-]+$/.test(data.previous) ? data.previous : undefined;
  return {
    root,
    venv,
    python,
    version: String(data.version ?? ""),
    sourceId: String(data.source_id ?? ""),
    ...(previous && previous !== venv ? { previous } : {}),
  };
}

/**
 * `python -I -u -m fimble serve`: isolated mode, so nothing from the environment (PYTHONPATH) or the working
 * directory reaches the installed server; unbuffered, since -I also ignores PYTHONUNBUFFERED.
 */
export function managedCommand(install: ManagedInstall, serverArgs: readonly string[] = []): ServerCommand {
  return { command: install.python, args: ["-I", "-u", "-m", "fimble", "serve", ...serverArgs], source: "installed" };
}

/** Whether the install came from the wheel this extension carries (else an extension update reinstalls it). */
export function isCurrent(install: ManagedInstall, bundled: BundledServer): boolean {
  return install.sourceId === `sha256:${bundled.sha256}`;
}

// ---- Finding a Python ------------------------------------------------------------------------------------------

export interface PythonCandidate {
  command: string;
  /** Arguments before the script (`-3` for the Windows launcher). */
  args: string[];
  /** Where it came from, for messages. */
  label: string;
}

export interface CandidateInputs {
  /** The Python extension's interpreter (the caller leaves it out in Restricted Mode). */
  pythonExtension?: string;
  /** The user's own python.defaultInterpreterPath (never a workspace value). */
  defaultInterpreterPath?: string;
  /** Workspace folders: no interpreter inside one is used (a project's files are not a program to install with). */
  folders: readonly string[];
  platform?: NodeJS.Platform;
  /** Every executable of that name on PATH (trust.ts findOnPath). */
  which: (name: string) => string[];
}

/**
 * Pythons to try, in order: the Python extension's interpreter, the user's python.defaultInterpreterPath, the
 * Windows launcher (`py -3`), then every `python3` and `python` on PATH. Workspace settings choose none of them.
 */
export function pythonCandidates(inputs: CandidateInputs): PythonCandidate[] {
  const platform = inputs.platform ?? process.platform;
  const out: PythonCandidate[] = [];
  const seen = new Set<string>();
  const add = (command: string, args: string[], label: string) => {
    const key = [command, ...args].join("\0");
    if (!command || seen.has(key)) {
      return;
    }
    if (hasDirectory(command) && folderHolding(command, inputs.folders) !== undefined) {
      return;
    }
    // The Microsoft Store's python.exe stub opens the Store instead of running anything.
    if (platform === "win32" && /[\\/]WindowsApps[\\/]/i.test(command)) {
      return;
    }
    seen.add(key);
    out.push({ command, args, label });
  };
  if (inputs.pythonExtension) {
    add(inputs.pythonExtension, [], "the Python extension's interpreter");
  }
  const configured = (inputs.defaultInterpreterPath ?? "").trim();
  if (configured && !["python", "python3"].includes(configured)) {
    if (hasDirectory(configured)) {
      add(configured, [], "python.defaultInterpreterPath");
    } else {
      for (const found of inputs.which(configured)) {
        add(found, [], "python.defaultInterpreterPath");
      }
    }
  }
  if (platform === "win32") {
    for (const found of inputs.which("py")) {
      add(found, ["-3"], "the py launcher");
    }
  }
  for (const name of ["python3", "python"]) {
    for (const found of inputs.which(name)) {
      add(found, [], `${name} on PATH`);
    }
  }
  return out;
}

/** Prints the version and the real executable; runs on any Python, 2.7 included (to say it is too old). */
export const PROBE_CODE = "import sys; print('%d.%d.%d' % tuple(sys.version_info[:3])); print(sys.executable)";

export interface ProbeResult {
  candidate: PythonCandidate;
  version?: [number, number, number];
  /** sys.executable: the program the installer runs (for `py -3`, the python.exe it picked). */
  executable?: string;
  error?: string;
}

export function parseProbe(stdout: string): { version: [number, number, number]; executable: string } | undefined {
  const [first, second] = stdout.trim().split(/\r?\n/);
  const m = /^(\d+)\.(\d+)\.(\d+)$/.exec((first ?? "").trim());
  if (!m) {
    return undefined;
  }
  return { version: [Number(m[1]), Number(m[2]), Number(m[3])], executable: (second ?? "").trim() };
}

export function isNewEnough(version: readonly number[]): boolean {
  return version[0] > MIN_PYTHON[0] || (version[0] === MIN_PYTHON[0] && version[1] >= MIN_PYTHON[1]);
}

const NEED = `Python ${MIN_PYTHON.join(".")} or newer`;

/** The message when no probed Python will do: what was found, and what to install. */
export function noPythonMessage(probes: readonly ProbeResult[]): string {
  const found = probes
    .filter((p) => p.version)
    .map((p) => `${p.candidate.command} is ${p.version?.join(".")}`);
  const what = found.length ? `found only ${found.join(", ")}` : "found none (no python3 or python on PATH)";
  return (
    `Installing the fimble server needs ${NEED}, and fimble ${what}. Install ${NEED} (python.org, or your ` +
    "system's package manager; on Debian/Ubuntu also its -venv package), then click Retry."
  );
}

// ---- The installer's events -------------------------------------------------------------------------------------

export type InstallEvent =
  | { event: "start"; root: string; log: string }
  | { event: "step"; step: string; title: string; percent: number }
  | { event: "progress"; step: string; message: string; fraction?: number; percent?: number }
  | { event: "log"; text: string }
  | { event: "warning"; message: string }
  | { event: "done"; venv: string; version: string; seconds: number; previous?: string | null }
  | { event: "error"; code: string; message: string; log?: string }
  | { event: "cancelled"; message: string };

export function parseEvent(line: string): InstallEvent | undefined {
  try {
    const data = JSON.parse(line) as { event?: unknown };
    return data && typeof data.event === "string" ? (data as InstallEvent) : undefined;
  } catch {
    return undefined;
  }
}

/** Turns the installer's events into what a progress notification shows: a message and increments up to 100. */
export class ProgressTracker {
  private reported = 0;
  private title = "";
  private step = 0;

  /** `increment`: how much to add to the bar (VS Code's progress counts increments). */
  update(event: InstallEvent): { message?: string; increment?: number } | undefined {
    if (event.event === "step") {
      this.step++;
      this.title = event.title;
      return { message: `${this.title}…`, ...this.advance(event.percent) };
    }
    if (event.event === "progress") {
      const detail = event.fraction !== undefined ? `${Math.round(event.fraction * 100)}%` : event.message;
      return { message: `${this.title} — ${shorten(detail, 60)}`, ...this.advance(event.percent) };
    }
    return undefined;
  }

  /** The overall percentage shown so far. */
  get percent(): number {
    return this.reported;
  }

  private advance(percent: number | undefined): { increment?: number } {
    if (percent === undefined || percent <= this.reported) {
      return {};
    }
    const increment = Math.min(100, percent) - this.reported;
    this.reported = Math.min(100, percent);
    return { increment };
  }
}

function shorten(text: string, max: number): string {
  return text.length <= max ? text : text.slice(0, max - 1) + "…";
}

/**
 * The installer's environment: the user's own (pip reads PIP_* there, and pip.conf), plus VS Code's http.proxy
 * (the user's value) when no proxy variable is set, since pip does not read VS Code's settings.
 */
export function installerEnv(env: NodeJS.ProcessEnv, httpProxy: string): NodeJS.ProcessEnv {
  const out = { ...env };
  const proxy = httpProxy.trim();
  const has = (name: string) => Boolean(env[name] || env[name.toLowerCase()]);
  if (proxy && !has("HTTPS_PROXY") && !has("HTTP_PROXY") && !has("PIP_PROXY")) {
    out.HTTPS_PROXY = proxy;
    out.HTTP_PROXY = proxy;
  }
  return out;
}

function readText(p: string): string {
  return fs.readFileSync(p, "utf8");
}
