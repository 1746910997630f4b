/**
 * Installing the fimble server from VS Code: the offer (nothing happens without the user's yes), a progress
 * notification with named steps and a cancel button, the full log in the Output channel, one clear message with
 * Retry on failure, and the reinstall after an extension update. Never in Restricted Mode, never with an
 * interpreter from workspace settings, never with a workspace folder as the working directory.
 */
import * as fs from "fs";
import * as path from "path";
import * as vscode from "vscode";
import {
  BundledServer,
  ManagedInstall,
  ProbeResult,
  ProgressTracker,
  installerEnv,
  isCurrent,
  isNewEnough,
  noPythonMessage,
  pythonCandidates,
  readBundled,
  readManagedInstall,
} from "./install";
import { Outcome, RunningInstall, processes } from "./installRunner";
import { DisplayState } from "./status";
import { findOnPath } from "./trust";

/** globalState key: the bundled wheel an automatic update was last tried for (it is tried once). */
const UPDATE_TRIED = "fimble.updateTriedFor";

export const OFFER_TEXT =
  "fimble: the fimble server is not installed. Install it now? It goes into a Python environment of its own " +
  "(about 700 MB with its default model); if no prebuilt llama.cpp fits, llama.cpp is compiled (5-10 minutes).";

export interface InstallerDeps {
  extensionPath: string;
  /** context.globalStorageUri.fsPath: the install goes into its `server` folder. */
  storagePath: string;
  globalState: vscode.Memento;
  log(line: string): void;
  /** A line of the installer's own output (pip, the compiler). */
  logInstaller(line: string): void;
  showLog(): void;
  status(state: DisplayState, message: string): void;
  trusted(): boolean;
  folders(): string[];
  /** The Python extension's interpreter (asked only in a trusted workspace). */
  pythonExtension(): Promise<string | undefined>;
  /** The user's own python.defaultInterpreterPath. */
  defaultInterpreterPath(): string;
  /** The user's own http.proxy. */
  httpProxy(): string;
  /** A new install is in place: start (or restart) the server from it. */
  onInstalled(install: ManagedInstall): void;
}

export class ServerInstaller {
  private running: RunningInstall | undefined;
  private offered = false;
  private restrictedShown = false;
  private waitTimer: ReturnType<typeof setInterval> | undefined;

  constructor(private readonly deps: InstallerDeps) {}

  get root(): string {
    return path.join(this.deps.storagePath, "server");
  }

  get bundled(): BundledServer | undefined {
    return readBundled(this.deps.extensionPath);
  }

  /** The complete install in use, if any. */
  current(): ManagedInstall | undefined {
    return readManagedInstall(this.root);
  }

  get busy(): boolean {
    return this.running !== undefined;
  }

  /** No server was found: say so in the status bar and offer the install (once per window). */
  async offer(): Promise<void> {
    if (this.running) {
      return;
    }
    if (!this.deps.trusted()) {
      this.deps.status("notInstalled", "The fimble server is not installed; installing it needs a trusted workspace.");
      this.showRestricted();
      return;
    }
    this.deps.status("notInstalled", "The fimble server is not installed.");
    if (this.offered) {
      return;
    }
    this.offered = true;
    const choice = await vscode.window.showInformationMessage(OFFER_TEXT, "Install", "Not now");
    if (choice === "Install") {
      await this.install("install");
    } else {
      this.deps.log('Install declined: "fimble: Install or update the server" (or the status bar) installs it later.');
    }
  }

  /** An install from an older extension: reinstalled once, in the background (the old one serves meanwhile). */
  async updateIfNeeded(): Promise<void> {
    const install = this.current();
    const bundled = this.bundled;
    if (!install || !bundled || isCurrent(install, bundled) || !this.deps.trusted()) {
      return;
    }
    if (this.deps.globalState.get<string>(UPDATE_TRIED) === bundled.sha256) {
      return;
    }
    await this.deps.globalState.update(UPDATE_TRIED, bundled.sha256);
    this.deps.log(`The installed server (fimble ${install.version}) is not this extension's (${bundled.version}): reinstalling`);
    await this.install("update");
  }

