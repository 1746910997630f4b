"""Fixture repositories built at test time: git init, several files per language, ignored files, an uncommitted
edit. Nothing here touches the user's cache directory."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from fimble.context.engine import ContextEngine
from fimble.context.source_types import ContextQuery, ContextResult
from fimble.prompt.budget import TokenEstimator

ALL = ("scope", "definitions", "similar", "ring", "git")
SECRET = "TOPSECRET_do_not_send"

FILES: dict[str, str] = {
    # -- python ------------------------------------------------------------------------------------------------
    "pkg/__init__.py": "",
    "pkg/geometry.py": '''"""Plane geometry."""


class Point:
    """A point in the plane."""

    def __init__(self, x: float, y: float) -> None:
        self.x = x
        self.y = y

    def distance_to(self, other: "Point") -> float:
        """Euclidean distance to another point."""
        return ((self.x - other.x) ** 2 + (self.y - other.y) ** 2) ** 0.5


def midpoint(a: Point, b: Point) -> Point:
    """The point halfway between a and b."""
    return Point((a.x + b.x) / 2, (a.y + b.y) / 2)
''',
    "pkg/units.py": '''from .geometry import Point


def to_metres(p: Point, scale: float) -> Point:
    """Convert map units to metres."""
    return Point(p.x * scale, p.y * scale)
''',
    "app/main.py": """from pkg.geometry import Point, midpoint
from secret.keys import helper_from_secret


def run() -> None:
    a = Point(0, 0)
    b = Point(2, 2)
    m = midpoint(a, b)
    helper_from_secret()
    print(m)
""",
    # -- javascript / typescript ---------------------------------------------------------------------------
    "web/lib/math.js": """/** Add two numbers, carefully. */
export function addNumbers(a, b) {
  return a + b;
}

export const TAU = 6.283;
""",
    "web/app.js": """import { addNumbers } from "./lib/math";

function total(xs) {
  return xs.reduce((acc, x) => addNumbers(acc, x), 0);
}
""",
    "web/src/types.ts": """/** A signed-in user. */
export interface User {
  id: number;
  name: string;
}

export function displayName(u: User): string {
  return u.name;
}
""",
    "web/src/service.ts": """import { User, displayName } from "./types";

export function greet(u: User): string {
  return "hi " + displayName(u);
}
""",
    # -- go ------------------------------------------------------------------------------------------------
    "go.mod": "module example.com/proj\n\ngo 1.21\n",
    "shapes/shapes.go": """package shapes

// Rect is an axis-aligned rectangle.
type Rect struct {
	W, H float64
}

// Area returns the area of r.
func Area(r Rect) float64 { return r.W * r.H }
""",
    "cmd/main.go": """package main

import (
	"fmt"

	"example.com/proj/shapes"
)

func main() {
	r := shapes.Rect{W: 2, H: 3}
	fmt.Println(shapes.Area(r))
}
""",
    # -- rust ------------------------------------------------------------------------------------------------
    "rs/src/geometry.rs": """/// A 2-d vector.
pub struct Vec2 {
    pub x: f64,
    pub y: f64,
}

/// Dot product.
pub fn dot(a: &Vec2, b: &Vec2) -> f64 {
    a.x * b.x + a.y * b.y
}
""",
    "rs/src/main.rs": """mod geometry;
use crate::geometry::{dot, Vec2};

fn main() {
    let v = Vec2 { x: 1.0, y: 2.0 };
    println!("{}", dot(&v, &v));
}
""",
    # -- c / c++ -----------------------------------------------------------------------------------------------
    "c/vec.h": """#ifndef VEC_H
#define VEC_H
/* A 3-d vector. */
struct vec3 { double x, y, z; };
/* Component-wise sum. */
struct vec3 vec3_add(struct vec3 a, struct vec3 b);
#endif
""",
    "c/main.c": """#include "vec.h"

int main(void) {
    struct vec3 a = {1, 2, 3};
    struct vec3 s = vec3_add(a, a);
    return (int)s.x;
}
""",
    "cpp/shape.hpp": """#pragma once
// Something with an area.
class Shape {
 public:
  virtual double area() const = 0;
  virtual ~Shape() {}
};
""",
    "cpp/main.cpp": """#include "shape.hpp"

