/* eslint-disable @typescript-eslint/no-explicit-any */
/** A stand-in for `vscode-languageclient/node` used by the activation test: records what the extension does. */

export enum CloseAction {
  DoNotRestart = 1,
  Restart = 2,
}
export enum ErrorAction {
  Continue = 1,
  Shutdown = 2,
}
export enum RevealOutputChannelOn {
  Debug = 0,
  Info = 1,
  Warn = 2,
  Error = 3,
  Never = 4,
}
export enum TransportKind {
  stdio = 0,
}

export const ExecuteCommandRequest = { type: { method: "workspace/executeCommand" } };
export const CodeActionRequest = { type: { method: "textDocument/codeAction" } };
export const CodeActionResolveRequest = { type: { method: "codeAction/resolve" } };
export const DidChangeConfigurationNotification = { type: { method: "workspace/didChangeConfiguration" } };
export const CodeActionKind = { QuickFix: "quickfix" };
export const ShowMessageNotification = { type: { method: "window/showMessage" } };
export const MessageType = { Error: 1, Warning: 2, Info: 3, Log: 4, Debug: 5 };
// As strict as the protocol's: an action that is resolved later (no edit, no command yet) is not `is`.
export const CodeAction = {
  is: (v: any): boolean =>
    v !== null && typeof v === "object" && typeof v.title === "string" && (v.edit !== undefined || v.command !== undefined),
};
export const Command = {
  is: (v: any): boolean => v !== null && typeof v === "object" && typeof v.title === "string" && typeof v.command === "string",
};

type Handler = (params: any) => unknown;

/** What the fake server does; tests replace these. */
export const behavior = {
  start: async (_client: LanguageClient): Promise<void> => undefined,
  request: async (_method: string, _params: any): Promise<unknown> => null,
};

export const instances: LanguageClient[] = [];

export function resetClients(): void {
  instances.length = 0;
  behavior.start = async () => undefined;
  behavior.request = async () => null;
}

export class LanguageClient {
  readonly notifications = new Map<string, Handler>();
  readonly sentRequests: { method: string; params: any }[] = [];
  readonly sentNotifications: { method: string; params: any }[] = [];
  disposed = false;
  started = false;
  readonly code2ProtocolConverter = {
    asRange: (r: any) => ({
      start: { line: r.start.line, character: r.start.character },
      end: { line: r.end.line, character: r.end.character },
    }),
    asPosition: (p: any) => ({ line: p.line, character: p.character }),
    asDiagnostics: async (d: any[]) => d,
  };
  readonly protocol2CodeConverter = {
    asWorkspaceEdit: async (e: any) => e,
  };

  constructor(
    readonly id: string,
    readonly name: string,
    readonly serverOptions: any,
    readonly clientOptions: any,
  ) {
    instances.push(this);
  }

  get stdioOptions(): any {
    return this.clientOptions.stdioOptions;
  }

  async start(): Promise<void> {
    await behavior.start(this);
    this.started = true;
  }

  async dispose(_timeout?: number): Promise<void> {
    this.disposed = true;
  }

  error(_message: string, _data?: unknown, _show?: boolean | "force"): void {
    // recorded by nothing: the extension overrides it
  }

  onNotification(type: string | { method: string }, handler: Handler): { dispose(): void } {
    const method = typeof type === "string" ? type : type.method;
    this.notifications.set(method, handler);
    return { dispose: () => this.notifications.delete(method) };
  }

  /** Test helper: the server sends a notification. */
  notify(method: string, params: unknown): void {
    const h = this.notifications.get(method);
    if (!h) {
      throw new Error(`no handler for ${method}`);
    }
    h(params);
  }

  async sendRequest(type: { method: string } | string, params: any): Promise<any> {
    const method = typeof type === "string" ? type : type.method;
    this.sentRequests.push({ method, params });
    return behavior.request(method, params);
  }

  async sendNotification(type: { method: string } | string, params: any): Promise<void> {
    const method = typeof type === "string" ? type : type.method;
    this.sentNotifications.push({ method, params });
  }
}
