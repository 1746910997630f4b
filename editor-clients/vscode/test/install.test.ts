import * as assert from "node:assert/strict";
import * as path from "node:path";
import { test } from "node:test";
import {
  InstallEvent,
  ProgressTracker,
  installerEnv,
  isCurrent,
  isNewEnough,
  managedCommand,
  noPythonMessage,
  parseEvent,
  parseProbe,
  pythonCandidates,
  readBundled,
  readManagedInstall,
  venvPython,
} from "../src/install";

const files = (map: Record<string, string>) => ({
  exists: (p: string) => p in map,
  read: (p: string) => {
    if (!(p in map)) {
      throw new Error(`ENOENT ${p}`);
    }
    return map[p];
  },
});

test("readManagedInstall: only a complete install named by current.json is used", () => {
  const root = "/store/server";
  const python = venvPython(path.join(root, "venv-2"), "linux");
  const current = JSON.stringify({ venv: "venv-2", version: "0.1.0", source_id: "sha256:ab", previous: "venv-1" });
  const ok = files({ [path.join(root, "current.json")]: current, [python]: "" });
  assert.deepEqual(readManagedInstall(root, ok.exists, ok.read, "linux"), {
    root,
    venv: "venv-2",
    python,
    version: "0.1.0",
    sourceId: "sha256:ab",
    previous: "venv-1",
  });
  // No current.json, half a file, a venv whose Python is gone, a name that leaves the folder: not used.
  for (const map of [
    {},
    { [path.join(root, "current.json")]: "{ half" },
    { [path.join(root, "current.json")]: current },
    { [path.join(root, "current.json")]: JSON.stringify({ venv: "../../elsewhere" }), "/elsewhere/bin/python": "" },
  ]) {
    const f = files(map);
    assert.equal(readManagedInstall(root, f.exists, f.read, "linux"), undefined, JSON.stringify(map));
  }
  assert.equal(venvPython("C:\\s\\venv-1", "win32"), path.join("C:\\s\\venv-1", "Scripts", "python.exe"));
});

test("the installed server runs isolated from the environment and the working directory", () => {
  const install = { root: "/s", venv: "venv-1", python: "/s/venv-1/bin/python", version: "0.1.0", sourceId: "sha256:ab" };
  assert.deepEqual(managedCommand(install, ["--log-level", "DEBUG"]), {
    command: "/s/venv-1/bin/python",
    args: ["-I", "-u", "-m", "fimble", "serve", "--log-level", "DEBUG"],
    source: "installed",
  });
  const bundled = { version: "0.1.0", wheel: "w.whl", sha256: "ab", installer: "i.py", dir: "/ext/bundled" };
  assert.equal(isCurrent(install, bundled), true);
  assert.equal(isCurrent({ ...install, sourceId: "sha256:cd" }, bundled), false);
  const f = files({ "/ext/bundled/server.json": JSON.stringify(bundled) });
  assert.deepEqual(readBundled("/ext", f.read), bundled);
  assert.equal(readBundled("/nowhere", f.read), undefined);
});

test("pythonCandidates: the Python extension's, the user's, py -3, then PATH; none from a workspace folder", () => {
  const which = (name: string) =>
    ({ python3: ["/ws/.venv/bin/python3", "/usr/bin/python3"], python: ["/usr/bin/python3", "/usr/local/bin/python"] })[
      name
    ] ?? [];
  const list = pythonCandidates({
    pythonExtension: "/opt/py/bin/python",
    defaultInterpreterPath: "/home/u/py311/bin/python",
    folders: ["/ws"],
    platform: "linux",
    which,
  });
  assert.deepEqual(
    list.map((c) => c.command),
    ["/opt/py/bin/python", "/home/u/py311/bin/python", "/usr/bin/python3", "/usr/local/bin/python"],
  );
  // A workspace's interpreter (its .venv) is never the one that installs.
  assert.deepEqual(
    pythonCandidates({ pythonExtension: "/ws/.venv/bin/python", folders: ["/ws"], platform: "linux", which: () => [] }),
    [],
  );
  // Windows: the py launcher; never the Store's python.exe stub.
  const win = pythonCandidates({
    folders: [],
    platform: "win32",
    which: (name) =>
      ({ py: ["C:\\Windows\\py.exe"], python: ["C:\\Users\\u\\AppData\\Local\\Microsoft\\WindowsApps\\python.exe"] })[
        name
      ] ?? [],
  });
  assert.deepEqual(
    win.map((c) => [c.command, ...c.args]),
    [["C:\\Windows\\py.exe", "-3"]],
  );
});

