/** Routes the server's stderr (Python logging lines) to the log channel's levels (pure, unit tested). */

export type LogLevel = "trace" | "debug" | "info" | "warn" | "error";

const LINE = /^\d{4}-\d\d-\d\d[ T]\d\d:\d\d:\d\d(?:[.,]\d+)?\s+(DEBUG|INFO|WARNING|WARN|ERROR|CRITICAL)\s+(.*)$/;
const LEVELS: Record<string, LogLevel> = {
  DEBUG: "debug",
  INFO: "info",
  WARNING: "warn",
  WARN: "warn",
  ERROR: "error",
  CRITICAL: "error",
};

/**
 * A stateful splitter: `2026-01-01 12:00:00,123 INFO fimble.lsp: text` becomes (info, "fimble.lsp: text")
 * without the timestamp (the channel adds its own); lines that are not records (a traceback) keep the level
 * of the record they belong to; before any record, lines count as errors (a crash at start).
 */
export class StderrRouter {
  private current: LogLevel = "error";

  route(line: string): { level: LogLevel; text: string } {
    const m = LINE.exec(line);
    if (m) {
      this.current = LEVELS[m[1]] ?? "info";
      return { level: this.current, text: m[2] };
    }
    return { level: this.current, text: line };
  }
}