double twice(const Shape& s) { return 2 * s.area(); }
""",
    # -- java ------------------------------------------------------------------------------------------------
    "java/com/acme/util/Greeter.java": """package com.acme.util;

/** Says hello. */
public class Greeter {
    /** The greeting for a name. */
    public String greet(String name) { return "Hello " + name; }
}
""",
    "java/com/acme/App.java": """package com.acme;

import com.acme.util.Greeter;

public class App {
    public static void main(String[] args) {
        Greeter g = new Greeter();
        System.out.println(g.greet("x"));
    }
}
""",
    # -- lua / bash ------------------------------------------------------------------------------------------
    "lua/strutil.lua": """local M = {}
-- Trim whitespace from both ends.
function M.trim(s)
  return (s:gsub("^%s*(.-)%s*$", "%1"))
end
return M
""",
    "lua/main.lua": """local strutil = require("strutil")
print(strutil.trim("  x  "))
""",
    "sh/lib.sh": """# Print a greeting.
greet_user() {
  echo "hello $1"
}
""",
    "sh/run.sh": """#!/bin/sh
. ./lib.sh
greet_user world
""",
    # -- ignored, vendored, generated ----------------------------------------------------------------------
    ".gitignore": "secret/\n*.log\n",
    "secret/keys.py": f'def helper_from_secret():\n    """{SECRET}"""\n    return "{SECRET}"\n',
    "debug.log": f"{SECRET}\n",
    "node_modules/leftpad/index.js": f"export function addNumbers() {{ return '{SECRET}'; }}\n",
    "gen/api_pb2.py": f"def midpoint():\n    return '{SECRET}'\n",
}

UNCOMMITTED = '''

def scale(p: Point, k: float) -> Point:
    """Scale a point away from the origin."""
    return Point(p.x * k, p.y * k)
'''


def git(root: Path, *args: str) -> None:
    subprocess.run(
        ["git", "-c", "user.email=t@example.com", "-c", "user.name=t", *args],
        cwd=root,
        check=True,
        capture_output=True,
    )


def write_files(root: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def make_repo(root: Path, files: dict[str, str] | None = None, commit: bool = True) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    write_files(root, FILES if files is None else files)
    git(root, "init", "-q")
    if commit:
        git(root, "add", "-A")
        # the generated file is committed to check that a tracked generated file is still not indexed
        git(root, "commit", "-qm", "initial")
        for n in range(2):  # history in which units.py and geometry.py change together
            for rel in ("pkg/units.py", "pkg/geometry.py"):
                with (root / rel).open("a") as fh:
                    fh.write(f"\n# revision {n}\n")
            git(root, "commit", "-qam", f"revision {n}")
        with (root / "pkg/geometry.py").open("a") as fh:
            fh.write(UNCOMMITTED)
    return root


@pytest.fixture(scope="session")
def repo_ro(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fixture repository tests must not modify."""
    return make_repo(tmp_path_factory.mktemp("ctx") / "repo")


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    return make_repo(tmp_path / "repo")


@pytest.fixture(scope="session")
def engine_ro(repo_ro: Path) -> Iterator[ContextEngine]:
    engine = ContextEngine(repo_ro, cache_file=False)
    engine.index_now()
    yield engine
    engine.close()


def query_at(root: Path, rel: str, marker: str, after: bool = True, window: int | None = None) -> ContextQuery:
    """A query with the cursor just after (or at) the first occurrence of `marker` in the file."""
    text = (root / rel).read_text()
    offset = text.index(marker) + (len(marker) if after else 0)
    lo, hi = (offset - window, offset + window) if window is not None else (offset, offset)
    return ContextQuery(
        text=text,
        offset=offset,
        language_id="",  # from the extension, as for a client that sends nothing useful
        path=rel,
        uri=(root / rel).as_uri(),
        window=(max(0, lo), min(len(text), hi)),
    )


def gather(
    engine: ContextEngine, query: ContextQuery, sources: tuple[str, ...] = ALL, budget: int = 2000
) -> ContextResult:
    return engine.gather(query, sources, budget, TokenEstimator(), time.monotonic() + 1.0)


def prompt_text(result: ContextResult) -> str:
    return "\n".join(f"{s.source} {s.path}\n{s.text}" for s in result.snippets)