test("probing: the version and the real executable; 3.11 or newer; what to say when none will do", () => {
  assert.deepEqual(parseProbe("3.12.1\n/usr/bin/python3.12\n"), { version: [3, 12, 1], executable: "/usr/bin/python3.12" });
  assert.equal(parseProbe("Python was not found; run without arguments to install from the Microsoft Store"), undefined);
  assert.equal(isNewEnough([3, 11, 0]), true);
  assert.equal(isNewEnough([4, 0, 0]), true);
  assert.equal(isNewEnough([3, 10, 14]), false);
  assert.equal(isNewEnough([2, 7, 18]), false);
  const old = noPythonMessage([
    { candidate: { command: "/usr/bin/python3", args: [], label: "python3 on PATH" }, version: [3, 9, 2] },
    { candidate: { command: "/usr/bin/python", args: [], label: "python on PATH" }, error: "ENOENT" },
  ]);
  assert.match(old, /needs Python 3\.11 or newer, and fimble found only \/usr\/bin\/python3 is 3\.9\.2/);
  assert.match(old, /Install Python 3\.11 or newer.*Retry/);
  assert.match(noPythonMessage([]), /found none \(no python3 or python on PATH\)/);
});

test("events: parsed from JSON lines; progress increments add up to what the installer says", () => {
  assert.deepEqual(parseEvent('{"event": "log", "text": "Collecting pygls"}'), { event: "log", text: "Collecting pygls" });
  assert.equal(parseEvent("Traceback (most recent call last):"), undefined);
  assert.equal(parseEvent("[1, 2]"), undefined);
  const tracker = new ProgressTracker();
  const events: InstallEvent[] = [
    { event: "step", step: "venv", title: "Creating the virtual environment", percent: 0 },
    { event: "step", step: "packages", title: "Getting the packages", percent: 8 },
    { event: "progress", step: "packages", message: "numpy-2.4.6-cp311-cp311-manylinux_2_28_x86_64.whl" },
    { event: "step", step: "build", title: "Compiling llama.cpp (5-10 minutes)", percent: 20 },
    { event: "progress", step: "build", message: "[45/180] Building", fraction: 0.25, percent: 33.75 },
    { event: "step", step: "install", title: "Installing the packages", percent: 75 },
    { event: "step", step: "model", title: "Preparing the default model", percent: 92 },
  ];
  const shown = events.map((e) => tracker.update(e));
  assert.equal(shown[0]?.message, "Creating the virtual environment…");
  assert.equal(shown[2]?.message, "Getting the packages — numpy-2.4.6-cp311-cp311-manylinux_2_28_x86_64.whl");
  assert.equal(shown[4]?.message, "Compiling llama.cpp (5-10 minutes) — 25%");
  const total = shown.reduce((sum, s) => sum + (s?.increment ?? 0), 0);
  assert.equal(total, 92);
  assert.equal(tracker.percent, 92);
  assert.equal(tracker.update({ event: "log", text: "x" }), undefined);
});

test("installerEnv: the user's environment, plus VS Code's proxy when none is set", () => {
  assert.deepEqual(installerEnv({ PATH: "/bin", PIP_FIND_LINKS: "/w" }, ""), { PATH: "/bin", PIP_FIND_LINKS: "/w" });
  assert.deepEqual(installerEnv({ PATH: "/bin" }, "http://proxy:3128"), {
    PATH: "/bin",
    HTTPS_PROXY: "http://proxy:3128",
    HTTP_PROXY: "http://proxy:3128",
  });
  assert.deepEqual(installerEnv({ https_proxy: "http://mine" }, "http://proxy:3128"), { https_proxy: "http://mine" });
});
