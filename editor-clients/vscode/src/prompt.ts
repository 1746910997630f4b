/** Formatting of the `fimble/debugPrompt` answer as a Markdown document (pure, unit tested). */

export interface DebugPromptResult {
  prompt: string;
  parts?: { source: string; tokens: number; ms: number }[];
  format?: string;
}

/** A code fence longer than any run of backticks in the text. */
export function fenceFor(text: string): string {
  let longest = 0;
  for (const m of text.matchAll(/`+/g)) {
    longest = Math.max(longest, m[0].length);
  }
  return "`".repeat(Math.max(3, longest + 1));
}

export function formatDebugPrompt(result: DebugPromptResult, where: { file: string; line: number; character: number }): string {
  const lines: string[] = [];
  lines.push(`# fimble prompt`);
  lines.push("");
  lines.push(`At \`${where.file}\` line ${where.line + 1}, column ${where.character + 1}; format: \`${result.format ?? "?"}\`.`);
  lines.push("");
  const parts = Array.isArray(result.parts) ? result.parts : [];
  if (parts.length > 0) {
    lines.push("| source | tokens | ms |");
    lines.push("| --- | ---: | ---: |");
    let tokens = 0;
    let ms = 0;
    for (const p of parts) {
      tokens += Number(p.tokens) || 0;
      ms += Number(p.ms) || 0;
      lines.push(`| ${String(p.source).replace(/\|/g, "\\|")} | ${p.tokens} | ${Math.round(Number(p.ms) * 10) / 10} |`);
    }
    lines.push(`| **total** | **${tokens}** | **${Math.round(ms * 10) / 10}** |`);
    lines.push("");
  }
  const prompt = typeof result.prompt === "string" ? result.prompt : "";
  const fence = fenceFor(prompt);
  lines.push(fence + "text");
  lines.push(prompt);
  lines.push(fence);
  lines.push("");
  return lines.join("\n");
}
