/**
 * The processes behind the install: probing a Python, asking an interpreter whether it has fimble, running the
 * installer. Every one runs in a folder of the extension's (never a workspace folder: `python -c` and
 * `python -m` put their working directory first on sys.path, and pip reads project files there).
 *
 * `processes` is an object so that the extension's unit tests can replace it; the end-to-end test runs the real one.
 */
import { ChildProcess, execFile, spawn } from "child_process";
import * as readline from "readline";
import { InstallEvent, PROBE_CODE, ProbeResult, PythonCandidate, parseEvent, parseProbe } from "./install";

export type Outcome =
  | { kind: "done"; event: Extract<InstallEvent, { event: "done" }> }
  | { kind: "error"; code: string; message: string }
  | { kind: "cancelled" };

export interface RunOptions {
  python: string;
  script: string;
  args: string[];
  cwd: string;
  env: NodeJS.ProcessEnv;
  onEvent(event: InstallEvent): void;
  /** A line the installer wrote on stderr (Python's own errors). */
  onStderr(line: string): void;
}

export interface RunningInstall {
  readonly done: Promise<Outcome>;
  cancel(): void;
}

export interface Processes {
  probe(candidate: PythonCandidate, cwd: string): Promise<ProbeResult>;
  hasFimble(python: string, cwd: string): Promise<boolean>;
  runInstaller(options: RunOptions): RunningInstall;
}

function probe(candidate: PythonCandidate, cwd: string): Promise<ProbeResult> {
  return new Promise((resolve) => {
    execFile(
      candidate.command,
      [...candidate.args, "-c", PROBE_CODE],
      { cwd, timeout: 20_000, windowsHide: true },
      (error, stdout, stderr) => {
        const parsed = parseProbe(String(stdout));
        if (parsed) {
          resolve({ candidate, version: parsed.version, executable: parsed.executable || candidate.command });
        } else {
          resolve({ candidate, error: String(stderr || error?.message || "no version printed").trim().slice(0, 300) });
        }
      },
    );
  });
}

function hasFimble(python: string, cwd: string): Promise<boolean> {
  const code = "import importlib.util, sys; sys.exit(0 if importlib.util.find_spec('fimble') else 3)";
  return new Promise((resolve) => {
    execFile(python, ["-c", code], { cwd, timeout: 20_000, windowsHide: true }, (error) => resolve(!error));
  });
}

function killTree(child: ChildProcess): void {
  if (child.exitCode !== null || child.pid === undefined) {
    return;
  }
  if (process.platform === "win32") {
    // No signal reaches a Windows process: end the installer and what it started (the next install removes
    // what this one left).
    spawn("taskkill", ["/T", "/F", "/PID", String(child.pid)], { windowsHide: true });
  } else {
    // The installer stops pip and its build (cmake, the compilers) and removes the unfinished venv.
    child.kill("SIGTERM");
  }
}

function runInstaller(options: RunOptions): RunningInstall {
  const child = spawn(options.python, ["-I", options.script, ...options.args], {
    cwd: options.cwd,
    env: options.env,
    stdio: ["ignore", "pipe", "pipe"],
    windowsHide: true,
  });
  let outcome: Outcome | undefined;
  let cancelled = false;
  const done = new Promise<Outcome>((resolve) => {
    readline.createInterface({ input: child.stdout, crlfDelay: Infinity }).on("line", (line) => {
      const event = parseEvent(line);
      if (!event) {
        options.onStderr(line);
        return;
      }
      if (event.event === "done") {
        outcome = { kind: "done", event };
      } else if (event.event === "error") {
        outcome = { kind: "error", code: event.code, message: event.message };
      } else if (event.event === "cancelled") {
        outcome = { kind: "cancelled" };
      }
      options.onEvent(event);
    });
    const stderr: string[] = [];
    readline.createInterface({ input: child.stderr, crlfDelay: Infinity }).on("line", (line) => {
      stderr.push(line);
      options.onStderr(line);
    });
    child.on("error", (error) =>
      resolve({ kind: "error", code: "spawn-failed", message: `Could not run ${options.python}: ${error.message}` }),
    );
    child.on("close", (code) => {
      if (outcome) {
        resolve(outcome);
      } else if (cancelled) {
        resolve({ kind: "cancelled" });
      } else {
        const last = stderr.filter((l) => l.trim()).slice(-1)[0] ?? "no output";
        resolve({ kind: "error", code: "installer-failed", message: `The installer stopped (exit code ${code}): ${last}` });
      }
    });
  });
  return {
    done,
    cancel: () => {
      cancelled = true;
      killTree(child);
    },
  };
}

export const processes: Processes = { probe, hasFimble, runInstaller };