  /** Installs (or reinstalls) the bundled server; true when a new install is in place. */
  async install(mode: "install" | "update" = this.current() ? "update" : "install"): Promise<boolean> {
    if (this.running) {
      void vscode.window.showInformationMessage("fimble: the server is being installed already.", "Show Log").then((c) => {
        if (c) {
          this.deps.showLog();
        }
      });
      return false;
    }
    if (!this.deps.trusted()) {
      this.showRestricted(true);
      return false;
    }
    const bundled = this.bundled;
    if (!bundled) {
      return this.failed(
        mode,
        "this build of the extension carries no server (bundled/server.json is missing; build it with `npm run package`).",
      );
    }
    const interactive = mode === "install";
    if (interactive) {
      this.deps.status("installing", "Looking for Python…");
    }
    const python = await this.findPython();
    if (!python.executable) {
      return this.failed(mode, python.message);
    }
    fs.mkdirSync(this.root, { recursive: true });
    const title = mode === "update" ? "fimble: updating the server" : "fimble: installing the server";
    this.deps.log(`${title} with Python ${python.version} (${python.executable}) into ${this.root}`);
    const tracker = new ProgressTracker();
    const outcome = await vscode.window.withProgress(
      { location: vscode.ProgressLocation.Notification, title, cancellable: true },
      (progress, token): Promise<Outcome> => {
        const run = processes.runInstaller({
          python: python.executable as string,
          script: path.join(bundled.dir, bundled.installer),
          args: ["install", "--root", this.root, "--source", path.join(bundled.dir, bundled.wheel)],
          cwd: this.root,
          env: installerEnv(process.env, this.deps.httpProxy()),
          onEvent: (event) => {
            if (event.event === "log") {
              this.deps.logInstaller(event.text);
              return;
            }
            if (event.event === "warning") {
              this.deps.log(`install: ${event.message}`);
            }
            const shown = tracker.update(event);
            if (shown) {
              progress.report(shown);
              if (interactive) {
                // The overall share first: the status bar shows the first percentage of the message.
                this.deps.status("installing", `${Math.round(tracker.percent)}% — ${shown.message ?? ""}`);
              }
            }
          },
          onStderr: (line) => this.deps.logInstaller(line),
        });
        this.running = run;
        token.onCancellationRequested(() => {
          this.deps.log("install: cancelled by the user");
          run.cancel();
        });
        return run.done;
      },
    );
    this.running = undefined;
    if (outcome.kind === "done") {
      const install = this.current();
      if (!install) {
        return this.failed(mode, `the installer finished but left no usable install in ${this.root}.`);
      }
      this.deps.log(`Installed fimble ${outcome.event.version} in ${outcome.event.seconds} s: ${install.python}`);
      void vscode.window.showInformationMessage(
        `fimble: the server is ${mode === "update" ? "updated" : "installed"} (fimble ${outcome.event.version}, ` +
          `${Math.round(outcome.event.seconds)} s).`,
      );
      this.deps.onInstalled(install);
      return true;
    }
    if (outcome.kind === "cancelled") {
      const message = "fimble: the install was cancelled; nothing of it was kept.";
      this.deps.log(message);
      if (mode === "install") {
        this.deps.status("notInstalled", "The install was cancelled.");
      }
      void vscode.window.showInformationMessage(message, "Install").then((choice) => {
        if (choice) {
          void this.install(mode);
        }
      });
      return false;
    }
    if (outcome.code === "busy") {
      this.waitForOtherInstall();
    }
    return this.failed(mode, outcome.message);
  }

  /** Once a server from the new install is up, the venv it replaced goes (it was kept in case the new one failed). */
  removePrevious(): void {
    const install = this.current();
    if (!install?.previous) {
      return;
    }
    const previous = path.join(this.root, install.previous);
    try {
      fs.rmSync(previous, { recursive: true, force: true });
      this.deps.log(`Removed the previous server install ${previous}`);
    } catch (error) {
      this.deps.log(`Could not remove ${previous} (the next install will): ${String(error)}`);
    }
  }

  /** Removes every install (the venvs, the log); the model in fimble's cache folder stays. */
  remove(): void {
    fs.rmSync(this.root, { recursive: true, force: true });
    this.deps.log(`Removed ${this.root}`);
  }

  dispose(): void {
    this.running?.cancel();
    if (this.waitTimer) {
      clearInterval(this.waitTimer);
    }
  }

  private async findPython(): Promise<{ executable?: string; version?: string; message: string }> {
    const trusted = this.deps.trusted();
    const candidates = pythonCandidates({
      pythonExtension: trusted ? await this.deps.pythonExtension() : undefined,
      defaultInterpreterPath: this.deps.defaultInterpreterPath(),
      folders: this.deps.folders(),
      which: (name) => findOnPath(name),
    });
    const probes: ProbeResult[] = [];
    for (const candidate of candidates) {
      const probe = await processes.probe(candidate, this.deps.extensionPath);
      probes.push(probe);
      this.deps.log(
        `Python candidate ${[candidate.command, ...candidate.args].join(" ")} (${candidate.label}): ` +
          (probe.version ? probe.version.join(".") : `not usable: ${probe.error}`),
      );
      if (probe.version && isNewEnough(probe.version) && probe.executable) {
        return { executable: probe.executable, version: probe.version.join("."), message: "" };
      }
    }
    return { message: noPythonMessage(probes) };
  }

  private failed(mode: "install" | "update", message: string): false {
    const text = message.replace(/^fimble:\s*/i, "");
    this.deps.log(`install failed: ${text}`);
    if (mode === "install") {
      this.deps.status("notInstalled", `The install failed: ${text}`);
    }
    const prefix = mode === "update" ? "fimble: updating the server failed (the installed one keeps running): " : "fimble: ";
    void vscode.window.showErrorMessage(prefix + text, "Retry", "Show Log").then((choice) => {
      if (choice === "Retry") {
        void this.install(mode);
      } else if (choice === "Show Log") {
        this.deps.showLog();
      }
    });
    return false;
  }

  private showRestricted(always = false): void {
    if (this.restrictedShown && !always) {
      return;
    }
    this.restrictedShown = true;
    void vscode.window
      .showWarningMessage(
        "fimble: the fimble server is not installed, and installing it runs Python and pip, which fimble does not " +
          "do in Restricted Mode. Trust the workspace (or open a window without a folder) to install it.",
        "Manage Workspace Trust",
      )
      .then((choice) => {
        if (choice) {
          void vscode.commands.executeCommand("workbench.trust.manage");
        }
      });
  }

  /** Another window installs: start the server once its install is in place. */
  private waitForOtherInstall(): void {
    if (this.waitTimer) {
      return;
    }
    const before = this.current()?.venv;
    const deadline = Date.now() + 60 * 60 * 1000;
    this.waitTimer = setInterval(() => {
      const install = this.current();
      if ((install && install.venv !== before) || Date.now() > deadline) {
        clearInterval(this.waitTimer);
        this.waitTimer = undefined;
        if (install && install.venv !== before) {
          this.deps.onInstalled(install);
        }
      }
    }, 3000);
  }
}
