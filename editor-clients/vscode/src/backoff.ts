/** Exponential backoff for restarting the server: it never loops hot, and it gives up after a while. */
export interface BackoffOptions {
  /** First delay (ms). */
  initialMs?: number;
  /** Largest delay (ms). */
  maxMs?: number;
  factor?: number;
  /** Attempts before giving up (the caller then waits for a manual restart or a settings change). */
  maxAttempts?: number;
  /** A server that ran at least this long (ms) before dying starts a fresh series. */
  resetAfterMs?: number;
}

export class Backoff {
  readonly initialMs: number;
  readonly maxMs: number;
  readonly factor: number;
  readonly maxAttempts: number;
  readonly resetAfterMs: number;
  private attempts = 0;

  constructor(options: BackoffOptions = {}) {
    this.initialMs = options.initialMs ?? 2000;
    this.maxMs = options.maxMs ?? 60000;
    this.factor = options.factor ?? 2;
    this.maxAttempts = options.maxAttempts ?? 8;
    this.resetAfterMs = options.resetAfterMs ?? 120000;
  }

  /** How many failures the current series has seen. */
  get failures(): number {
    return this.attempts;
  }

  /**
   * Records a failure after the server ran `uptimeMs` and returns the delay before the next attempt,
   * or undefined when it is time to give up.
   */
  nextDelay(uptimeMs = 0): number | undefined {
    if (uptimeMs >= this.resetAfterMs) {
      this.attempts = 0;
    }
    if (this.attempts >= this.maxAttempts) {
      return undefined;
    }
    const delay = Math.min(this.maxMs, this.initialMs * Math.pow(this.factor, this.attempts));
    this.attempts += 1;
    return delay;
  }

  reset(): void {
    this.attempts = 0;
  }
}
