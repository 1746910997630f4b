/** The real vscode-languageclient client for fimble (not unit tested: the e2e test drives it). */
import * as readline from "readline";
import * as vscode from "vscode";
import {
  CloseAction,
  ErrorAction,
  LanguageClient,
  LanguageClientOptions,
  RevealOutputChannelOn,
  ServerOptions,
} from "vscode-languageclient/node";
import { StderrRouter } from "./serverLog";
import { ClientHooks } from "./serverManager";
import { ServerCommand } from "./settings";

/** The client reports its own failures through the status bar: no notification per failed (re)start. */
export class FimbleLanguageClient extends LanguageClient {
  override error(message: string, data?: unknown, _showNotification?: boolean | "force"): void {
    super.error(message, data, false);
  }
}

export interface ClientDeps {
  output: vscode.LogOutputChannel;
  initializationOptions: () => unknown;
  middleware: LanguageClientOptions["middleware"];
  /**
   * The server's working directory: never a workspace folder (the library's default). `python -m fimble` puts its
   * working directory first on sys.path, so a workspace that ships a `fimble/` package (or a `json.py`) would run
   * its own code; Windows also looks for a bare command name in the working directory first.
   */
  cwd: string;
}

export function createClient(command: ServerCommand, hooks: ClientHooks, deps: ClientDeps): FimbleLanguageClient {
  const serverOptions: ServerOptions = {
    command: command.command,
    args: command.args,
    // No `transport`: with TransportKind.stdio the library appends `--stdio`, which `fimble serve` does not take.
    options: { cwd: deps.cwd, env: { ...process.env, PYTHONUNBUFFERED: "1" } },
  };
  let closedReported = false;
  const clientOptions: LanguageClientOptions = {
    documentSelector: [{ scheme: "file" }, { scheme: "untitled" }, { scheme: "vscode-remote" }],
    outputChannel: deps.output,
    revealOutputChannelOn: RevealOutputChannelOn.Never,
    initializationOptions: deps.initializationOptions(),
    stdioOptions: {
      stdout: (input, channel) => {
        readline.createInterface({ input, crlfDelay: Infinity, terminal: false }).on("line", (l) => channel.info(l));
      },
      // The server logs with Python's logging: keep its levels instead of showing everything as an error.
      stderr: (input, channel) => {
        const router = new StderrRouter();
        readline.createInterface({ input, crlfDelay: Infinity, terminal: false }).on("line", (line) => {
          const { level, text } = router.route(line);
          channel[level](text);
        });
      },
    },
    middleware: deps.middleware,
    // Restarts are the extension's (with backoff), not the library's.
    connectionOptions: { maxRestartCount: 0 },
    initializationFailedHandler: () => false,
    errorHandler: {
      error: (_error, _message, count) => ({
        action: (count ?? 0) <= 3 ? ErrorAction.Continue : ErrorAction.Shutdown,
        handled: true,
      }),
      closed: () => {
        if (!closedReported) {
          closedReported = true;
          hooks.onClosed("The fimble server stopped unexpectedly (see the log).");
        }
        return { action: CloseAction.DoNotRestart, handled: true };
      },
    },
  };
  return new FimbleLanguageClient("fimble", "fimble", serverOptions, clientOptions);
}
