import * as assert from "node:assert/strict";
import { test } from "node:test";
import {
  APPLY_HINT,
  JUMP_HINT,
  NEWLINE_MARK,
  NextEditItem,
  NextEditSession,
  Suggestion,
  diffText,
  drawing,
  inlineText,
  suggestionFrom,
} from "../src/nextEdit";

const URI = "file:///ws/circle.py";
const LINES = ["import math", "", "", "def area(r):", '    """Area of a circle."""', "    return math.pi * radius * radius", ""];
const lineAt = (line: number) => LINES[line] ?? "";

function edit(line: number, start: number, end: number, text: string, version = 7): NextEditItem {
  return { range: { start: { line, character: start }, end: { line, character: end } }, text, textDocument: { uri: URI, version } };
}

/** The rename's other uses on the return line: `radius` -> `r` twice. */
const RENAME = [edit(5, 21, 27, "r"), edit(5, 30, 36, "r")];
const REQUEST = { uri: URI, version: 7, origin: { line: 3, character: 10 } };

function suggestion(edits: NextEditItem[] = RENAME): Suggestion {
  const got = suggestionFrom({ edits }, REQUEST);
  assert.ok("suggestion" in got, JSON.stringify(got));
  return got.suggestion;
}

test("an answer becomes a suggestion for the version asked about", () => {
  const s = suggestion();
  assert.equal(s.version, 7);
  assert.deepEqual(s.origin, { line: 3, character: 10 });
  assert.equal(s.edits.length, 2);
});

test("answers that show nothing say why", () => {
  assert.deepEqual(suggestionFrom({ edits: [], reason: "nextEdit is off" }, REQUEST), { reason: "nextEdit is off" });
  assert.deepEqual(suggestionFrom({ edits: [] }, REQUEST), { reason: "no edit" });
  assert.deepEqual(suggestionFrom(null, REQUEST), { reason: "not a next-edit answer" });
  assert.deepEqual(suggestionFrom({ edits: [{ range: { start: { line: 1 } }, text: "x" }] }, REQUEST), { reason: "a malformed edit" });
  // Edits for another version or document are never drawn, nor applied.
  assert.match(String((suggestionFrom({ edits: [edit(5, 21, 27, "r", 6)] }, REQUEST) as { reason: string }).reason), /version 6/);
  const other = { ...edit(5, 21, 27, "r"), textDocument: { uri: "file:///ws/other.py", version: 7 } };
  assert.match(String((suggestionFrom({ edits: [other] }, REQUEST) as { reason: string }).reason), /other\.py/);
  // Out of order or overlapping.
  assert.deepEqual(suggestionFrom({ edits: [RENAME[1], RENAME[0]] }, REQUEST), { reason: "edits out of order or overlapping" });
  assert.deepEqual(suggestionFrom({ edits: [edit(5, 21, 27, "r"), edit(5, 25, 30, "")] }, REQUEST), {
    reason: "edits out of order or overlapping",
  });
  assert.deepEqual(suggestionFrom({ edits: [edit(5, 21, 21, "")] }, REQUEST), { reason: "edits that change nothing" });
  // A backwards range is malformed.
  assert.deepEqual(suggestionFrom({ edits: [edit(5, 27, 21, "r")] }, REQUEST), { reason: "a malformed edit" });
});

test("the same document under another spelling of its URI is accepted when the caller says so", () => {
  const spelled = { ...RENAME[0], textDocument: { uri: "file:///ws/circle%2Epy", version: 7 } };
  assert.ok("reason" in suggestionFrom({ edits: [spelled] }, REQUEST));
  assert.ok("suggestion" in suggestionFrom({ edits: [spelled] }, REQUEST, (a, b) => decodeURIComponent(a) === b));
});

test("deleted text is struck through and inserted text is ghost text after it", () => {
  const d = drawing(suggestion(), { line: 3, character: 10 }, lineAt);
  assert.deepEqual(d.deleted, [RENAME[0].range, RENAME[1].range]);
  assert.deepEqual(d.inserted, [
    { at: { line: 5, character: 27 }, text: "r" },
    { at: { line: 5, character: 36 }, text: "r" },
  ]);
  // A pure insertion draws no deletion; a pure deletion no ghost text.
  const insertion = drawing(suggestion([edit(5, 36, 36, " * 1.0")]), { line: 3, character: 0 }, lineAt);
  assert.deepEqual(insertion.deleted, []);
  assert.deepEqual(insertion.inserted, [{ at: { line: 5, character: 36 }, text: " * 1.0" }]);
  const deletion = drawing(suggestion([edit(5, 27, 36, "")]), { line: 3, character: 0 }, lineAt);
  assert.deepEqual(deletion.deleted, [edit(5, 27, 36, "").range]);
  assert.deepEqual(deletion.inserted, []);
});

