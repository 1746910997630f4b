/** fimble for VS Code: starts `fimble serve` and wires its inline completions, status and commands. */
import * as crypto from "crypto";
import * as path from "path";
import * as vscode from "vscode";
import {
  CodeAction as LspCodeAction,
  CodeActionKind as LspCodeActionKind,
  CodeActionRequest,
  CodeActionResolveRequest,
  Command as LspCommand,
  DidChangeConfigurationNotification,
  ExecuteCommandRequest,
  LanguageClientOptions,
  MessageType,
  ShowMessageNotification,
} from "vscode-languageclient/node";
import { Backoff } from "./backoff";
import { FimbleLanguageClient, createClient } from "./client";
import { ExplainPanel } from "./explainPanel";
import { ExplanationParams } from "./explanations";
import { NextEditController } from "./nextEditController";
import { managedCommand } from "./install";
import { ServerInstaller } from "./installFlow";
import { processes } from "./installRunner";
import { DebugPromptResult, formatDebugPrompt } from "./prompt";
import { ServerManager } from "./serverManager";
import {
  RESTART_KEYS,
  SERVER_KEYS,
  ServerCommand,
  isLanguageEnabled,
  readServerSettings,
  resolveServerCommand,
} from "./settings";
import { StatusBar, StatusParams } from "./status";
import { TrustContext, folderHolding, userValue } from "./trust";

const SECTION = "fimble";
/** LSP's RequestCancelled error code. */
const REQUEST_CANCELLED = -32800;

function workspaceFolderPath(): string | undefined {
  const folder = vscode.workspace.workspaceFolders?.[0];
  return folder?.uri.scheme === "file" ? folder.uri.fsPath : undefined;
}

/** The file system paths of all workspace folders. */
function workspaceFolderPaths(): string[] {
  return (vscode.workspace.workspaceFolders ?? []).filter((f) => f.uri.scheme === "file").map((f) => f.uri.fsPath);
}

function config(): vscode.WorkspaceConfiguration {
  return vscode.workspace.getConfiguration(SECTION);
}

/** The interpreter chosen in the Python extension, when it is installed (its API is optional). */
async function pythonExtensionInterpreter(): Promise<string | undefined> {
  try {
    const ext = vscode.extensions.getExtension("ms-python.python");
    if (!ext) {
      return undefined;
    }
    const api = (ext.isActive ? ext.exports : await ext.activate()) as {
      environments?: { getActiveEnvironmentPath(resource?: vscode.Uri): { path?: string } | undefined };
    };
    const env = api?.environments?.getActiveEnvironmentPath(vscode.workspace.workspaceFolders?.[0]?.uri);
    return env?.path || undefined;
  } catch {
    return undefined;
  }
}

/**
 * A CodeAction, not a bare Command. (The protocol's CodeAction.is wants an edit or a command, which an action
 * that is resolved later does not have yet.)
 */
function isCodeAction(item: LspCodeAction | LspCommand): item is LspCodeAction {
  return typeof (item as { command?: unknown }).command !== "string";
}

export interface FimbleApi {
  /** For tests: the running client, if any. */
  readonly client: FimbleLanguageClient | undefined;
  readonly status: StatusBar;
}

