/**
 * Starts the language client, restarts the server with backoff when it dies, and reports each step.
 * It knows nothing of vscode-languageclient: the client is made by a factory, so the restart logic is unit
 * tested with fake clients.
 */
import { Backoff } from "./backoff";
import { ServerCommand, ServerNotInstalled, formatCommand } from "./settings";
import { DisplayState } from "./status";

export interface ClientHandle {
  start(): Promise<void>;
  /** Stops the server and frees everything (the handle is not used again). */
  dispose(timeoutMs?: number): Promise<void>;
}

export interface ClientHooks {
  /** The connection closed or the process exited without being asked to. */
  onClosed(reason: string): void;
}

export type ClientFactory<C extends ClientHandle> = (command: ServerCommand, hooks: ClientHooks) => C;

export interface ManagerUi {
  status(state: DisplayState, message: string): void;
  log(line: string): void;
  /** A non-modal message; `final`: the manager gave up retrying. */
  notifyFailure(message: string, final: boolean): void;
  /** No server is configured or found (no retry is scheduled: installing one starts it). */
  notInstalled(message: string): void;
}

export interface Clock {
  now(): number;
  setTimeout(fn: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
}

const realClock: Clock = {
  now: () => Date.now(),
  setTimeout: (fn, ms) => setTimeout(fn, ms),
  clearTimeout: (h) => clearTimeout(h as ReturnType<typeof setTimeout>),
};

function describe(error: unknown): string {
  if (error instanceof Error) {
    return error.message;
  }
  return String(error);
}

export class ServerManager<C extends ClientHandle> {
  private current: C | undefined;
  private running = false;
  private generation = 0;
  private failedGeneration = -1;
  private startedAt = 0;
  private timer: unknown;
  private disposed = false;

  constructor(
    private readonly factory: ClientFactory<C>,
    private readonly resolveCommand: () => Promise<ServerCommand> | ServerCommand,
    private readonly ui: ManagerUi,
    readonly backoff: Backoff = new Backoff(),
    private readonly clock: Clock = realClock,
  ) {}

  /** The client while the server runs. */
  get client(): C | undefined {
    return this.running ? this.current : undefined;
  }

  get isRunning(): boolean {
    return this.running;
  }

  /** Whether a retry is scheduled. */
  get retryPending(): boolean {
    return this.timer !== undefined;
  }

  /** Starts (or restarts) the server. A manual call starts a fresh backoff series. */
  async start(manual = true): Promise<void> {
    if (this.disposed) {
      return;
    }
    if (manual) {
      this.backoff.reset();
    }
    this.cancelRetry();
    const generation = ++this.generation;
    await this.disposeClient();
    if (generation !== this.generation) {
      return;
    }
    this.ui.status("starting", "Starting the fimble server…");
    let command: ServerCommand;
    try {
      command = await this.resolveCommand();
    } catch (error) {
      if (error instanceof ServerNotInstalled) {
        if (generation === this.generation) {
          this.ui.log(error.message);
          this.ui.notInstalled(error.message);
        }
        return;
      }
      this.fail(generation, `Cannot find the fimble server: ${describe(error)}`);
      return;
    }
    if (generation !== this.generation) {
      return;
    }
    this.ui.log(`Starting ${formatCommand(command)} (from ${command.source})`);
    let client: C;
    try {
      client = this.factory(command, {
        onClosed: (reason) => this.fail(generation, reason),
      });
    } catch (error) {
      this.fail(generation, `Cannot start the fimble server: ${describe(error)}`);
      return;
    }
    this.current = client;
    this.startedAt = this.clock.now();
    try {
      await client.start();
    } catch (error) {
      const hint =
        command.source === "PATH"
          ? ' Set "fimble.serverPath" or "fimble.pythonPath".'
          : command.source === "installed"
            ? ' Reinstall it with "fimble: Install or update the server".'
            : ` Check "fimble.${command.source === "serverPath" ? "serverPath" : "pythonPath"}".`;
      this.fail(generation, `The fimble server (${formatCommand(command)}) failed to start: ${describe(error)}.${hint}`);
      return;
    }
    if (generation !== this.generation || this.failedGeneration === generation) {
      return;
    }
    this.running = true;
    this.ui.log("fimble server started");
  }

  /** Stops the server and any pending retry. */
  async stop(): Promise<void> {
    this.generation++;
    this.cancelRetry();
    await this.disposeClient();
    this.ui.status("stopped", "The fimble server is stopped.");
  }

  async dispose(): Promise<void> {
    this.disposed = true;
    this.generation++;
    this.cancelRetry();
    await this.disposeClient();
  }

  private fail(generation: number, message: string): void {
    if (generation !== this.generation || this.failedGeneration === generation || this.disposed) {
      return;
    }
    this.failedGeneration = generation;
    const uptime = this.startedAt ? this.clock.now() - this.startedAt : 0;
    this.running = false;
    const dead = this.current;
    this.current = undefined;
    if (dead) {
      // A client that never got running refuses to stop; nothing is left to free then.
      dead.dispose(2000).catch(() => undefined);
    }
    const delay = this.backoff.nextDelay(uptime);
    this.ui.log(message);
    if (delay === undefined) {
      const text = `${message} Gave up after ${this.backoff.maxAttempts} attempts; fix the settings or run "fimble: Restart server".`;
      this.ui.status("error", text);
      this.ui.notifyFailure(text, true);
      return;
    }
    const seconds = Math.round(delay / 100) / 10;
    const text = `${message} Retrying in ${seconds} s (attempt ${this.backoff.failures} of ${this.backoff.maxAttempts}).`;
    this.ui.log(`Retrying in ${seconds} s`);
    this.ui.status("error", text);
    if (this.backoff.failures === 1) {
      this.ui.notifyFailure(message, false);
    }
    this.timer = this.clock.setTimeout(() => {
      this.timer = undefined;
      void this.start(false);
    }, delay);
  }

  private cancelRetry(): void {
    if (this.timer !== undefined) {
      this.clock.clearTimeout(this.timer);
      this.timer = undefined;
    }
  }

  private async disposeClient(): Promise<void> {
    const client = this.current;
    this.current = undefined;
    this.running = false;
    if (client) {
      try {
        await client.dispose(3000);
      } catch (error) {
        this.ui.log(`Stopping the fimble server failed: ${describe(error)}`);
      }
    }
  }
}
