import * as assert from "node:assert/strict";
import { test } from "node:test";
import { Backoff } from "../src/backoff";

test("backoff doubles up to the cap, then gives up", () => {
  const b = new Backoff({ initialMs: 1000, maxMs: 5000, maxAttempts: 5 });
  assert.deepEqual([b.nextDelay(), b.nextDelay(), b.nextDelay(), b.nextDelay(), b.nextDelay()], [1000, 2000, 4000, 5000, 5000]);
  assert.equal(b.nextDelay(), undefined);
  assert.equal(b.failures, 5);
  b.reset();
  assert.equal(b.nextDelay(), 1000);
});

test("a server that ran long enough starts a fresh series", () => {
  const b = new Backoff({ initialMs: 100, resetAfterMs: 10_000 });
  b.nextDelay(0);
  b.nextDelay(0);
  assert.equal(b.nextDelay(50), 400);
  assert.equal(b.nextDelay(60_000), 100);
});

test("defaults never retry faster than every 2 s and stop after 8 tries", () => {
  const b = new Backoff();
  const delays: number[] = [];
  for (let d = b.nextDelay(); d !== undefined; d = b.nextDelay()) {
    delays.push(d);
  }
  assert.equal(delays.length, 8);
  assert.ok(delays.every((d) => d >= 2000 && d <= 60000));
});
