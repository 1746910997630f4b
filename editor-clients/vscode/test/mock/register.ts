/**
 * Loaded with `node --require`: makes `require("vscode")` (and, for the activation test,
 * `require("vscode-languageclient/node")`) resolve to the mocks in this folder.
 */
import Module from "node:module";
import * as path from "path";

const mocks: Record<string, string> = {
  vscode: path.join(__dirname, "vscode.js"),
  "vscode-languageclient/node": path.join(__dirname, "languageclient.js"),
};

type Resolve = (request: string, ...rest: unknown[]) => string;
const mod = Module as unknown as { _resolveFilename: Resolve };
const original = mod._resolveFilename;
mod._resolveFilename = function (request: string, ...rest: unknown[]): string {
  const target = mocks[request];
  if (target) {
    return target;
  }
  return original.call(this, request, ...rest);
};