test("the marker says Tab jumps when the edit is elsewhere, and Tab applies once the cursor is on it", () => {
  const s = suggestion();
  const away = drawing(s, { line: 3, character: 10 }, lineAt);
  assert.deepEqual(away.marker, { line: 3, text: `${JUMP_HINT} (line 6)` });
  const there = drawing(s, { line: 5, character: 21 }, lineAt);
  assert.deepEqual(there.marker, { line: 5, text: APPLY_HINT });
  const twoLines = suggestion([edit(4, 4, 4, "# "), edit(5, 21, 27, "r")]);
  assert.match(drawing(twoLines, { line: 0, character: 0 }, lineAt).marker.text, /\(lines 5-6\)$/);
});

test("an insertion of several lines is one line of ghost text; the hover shows the whole change as a diff", () => {
  const block = "\n    if r < 0:\n        raise ValueError(r)";
  const s = suggestion([edit(4, 27, 27, block)]);
  const d = drawing(s, { line: 3, character: 0 }, lineAt);
  assert.deepEqual(d.inserted, [{ at: { line: 4, character: 27 }, text: inlineText(block) }]);
  assert.equal(inlineText(block), ` ${NEWLINE_MARK}     if r < 0: ${NEWLINE_MARK}         raise ValueError(r)`);
  assert.deepEqual(d.hover.lines, { start: { line: 4, character: 0 }, end: { line: 4, character: 27 } });
  assert.equal(
    d.hover.diff,
    ['-    """Area of a circle."""', '+    """Area of a circle."""', "+    if r < 0:", "+        raise ValueError(r)"].join("\n"),
  );
  assert.equal(diffText(suggestion(), lineAt), ["-    return math.pi * radius * radius", "+    return math.pi * r * r"].join("\n"));
  // Long text is cut on the line (the hover has it all).
  const long = inlineText("x".repeat(200), 20);
  assert.equal(long.length, 20);
  assert.ok(long.endsWith("…"));
});

test("a deletion across lines diffs to the joined line", () => {
  const s = suggestion([{ ...edit(4, 27, 0, ""), range: { start: { line: 4, character: 27 }, end: { line: 5, character: 4 } } }]);
  assert.equal(
    diffText(s, lineAt),
    ['-    """Area of a circle."""', "-    return math.pi * radius * radius", '+    """Area of a circle."""return math.pi * radius * radius'].join("\n"),
  );
});

test("Tab jumps to the edit, Tab again applies it; then it is gone", () => {
  const session = new NextEditSession();
  assert.equal(session.tab(URI, { line: 3, character: 10 }), undefined, "nothing shown: Tab is not ours");
  const s = suggestion();
  session.show(s);
  assert.equal(session.tab("file:///ws/other.py", { line: 5, character: 0 }), undefined, "another document");
  assert.deepEqual(session.tab(URI, { line: 3, character: 10 }), { kind: "jump", to: { line: 5, character: 21 } });
  assert.equal(session.current, s, "a jump keeps it");
  assert.equal(session.cursorMoved(URI, { line: 5, character: 21 }), false, "the jump lands on the edit");
  assert.deepEqual(session.tab(URI, { line: 5, character: 21 }), { kind: "apply", suggestion: s });
  assert.equal(session.current, undefined);
  // Anywhere on the edit's lines Tab applies at once.
  session.show(s);
  assert.equal(session.tab(URI, { line: 5, character: 0 })?.kind, "apply");
});

test("Esc, an edit, or the cursor leaving both places dismiss it; moving between them does not", () => {
  const session = new NextEditSession();
  const s = suggestion();
  session.show(s);
  assert.equal(session.cursorMoved(URI, { line: 3, character: 2 }), false, "on the line it was asked from");
  assert.equal(session.cursorMoved(URI, { line: 5, character: 30 }), false, "on the edit's line");
  assert.equal(session.documentChanged("file:///ws/other.py", 99), false, "another document's edit");
  assert.equal(session.documentChanged(URI, 7), false, "the same version (a save)");
  assert.equal(session.cursorMoved(URI, { line: 0, character: 0 }), true, "moved away");
  assert.equal(session.current, undefined);

  session.show(s);
  assert.equal(session.documentChanged(URI, 8), true, "any edit to the document");
  assert.equal(session.current, undefined);

  session.show(s);
  assert.equal(session.cursorMoved("file:///ws/other.py", { line: 3, character: 10 }), true, "another editor");
  session.show(s);
  assert.equal(session.dismiss(), s, "Esc");
  assert.equal(session.current, undefined);
  assert.equal(session.cursorMoved(URI, { line: 0, character: 0 }), false, "nothing left to dismiss");
});
