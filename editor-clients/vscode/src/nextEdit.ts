/**
 * Next edits (PROTOCOL.md "Next edit"), the editor-free part: checking an answer, what to draw where, and what Tab,
 * Esc, an edit or a cursor move do to a suggestion on screen. Positions are the protocol's (0-based, UTF-16), which
 * are VS Code's own, so nothing here needs the `vscode` module and all of it is unit tested.
 */

export interface Pos {
  line: number;
  character: number;
}

export interface Span {
  start: Pos;
  end: Pos;
}

export interface NextEditItem {
  range: Span;
  text: string;
  textDocument: { uri: string; version: number };
}

/** The answer to `fimble/nextEdit`. */
export interface NextEditResult {
  edits: NextEditItem[];
  reason?: string;
}

/** A next edit being shown: the edits, the document version they are for, and where the cursor was when asked. */
export interface Suggestion {
  uri: string;
  version: number;
  edits: NextEditItem[];
  origin: Pos;
}

export function comparePos(a: Pos, b: Pos): number {
  return a.line - b.line || a.character - b.character;
}

function isPos(v: unknown): v is Pos {
  const p = v as Pos;
  return (
    typeof p === "object" && p !== null && Number.isInteger(p.line) && Number.isInteger(p.character) && p.line >= 0 && p.character >= 0
  );
}

function isSpan(v: unknown): v is Span {
  const r = v as Span;
  return typeof r === "object" && r !== null && isPos(r.start) && isPos(r.end) && comparePos(r.start, r.end) <= 0;
}

/**
 * The suggestion in a server's answer, or why there is none. Everything is checked (the server is trusted, but a
 * drawing of edits that overlap or belong to another version would be wrong, and applying them worse): every edit
 * is for this document at this version, and they are in document order without overlapping.
 */
export function suggestionFrom(
  answer: unknown,
  request: { uri: string; version: number; origin: Pos },
  sameUri: (a: string, b: string) => boolean = (a, b) => a === b,
): { suggestion: Suggestion } | { reason: string } {
  const result = answer as Partial<NextEditResult> | null | undefined;
  if (typeof result !== "object" || result === null || !Array.isArray(result.edits)) {
    return { reason: "not a next-edit answer" };
  }
  if (result.edits.length === 0) {
    return { reason: typeof result.reason === "string" && result.reason ? result.reason : "no edit" };
  }
  const edits: NextEditItem[] = [];
  for (const raw of result.edits as unknown[]) {
    const edit = raw as Partial<NextEditItem>;
    if (typeof edit !== "object" || edit === null || !isSpan(edit.range) || typeof edit.text !== "string") {
      return { reason: "a malformed edit" };
    }
    const doc = edit.textDocument;
    if (doc && (!sameUri(doc.uri, request.uri) || doc.version !== request.version)) {
      return { reason: `an edit for ${doc.uri} version ${doc.version}, not version ${request.version}` };
    }
    const previous = edits[edits.length - 1];
    if (previous && comparePos(previous.range.end, edit.range.start) > 0) {
      return { reason: "edits out of order or overlapping" };
    }
    edits.push({ range: edit.range, text: edit.text, textDocument: { uri: request.uri, version: request.version } });
  }
  if (edits.every((e) => e.text === "" && comparePos(e.range.start, e.range.end) === 0)) {
    return { reason: "edits that change nothing" };
  }
  return { suggestion: { uri: request.uri, version: request.version, edits, origin: request.origin } };
}

/** The lines a suggestion's edits cover, first and last (inclusive). */
export function editLines(s: Suggestion): { first: number; last: number } {
  return { first: s.edits[0].range.start.line, last: s.edits[s.edits.length - 1].range.end.line };
}

/** Longest ghost text drawn in the line; the hover over the edit's lines shows all of it. */
export const INLINE_LIMIT = 80;
/** Drawn where a line break is inserted: decorations cannot add lines to the editor. */
export const NEWLINE_MARK = "⏎";

/** What to draw for a suggestion. */
export interface Drawing {
  /** Text the edits delete: struck through. */
  deleted: Span[];
  /** Text the edits insert, as ghost text right after what they delete (`at`): one line, shortened. */
  inserted: { at: Pos; text: string }[];
  /** A hint beside the cursor (Tab jumps) or at the edit (Tab applies). */
  marker: { line: number; text: string };
  /** The lines to hover for the whole change, and the change as a unified diff. */
  hover: { lines: Span; diff: string };
}

/** An inserted text as it is drawn on one line: line breaks marked, long text cut (the hover has it all). */
export function inlineText(text: string, limit = INLINE_LIMIT): string {
  const flat = text.replace(/\r\n|\r|\n/g, ` ${NEWLINE_MARK} `);
  return flat.length > limit ? flat.slice(0, limit - 1) + "…" : flat;
}

