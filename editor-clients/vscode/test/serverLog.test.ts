import * as assert from "node:assert/strict";
import { test } from "node:test";
import { StderrRouter } from "../src/serverLog";

test("python logging lines keep their level; continuation lines follow their record", () => {
  const r = new StderrRouter();
  assert.deepEqual(r.route("usage: fimble [-h]"), { level: "error", text: "usage: fimble [-h]" });
  assert.deepEqual(r.route("2026-11-25 12:29:42,833 INFO fimble.lsp.server: loaded"), {
    level: "info",
    text: "fimble.lsp.server: loaded",
  });
  assert.deepEqual(r.route("  continued"), { level: "info", text: "  continued" });
  assert.equal(r.route("2026-11-25 12:29:42,833 WARNING a: b").level, "warn");
  assert.equal(r.route("2026-11-25T12:29:42.833 DEBUG a: b").level, "debug");
  assert.equal(r.route("2026-11-25 12:29:42,833 CRITICAL a: b").level, "error");
  assert.equal(r.route("Traceback (most recent call last):").level, "error");
});
