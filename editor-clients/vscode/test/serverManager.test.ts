import * as assert from "node:assert/strict";
import { test } from "node:test";
import { Backoff } from "../src/backoff";
import { ClientHandle, ClientHooks, Clock, ManagerUi, ServerManager } from "../src/serverManager";
import { ServerCommand, ServerNotInstalled } from "../src/settings";

class FakeClock implements Clock {
  t = 0;
  timers: { at: number; fn: () => void; id: number }[] = [];
  private next = 1;
  now(): number {
    return this.t;
  }
  setTimeout(fn: () => void, ms: number): unknown {
    const id = this.next++;
    this.timers.push({ at: this.t + ms, fn, id });
    return id;
  }
  clearTimeout(handle: unknown): void {
    this.timers = this.timers.filter((t) => t.id !== handle);
  }
  /** The delay of the only pending timer. */
  pendingDelay(): number | undefined {
    assert.ok(this.timers.length <= 1, "at most one retry is scheduled");
    return this.timers.length ? this.timers[0].at - this.t : undefined;
  }
  async fire(): Promise<void> {
    const timer = this.timers.shift();
    assert.ok(timer, "a retry is scheduled");
    this.t = timer.at;
    timer.fn();
    await flush();
  }
}

async function flush(): Promise<void> {
  for (let i = 0; i < 10; i++) {
    await new Promise((r) => setImmediate(r));
  }
}

class FakeClient implements ClientHandle {
  disposed = false;
  constructor(
    readonly hooks: ClientHooks,
    private readonly fails: boolean,
  ) {}
  async start(): Promise<void> {
    if (this.fails) {
      throw new Error("spawn /nope ENOENT");
    }
  }
  async dispose(): Promise<void> {
    this.disposed = true;
  }
}

function setup(failures: boolean[] = []) {
  const clock = new FakeClock();
  const clients: FakeClient[] = [];
  const statuses: [string, string][] = [];
  const notified: [string, boolean][] = [];
  const logs: string[] = [];
  const ui: ManagerUi = {
    status: (s, m) => statuses.push([s, m]),
    log: (l) => logs.push(l),
    notifyFailure: (m, final) => notified.push([m, final]),
    notInstalled: () => undefined,
  };
  const command: ServerCommand = { command: "/nope", args: ["serve"], source: "serverPath" };
  const manager = new ServerManager(
    (_cmd, hooks) => {
      const c = new FakeClient(hooks, failures[clients.length] ?? false);
      clients.push(c);
      return c;
    },
    () => command,
    ui,
    new Backoff({ initialMs: 1000, maxMs: 8000, maxAttempts: 4, resetAfterMs: 60_000 }),
    clock,
  );
  return { clock, clients, statuses, notified, logs, manager };
}

test("a server that starts is running, with no retry pending", async () => {
  const { manager, clients, statuses, clock } = setup();
  await manager.start();
  assert.equal(manager.isRunning, true);
  assert.equal(manager.client, clients[0]);
  assert.deepEqual(statuses[0][0], "starting");
  assert.equal(clock.pendingDelay(), undefined);
});

test("a missing binary: error status, one notification, retries with growing delays, then gives up", async () => {
  const { manager, clients, statuses, notified, clock } = setup([true, true, true, true, true, true]);
  await manager.start();
  assert.equal(manager.isRunning, false);
  assert.equal(manager.client, undefined);
  const last = statuses[statuses.length - 1];
  assert.equal(last[0], "error");
  assert.match(last[1], /failed to start: spawn \/nope ENOENT/);
  assert.match(last[1], /Check "fimble.serverPath"/);
  assert.match(last[1], /Retrying in 1 s \(attempt 1 of 4\)/);
  assert.equal(notified.length, 1);
  const delays: number[] = [];
  for (let i = 0; i < 3; i++) {
    delays.push(clock.pendingDelay() ?? -1);
    await clock.fire();
  }
  delays.push(clock.pendingDelay() ?? -1);
  assert.deepEqual(delays, [1000, 2000, 4000, 8000]);
  await clock.fire();
  // Attempts: the first start + 4 retries; then no more timers.
  assert.equal(clients.length, 5);
  assert.equal(clock.pendingDelay(), undefined);
  assert.match(statuses[statuses.length - 1][1], /Gave up after 4 attempts/);
  assert.deepEqual(
    notified.map((n) => n[1]),
    [false, true],
  );
  assert.ok(clients.every((c) => c.disposed));
});

test("a crash after a long run restarts quickly; crashes right after start back off", async () => {
  const { manager, clients, clock } = setup();
  await manager.start();
  clock.t += 120_000;
  clients[0].hooks.onClosed("The fimble server stopped unexpectedly");
  clients[0].hooks.onClosed("reported twice");
  assert.equal(clock.pendingDelay(), 1000);
  assert.equal(clients[0].disposed, true);
  await clock.fire();
  assert.equal(manager.client, clients[1]);
  clients[1].hooks.onClosed("died again at once");
  assert.equal(clock.pendingDelay(), 2000);
});

test("late events from an old client are ignored; a manual restart resets the backoff", async () => {
  const { manager, clients, clock, statuses } = setup([true]);
  await manager.start();
  assert.equal(clock.pendingDelay(), 1000);
  await manager.start(true); // e.g. settings changed
  assert.equal(clock.pendingDelay(), undefined);
  assert.equal(manager.client, clients[1]);
  const n = statuses.length;
  clients[0].hooks.onClosed("stale");
  assert.equal(statuses.length, n);
  assert.equal(manager.isRunning, true);
});

test("stop cancels a pending retry and disposes the client", async () => {
  const { manager, clients, clock, statuses } = setup([false]);
  await manager.start();
  clients[0].hooks.onClosed("crash");
  assert.equal(manager.retryPending, true);
  await manager.stop();
  assert.equal(manager.retryPending, false);
  assert.equal(clock.pendingDelay(), undefined);
  assert.equal(statuses[statuses.length - 1][0], "stopped");
});

test("a command that cannot be resolved is an error with a retry", async () => {
  const clock = new FakeClock();
  const statuses: string[] = [];
  const manager = new ServerManager(
    () => {
      throw new Error("unreachable");
    },
    () => {
      throw new Error("no interpreter");
    },
    { status: (_s, m) => statuses.push(m), log: () => undefined, notifyFailure: () => undefined, notInstalled: () => undefined },
    new Backoff({ initialMs: 500 }),
    clock,
  );
  await manager.start();
  assert.match(statuses[statuses.length - 1], /Cannot find the fimble server: no interpreter/);
  assert.equal(clock.pendingDelay(), 500);
  await manager.dispose();
  assert.equal(clock.pendingDelay(), undefined);
});

test("no server installed: the UI offers the install, nothing is retried", async () => {
  const clock = new FakeClock();
  const offered: string[] = [];
  const notified: string[] = [];
  const manager = new ServerManager(
    () => {
      throw new Error("unreachable");
    },
    () => {
      throw new ServerNotInstalled("The fimble server is not installed.");
    },
    {
      status: () => undefined,
      log: () => undefined,
      notifyFailure: (m) => notified.push(m),
      notInstalled: (m) => offered.push(m),
    },
    new Backoff({ initialMs: 500 }),
    clock,
  );
  await manager.start();
  assert.deepEqual(offered, ["The fimble server is not installed."]);
  assert.deepEqual(notified, []);
  assert.equal(clock.pendingDelay(), undefined);
  assert.equal(manager.retryPending, false);
  await manager.dispose();
});
