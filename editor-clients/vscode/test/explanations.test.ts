import * as assert from "node:assert/strict";
import { test } from "node:test";
import { ExplanationStore, explanationBody, explanationPage, renderMarkdown } from "../src/explanations";

test("renderMarkdown renders Markdown and escapes raw HTML", () => {
  const html = renderMarkdown("# Title\n\n`x` is **bold**\n\n<script>alert(1)</script>\n\n```py\nprint(1)\n```");
  assert.match(html, /<h1>Title<\/h1>/);
  assert.match(html, /<strong>bold<\/strong>/);
  assert.match(html, /<code class="language-py">print\(1\)/);
  assert.doesNotMatch(html, /<script>/);
  assert.match(html, /&lt;script&gt;/);
});

test("the store accumulates deltas; the final response replaces them", () => {
  const store = new ExplanationStore(2);
  store.begin("t1", "Explain a.py:1");
  store.apply({ token: "t1", delta: "Hello ", done: false });
  store.apply({ token: "t1", delta: "world", done: false });
  assert.equal(store.get("t1")?.markdown, "Hello world");
  store.finish("t1", "Hello world!");
  assert.equal(store.get("t1")?.markdown, "Hello world!");
  assert.equal(store.get("t1")?.done, true);
  // Late deltas after done are ignored.
  store.apply({ token: "t1", delta: "x", done: false });
  assert.equal(store.get("t1")?.markdown, "Hello world!");
  // An empty final response keeps what was streamed.
  store.begin("t2", "b");
  store.apply({ token: "t2", delta: "streamed", done: true });
  store.finish("t2", "");
  assert.equal(store.get("t2")?.markdown, "streamed");
  // Unknown tokens (started by a code action) are created; old ones are dropped.
  const item = store.apply({ token: "t3", delta: "x", done: false }, "server");
  assert.equal(item.title, "server");
  assert.equal(store.get("t1"), undefined);
});

test("explanationBody and the page", () => {
  const store = new ExplanationStore();
  const item = store.begin("tok", "Explain <a>");
  assert.match(explanationBody(item).html, /Waiting for the model/);
  assert.equal(explanationBody(item).state, "generating…");
  store.fail("tok", "boom <b>");
  const body = explanationBody(item);
  assert.equal(body.state, "failed");
  assert.match(body.html, /boom &lt;b&gt;/);
  const page = explanationPage(item, { nonce: "N0NCE", cspSource: "vscode-resource:", scriptUri: "file:///ext/media/explain.js" });
  assert.match(page, /Content-Security-Policy/);
  assert.match(page, /script-src 'nonce-N0NCE'/);
  assert.match(page, /<script nonce="N0NCE" src="file:\/\/\/ext\/media\/explain.js">/);
  assert.match(page, /Explain &lt;a&gt;/);
  assert.match(page, /id="fimble-explanation" data-token="tok"/);
});
