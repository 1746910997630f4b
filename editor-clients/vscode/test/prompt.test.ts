import * as assert from "node:assert/strict";
import { test } from "node:test";
import { fenceFor, formatDebugPrompt } from "../src/prompt";

test("fenceFor outgrows backticks in the prompt", () => {
  assert.equal(fenceFor("plain"), "```");
  assert.equal(fenceFor("a ```` b"), "`````");
});

test("formatDebugPrompt: table of parts and the prompt in a fence", () => {
  const md = formatDebugPrompt(
    {
      prompt: "<PRE> def f(): ```",
      parts: [
        { source: "prefix", tokens: 10, ms: 0.123 },
        { source: "ring|git", tokens: 5, ms: 2 },
      ],
      format: "qwen-fim",
    },
    { file: "a.py", line: 2, character: 4 },
  );
  assert.match(md, /line 3, column 5; format: `qwen-fim`/);
  assert.match(md, /\| prefix \| 10 \| 0\.1 \|/);
  assert.match(md, /\| ring\\\|git \| 5 \| 2 \|/);
  assert.match(md, /\| \*\*total\*\* \| \*\*15\*\* \|/);
  assert.match(md, /````text\n<PRE> def f\(\): ```\n````/);
});