/** The document's text after the edits, for the lines `first`..`last` (edits must lie within them). */
function applyToLines(lines: readonly string[], first: number, edits: readonly NextEditItem[]): string[] {
  const region = lines.join("\n");
  const offset = (p: Pos) => {
    let at = 0;
    for (let line = first; line < p.line; line++) {
      at += lines[line - first].length + 1;
    }
    return at + Math.min(p.character, lines[p.line - first]?.length ?? 0);
  };
  let out = "";
  let done = 0;
  for (const e of edits) {
    const start = offset(e.range.start);
    out += region.slice(done, start) + e.text;
    done = offset(e.range.end);
  }
  return (out + region.slice(done)).split("\n");
}

/**
 * The change as a unified diff of the lines it touches (`lineAt` gives a document line's text), for the hover: the
 * whole change, whatever the line could show.
 */
export function diffText(s: Suggestion, lineAt: (line: number) => string): string {
  const { first, last } = editLines(s);
  const before: string[] = [];
  for (let line = first; line <= last; line++) {
    before.push(lineAt(line));
  }
  const after = applyToLines(before, first, s.edits);
  return [...before.map((l) => `-${l}`), ...after.map((l) => `+${l}`)].join("\n");
}

/** Whether Tab applies the suggestion from here (the cursor is on its lines) rather than jumping to it. */
export function isAtEdit(s: Suggestion, cursor: Pos): boolean {
  const { first, last } = editLines(s);
  return cursor.line >= first && cursor.line <= last;
}

export const JUMP_HINT = "Tab: jump to next edit";
export const APPLY_HINT = "Tab: apply next edit, Esc: dismiss";

/** What to draw for `s` with the cursor at `cursor`. */
export function drawing(s: Suggestion, cursor: Pos, lineAt: (line: number) => string): Drawing {
  const deleted: Span[] = [];
  const inserted: { at: Pos; text: string }[] = [];
  for (const e of s.edits) {
    if (comparePos(e.range.start, e.range.end) < 0) {
      deleted.push(e.range);
    }
    if (e.text) {
      inserted.push({ at: e.range.end, text: inlineText(e.text) });
    }
  }
  const { first, last } = editLines(s);
  const at = isAtEdit(s, cursor);
  const where = first === last ? `line ${first + 1}` : `lines ${first + 1}-${last + 1}`;
  const marker = at ? { line: last, text: APPLY_HINT } : { line: cursor.line, text: `${JUMP_HINT} (${where})` };
  const hover = {
    lines: { start: { line: first, character: 0 }, end: { line: last, character: lineAt(last).length } },
    diff: diffText(s, lineAt),
  };
  return { deleted, inserted, marker, hover };
}

/** What Tab does. */
export type TabAction = { kind: "jump"; to: Pos } | { kind: "apply"; suggestion: Suggestion };

/**
 * The suggestion on screen and how it goes away: Tab jumps to it, then applies it; Esc, any edit, another editor,
 * or the cursor leaving both the line it was asked from and the edit's lines dismiss it.
 */
export class NextEditSession {
  private shown: Suggestion | undefined;

  get current(): Suggestion | undefined {
    return this.shown;
  }

  show(s: Suggestion): void {
    this.shown = s;
  }

  dismiss(): Suggestion | undefined {
    const was = this.shown;
    this.shown = undefined;
    return was;
  }

  /** Tab with the cursor at `cursor` in `uri`: jump to the edit, or apply it (and stop showing it). */
  tab(uri: string, cursor: Pos): TabAction | undefined {
    const s = this.shown;
    if (!s || s.uri !== uri) {
      return undefined;
    }
    if (!isAtEdit(s, cursor)) {
      return { kind: "jump", to: s.edits[0].range.start };
    }
    this.shown = undefined;
    return { kind: "apply", suggestion: s };
  }

  /** The cursor moved; true when that dismissed the suggestion. */
  cursorMoved(uri: string, cursor: Pos): boolean {
    const s = this.shown;
    if (!s) {
      return false;
    }
    if (s.uri === uri && (cursor.line === s.origin.line || isAtEdit(s, cursor))) {
      return false;
    }
    this.shown = undefined;
    return true;
  }

  /** A document changed (to `version`); true when that dismissed the suggestion. */
  documentChanged(uri: string, version: number): boolean {
    const s = this.shown;
    if (!s || s.uri !== uri || s.version === version) {
      return false;
    }
    this.shown = undefined;
    return true;
  }
}