export async function activate(context: vscode.ExtensionContext): Promise<FimbleApi> {
  const output = vscode.window.createOutputChannel("fimble", { log: true });
  context.subscriptions.push(output);
  const log = (line: string) => output.info(line);
  const status = new StatusBar();
  context.subscriptions.push(status);
  status.setEnabled(config().get<boolean>("enable", true));
  const explainPanel = new ExplainPanel(context.extensionUri);
  context.subscriptions.push(explainPanel);

  let lastCompletion: { uri: vscode.Uri; position: vscode.Position } | undefined;
  /** The last error shown to the user, normalized; the same error is not shown twice in a row. */
  let lastErrorShown = "";
  const normalize = (message: string) => message.replace(/^fimble:\s*/i, "").trim();

  // The server never runs in a workspace folder (see ClientDeps.cwd): the extension's own folder holds no Python.
  const serverCwd = context.extensionUri.fsPath;
  const trust = (): TrustContext => ({
    trusted: vscode.workspace.isTrusted,
    folders: workspaceFolderPaths(),
    serverCwd,
  });
  /** Restricted Mode refusals already reported (each is reported once, not on every configuration pull). */
  const refusalsShown = new Set<string>();
  const reportRefused = (text: string) => {
    if (refusalsShown.has(text)) {
      return;
    }
    refusalsShown.add(text);
    log(text);
    void vscode.window.showWarningMessage(`fimble: ${text}`, "Manage Workspace Trust").then((choice) => {
      if (choice) {
        void vscode.commands.executeCommand("workbench.trust.manage");
      }
    });
  };
  const serverSettings = () =>
    readServerSettings(config(), workspaceFolderPath(), trust(), (key, value, folder) =>
      reportRefused(
        `Restricted Mode: not loading fimble.${key} (${value}): it lies inside the untrusted workspace folder ` +
          `${folder}. Trust the workspace to use it.`,
      ),
    );

  /** The last inline completion answer: a next edit is not asked for while its ghost text shows. */
  let lastInline: { uri: string; version: number; items: number } | undefined;
  const nextEdit = new NextEditController({
    client: () => manager.client,
    enabled: (document) => {
      const cfg = config();
      return (
        cfg.get<boolean>("nextEdit", true) !== false &&
        isLanguageEnabled(document.languageId, cfg.get<string[]>("enabledLanguages"), cfg.get<boolean>("enable", true))
      );
    },
    completionShowing: (document) =>
      lastInline !== undefined &&
      lastInline.items > 0 &&
      lastInline.uri === document.uri.toString() &&
      lastInline.version === document.version,
    log: (line) => output.debug(line),
  });
  context.subscriptions.push(nextEdit);

  const middleware: LanguageClientOptions["middleware"] = {
    provideInlineCompletionItems: async (document, position, ctx, token, next) => {
      const cfg = config();
      if (!isLanguageEnabled(document.languageId, cfg.get<string[]>("enabledLanguages"), cfg.get<boolean>("enable", true))) {
        return undefined;
      }
      lastCompletion = { uri: document.uri, position };
      const version = document.version;
      const answer = await next(document, position, ctx, token);
      const items = Array.isArray(answer) ? answer : (answer?.items ?? []);
      lastInline = { uri: document.uri.toString(), version, items: items.length };
      // Accepting a completion asks for the next edit (PROTOCOL.md "Next edit").
      for (const item of items) {
        item.command = nextEdit.acceptCommand(item.command);
      }
      return answer;
    },
    // VS Code shows inline completions; the server's textDocument/completion fallback is for other editors.
    provideCompletionItem: () => undefined,
    workspace: {
      // The server pulls section `fimble`: answer with the protocol's keys only, computed here (user-only values
      // for the machine-scoped keys, workspaceTrusted from VS Code) and never the raw section, which a workspace
      // settings file could fill with anything (`"fimble.workspaceTrusted": true` included).
      configuration: (params, token, next) => {
        const fallback = next(params, token);
        const items = params.items;
        const ours = (section: string | undefined) => section === SECTION || section?.startsWith(`${SECTION}.`) === true;
        if (!items.some((item) => ours(item.section))) {
          return fallback;
        }
        return Promise.resolve(fallback).then((answers) => {
          if (!Array.isArray(answers)) {
            return answers;
          }
          return items.map((item, i) => {
            if (!ours(item.section)) {
              return answers[i];
            }
            const settings = serverSettings();
            const key = item.section === SECTION ? undefined : item.section?.slice(SECTION.length + 1);
            return key === undefined ? settings : ((settings as unknown as Record<string, unknown>)[key] ?? null);
          });
        });
      },
      // Sent by the extension itself (see onDidChangeConfiguration below), with the protocol's keys.
      didChangeConfiguration: async () => undefined,
    },
  };

  const installer = new ServerInstaller({
    extensionPath: context.extensionUri.fsPath,
    storagePath: context.globalStorageUri.fsPath,
    globalState: context.globalState,
    log,
    logInstaller: (line) => output.info(`[install] ${line}`),
    showLog: () => output.show(true),
    status: (state, message) => status.update({ state, message }),
    trusted: () => vscode.workspace.isTrusted,
    folders: workspaceFolderPaths,
    pythonExtension: pythonExtensionInterpreter,
    defaultInterpreterPath: () => userValue(vscode.workspace.getConfiguration("python"), "defaultInterpreterPath", ""),
    httpProxy: () => userValue(vscode.workspace.getConfiguration("http"), "proxy", ""),
    onInstalled: () => {
      lastErrorShown = "";
      void manager.start(true);
    },
  });
  context.subscriptions.push({ dispose: () => installer.dispose() });

  // The program fimble starts comes from the user's own settings only; in Restricted Mode not from the Python
  // extension (whose interpreter a workspace selects) nor from inside a workspace folder. An interpreter that was
  // not set for fimble (the Python extension's, python.defaultInterpreterPath) counts only when it has fimble.
  const resolveCommand = async (): Promise<ServerCommand> => {
    const cfg = config();
    const pythonCfg = vscode.workspace.getConfiguration("python");
    const serverPath = userValue(cfg, "serverPath", "");
    const pythonPath = userValue(cfg, "pythonPath", "");
    const serverArgs = userValue<string[]>(cfg, "serverArgs", []);
    const trustNow = trust();
    const installed = serverPath || pythonPath ? undefined : installer.current();
    const lookAround = !serverPath && !pythonPath && !installed;
    const withFimble = async (python: string | undefined): Promise<string | undefined> => {
      if (!python || !lookAround) {
        return undefined;
      }
      // Asking runs the interpreter: never one inside an untrusted workspace.
      if (!trustNow.trusted && folderHolding(python, trustNow.folders, serverCwd) !== undefined) {
        return python;
      }
      const has = await processes.hasFimble(python, serverCwd);
      if (!has) {
        log(`${python} has no fimble: not using it`);
      }
      return has ? python : undefined;
    };
    const defaultInterpreter = userValue(pythonCfg, "defaultInterpreterPath", "");
    const command = resolveServerCommand({
      serverPath,
      pythonPath,
      serverArgs,
      installed: installed && managedCommand(installed, serverArgs.filter((a) => typeof a === "string")),
      pythonExtensionInterpreter: await withFimble(trustNow.trusted ? await pythonExtensionInterpreter() : undefined),
      defaultInterpreterPath: ["python", "python3", ""].includes(defaultInterpreter.trim())
        ? defaultInterpreter
        : await withFimble(defaultInterpreter),
      workspaceFolder: workspaceFolderPath(),
      trust: trustNow,
    });
    for (const reason of command.refused ?? []) {
      log(`Restricted Mode: not starting ${reason}`);
    }
    return command;
  };

  const showFailure = (message: string) => {
    void vscode.window.showErrorMessage(`fimble: ${message}`, "Show Log", "Open Settings", "Restart").then((choice) => {
      if (choice === "Show Log") {
        output.show(true);
      } else if (choice === "Open Settings") {
        void vscode.commands.executeCommand("workbench.action.openSettings", "@ext:fimble.fimble");
      } else if (choice === "Restart") {
        void manager.start(true);
      }
    });
  };

  const manager: ServerManager<FimbleLanguageClient> = new ServerManager(
    (command, hooks) => {
      const client = createClient(command, hooks, {
        output,
        initializationOptions: serverSettings,
        middleware,
        cwd: serverCwd,
      });
      const reportError = (message: string) => {
        const key = normalize(message);
        if (key && key !== lastErrorShown) {
          lastErrorShown = key;
          log(`server error: ${key}`);
          showFailure(key);
        }
      };
      client.onNotification("fimble/status", (params: StatusParams) => {
        if (!params || typeof params.state !== "string") {
          return;
        }
        status.update(params);
        if (params.state === "error" && params.message) {
          reportError(params.message);
        } else if (params.state === "ready") {
          lastErrorShown = "";
          if (command.source === "installed") {
            installer.removePrevious();
          }
        }
      });
      // Replaces the library's handler: the server reports a failure both as window/showMessage and as
      // fimble/status, and the user should get one message (with the log and settings at hand).
      client.onNotification(ShowMessageNotification.type, (params) => {
        if (params.type === MessageType.Error) {
          reportError(params.message);
        } else if (params.type === MessageType.Warning) {
          void vscode.window.showWarningMessage(params.message);
        } else {
          void vscode.window.showInformationMessage(params.message);
        }
      });
      client.onNotification("fimble/explanation", (params: ExplanationParams) => explainPanel.onNotification(params));
      return client;
    },
    resolveCommand,
    {
      status: (state, message) => status.update({ state, message }),
      log,
      notifyFailure: (message) => showFailure(message),
      notInstalled: () => void installer.offer(),
    },
    new Backoff(),
  );
  context.subscriptions.push({ dispose: () => void manager.dispose() });

  const requireClient = (): FimbleLanguageClient | undefined => {
    const client = manager.client;
    if (!client) {
      void vscode.window.showWarningMessage(
        manager.retryPending
          ? "fimble: the server is not running (a restart is scheduled). See the log."
          : "fimble: the server is not running yet.",
        "Show Log",
      ).then((c) => c && output.show(true));
    }
    return client;
  };

  const setEnabled = async (enabled: boolean) => {
    await config().update("enable", enabled, vscode.ConfigurationTarget.Global);
    status.setEnabled(enabled);
  };

  context.subscriptions.push(
    vscode.commands.registerCommand("fimble.enable", () => setEnabled(true)),
    vscode.commands.registerCommand("fimble.disable", () => setEnabled(false)),
    vscode.commands.registerCommand("fimble.toggle", () => setEnabled(!config().get<boolean>("enable", true))),
    vscode.commands.registerCommand("fimble.showLog", () => output.show(true)),
    vscode.commands.registerCommand("fimble.restartServer", () => manager.start(true)),
    vscode.commands.registerCommand("fimble.explainSelection", () => explainSelection()),
    vscode.commands.registerCommand("fimble.fixAtCursor", () => fixAtCursor()),
    vscode.commands.registerCommand("fimble.showLastPrompt", () => showLastPrompt()),
    vscode.commands.registerCommand("fimble.statusMenu", () => statusMenu()),
    vscode.commands.registerCommand("fimble.installServer", () => installer.install()),
    vscode.commands.registerCommand("fimble.removeServer", () => removeServer()),
  );

  async function removeServer(): Promise<void> {
    if (!installer.current()) {
      void vscode.window.showInformationMessage(`fimble: no server is installed in ${installer.root}.`);
      return;
    }
    const choice = await vscode.window.showWarningMessage(
      `fimble: remove the installed server (${installer.root})? The default model's copy in fimble's cache folder ` +
        "stays (see the README to remove it too).",
      { modal: true },
      "Remove",
    );
    if (choice !== "Remove") {
      return;
    }
    await manager.stop();
    installer.remove();
    void manager.start(true);
  }

  // Trust turns on what Restricted Mode held back (git, checkers, the workspace's interpreter): a fresh server
  // picks it all up. (Trust cannot be taken back without a new window.)
  context.subscriptions.push(
    vscode.workspace.onDidGrantWorkspaceTrust(() => {
      log("The workspace is trusted now: restarting the server");
      refusalsShown.clear();
      void manager.start(true).then(() => installer.updateIfNeeded());
    }),
  );

  context.subscriptions.push(
    vscode.workspace.onDidChangeConfiguration((event) => {
      if (!event.affectsConfiguration(SECTION)) {
        return;
      }
      output.debug("fimble settings changed");
      if (event.affectsConfiguration(`${SECTION}.enable`)) {
        status.setEnabled(config().get<boolean>("enable", true));
      }
      if (RESTART_KEYS.some((k) => event.affectsConfiguration(`${SECTION}.${k}`))) {
        log("Server command changed: restarting");
        void manager.start(true);
        return;
      }
      if (SERVER_KEYS.some((k) => event.affectsConfiguration(`${SECTION}.${k}`))) {
        const client = manager.client;
        if (client) {
          const settings = serverSettings();
          log(`Settings changed: ${JSON.stringify(settings)}`);
          client
            .sendNotification(DidChangeConfigurationNotification.type, { settings: { [SECTION]: settings } })
            .catch((e: unknown) => log(`workspace/didChangeConfiguration failed: ${String(e)}`));
        } else if (!manager.isRunning) {
          // A failed server may start with the new settings (for example a model path fixed).
          void manager.start(true);
        }
      }
    }),
  );

  async function explainSelection(): Promise<void> {
    const editor = vscode.window.activeTextEditor;
    if (!editor) {
      void vscode.window.showInformationMessage("fimble: open a file and select code to explain.");
      return;
    }
    const client = requireClient();
    if (!client) {
      return;
    }
    const doc = editor.document;
    // An empty selection: the server explains the enclosing statement or definition.
    const range: vscode.Range = editor.selection;
    const token = `fimble-explain-${crypto.randomUUID()}`;
    const name = path.basename(doc.uri.path);
    const title = `Explain ${name}:${range.start.line + 1}${range.end.line !== range.start.line ? "-" + (range.end.line + 1) : ""}`;
    explainPanel.begin(token, title);
    const args = [{ uri: doc.uri.toString(), range: client.code2ProtocolConverter.asRange(range), token }];
    try {
      const result = await vscode.window.withProgress(
        { location: vscode.ProgressLocation.Window, title: "fimble: explaining…", cancellable: true },
        (_progress, cancel) =>
          client.sendRequest(ExecuteCommandRequest.type, { command: "fimble.explain", arguments: args }, cancel),
      );
      const markdown = (result as { markdown?: unknown } | null)?.markdown;
      explainPanel.finish(token, typeof markdown === "string" ? markdown : undefined);
    } catch (error) {
      const message = error instanceof Error ? error.message : String(error);
      const code = (error as { code?: unknown }).code;
      if (code === REQUEST_CANCELLED) {
        log(`fimble.explain cancelled: ${message}`);
        explainPanel.fail(token, "Cancelled (a newer explanation replaced this one).");
      } else {
        log(`fimble.explain failed: ${message}`);
        explainPanel.fail(token, `The explanation failed: ${message}`);
      }
    }
  }

  async function fixAtCursor(): Promise<void> {
    const editor = vscode.window.activeTextEditor;
    if (!editor) {
      return;
    }
    const client = requireClient();
    if (!client) {
      return;
    }
    const doc = editor.document;
    const range: vscode.Range = editor.selection.isEmpty
      ? new vscode.Range(editor.selection.active, editor.selection.active)
      : editor.selection;
    const diagnostics = vscode.languages
      .getDiagnostics(doc.uri)
      .filter((d) => d.range.intersection(doc.lineAt(range.start.line).range.union(range)) !== undefined);
    await vscode.window.withProgress(
      { location: vscode.ProgressLocation.Notification, title: "fimble: looking for a fix…", cancellable: true },
      async (progress, cancel) => {
        const actions = await client.sendRequest(
          CodeActionRequest.type,
          {
            textDocument: { uri: doc.uri.toString() },
            range: client.code2ProtocolConverter.asRange(range),
            context: {
              diagnostics: await client.code2ProtocolConverter.asDiagnostics(diagnostics, cancel),
              only: [LspCodeActionKind.QuickFix],
            },
          },
          cancel,
        );
        const fixes = (actions ?? []).filter(
          (a): a is LspCodeAction => isCodeAction(a) && (a.kind === undefined || a.kind.startsWith(LspCodeActionKind.QuickFix)),
        );
        const commands = (actions ?? []).filter((a): a is LspCommand => !isCodeAction(a));
        const choices: (LspCodeAction | LspCommand)[] = [...fixes, ...commands];
        if (choices.length === 0) {
          void vscode.window.showInformationMessage("fimble: no fix here.");
          return;
        }
        let chosen = choices.find((c) => isCodeAction(c) && c.isPreferred) ?? choices[0];
        if (choices.length > 1) {
          const pick = await vscode.window.showQuickPick(
            choices.map((c) => ({ label: c.title, action: c })),
            { placeHolder: "Fix with fimble" },
          );
          if (!pick) {
            return;
          }
          chosen = pick.action;
        }
        if (cancel.isCancellationRequested) {
          return;
        }
        progress.report({ message: chosen.title });
        let action: LspCodeAction | LspCommand = chosen;
        if (isCodeAction(action) && action.edit === undefined && action.command === undefined) {
          action = await client.sendRequest(CodeActionResolveRequest.type, action, cancel);
        }
        if (isCodeAction(action)) {
          if (action.disabled) {
            void vscode.window.showInformationMessage(`fimble: ${action.disabled.reason}`);
            return;
          }
          if (!action.edit && !action.command) {
            // The server says why in the title ("No verified fix: ...") and usually in a message too.
            log(`fix at cursor: ${action.title}`);
            vscode.window.setStatusBarMessage(`fimble: ${action.title}`, 8000);
            return;
          }
          if (action.edit) {
            if (/unverified/i.test(action.title)) {
              const choice = await vscode.window.showWarningMessage(`fimble: ${action.title}. Apply it?`, "Apply", "Cancel");
              if (choice !== "Apply") {
                return;
              }
            }
            const edit = await client.protocol2CodeConverter.asWorkspaceEdit(action.edit, cancel);
            const applied = await vscode.workspace.applyEdit(edit);
            if (!applied) {
              void vscode.window.showWarningMessage("fimble: the fix could not be applied (the file changed?).");
            } else {
              vscode.window.setStatusBarMessage(`fimble: ${action.title}`, 8000);
            }
          }
          if (action.command) {
            await client.sendRequest(ExecuteCommandRequest.type, {
              command: action.command.command,
              arguments: action.command.arguments,
            });
          }
        } else {
          await client.sendRequest(ExecuteCommandRequest.type, { command: action.command, arguments: action.arguments });
        }
      },
    ).then(undefined, (error: unknown) => {
      const message = error instanceof Error ? error.message : String(error);
      log(`fix at cursor failed: ${message}`);
      void vscode.window.showErrorMessage(`fimble: the fix failed: ${message}`);
    });
  }

  async function showLastPrompt(): Promise<void> {
    const client = requireClient();
    if (!client) {
      return;
    }
    const editor = vscode.window.activeTextEditor;
    let where = lastCompletion;
    if (editor && (!where || where.uri.toString() !== editor.document.uri.toString())) {
      where = { uri: editor.document.uri, position: editor.selection.active };
    }
    if (!where) {
      void vscode.window.showInformationMessage("fimble: no completion yet; open a file first.");
      return;
    }
    try {
      const result = await client.sendRequest<DebugPromptResult>("fimble/debugPrompt", {
        textDocument: { uri: where.uri.toString() },
        position: client.code2ProtocolConverter.asPosition(where.position),
      });
      const content = formatDebugPrompt(result ?? { prompt: "" }, {
        file: path.basename(where.uri.path),
        line: where.position.line,
        character: where.position.character,
      });
      const doc = await vscode.workspace.openTextDocument({ language: "markdown", content });
      await vscode.window.showTextDocument(doc, { viewColumn: vscode.ViewColumn.Beside, preview: true, preserveFocus: true });
    } catch (error) {
      const message = error instanceof Error ? error.message : String(error);
      log(`fimble/debugPrompt failed: ${message}`);
      void vscode.window.showErrorMessage(`fimble: cannot show the prompt: ${message}`);
    }
  }

  async function statusMenu(): Promise<void> {
    const enabled = config().get<boolean>("enable", true);
    const items: (vscode.QuickPickItem & { run: () => unknown })[] = [
      enabled
        ? { label: "$(circle-slash) Disable inline suggestions", run: () => setEnabled(false) }
        : { label: "$(check) Enable inline suggestions", run: () => setEnabled(true) },
      { label: "$(book) Explain selection", run: () => explainSelection() },
      { label: "$(wrench) Fix at cursor", run: () => fixAtCursor() },
      { label: "$(debug) Show the last prompt", run: () => showLastPrompt() },
      { label: "$(output) Show server log", run: () => output.show(true) },
      { label: "$(debug-restart) Restart server", run: () => manager.start(true) },
      { label: "$(cloud-download) Install or update the server", run: () => installer.install() },
      {
        label: "$(gear) Settings",
        run: () => vscode.commands.executeCommand("workbench.action.openSettings", "@ext:fimble.fimble"),
      },
    ];
    const cur = status.current;
    const pick = await vscode.window.showQuickPick(items, {
      placeHolder: `fimble: ${cur.state}${cur.message ? " — " + cur.message : ""}`,
    });
    await pick?.run();
  }

  // Start in the background: activation (and the editor) never waits for the model. An install from an older
  // extension serves until its replacement is in place.
  void manager.start(true).then(() => installer.updateIfNeeded());

  return {
    get client() {
      return manager.client;
    },
    status,
  };
}

export function deactivate(): void {
  // The ServerManager is disposed through context.subscriptions.
}
