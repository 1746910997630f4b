"""Draws the VS Code extension's icon (editor-clients/vscode/media/icon.png): a dark rounded tile with a code
"f", a text cursor after it, and dimmed ghost text beside it, the way a suggestion looks in the editor.

Run:  python scripts/draw_icon.py [--out PATH]   (needs Pillow and the DejaVu Sans Mono font)
"""

from __future__ import annotations

import argparse
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

REPO = Path(__file__).resolve().parents[1]
DEFAULT_OUT = REPO / "editor-clients" / "vscode" / "media" / "icon.png"
SIZE = 128
# Drawn at 4x and scaled down: Pillow does not antialias shapes, only text.
SCALE = 4
FONT = "/usr/share/fonts/truetype/dejavu/DejaVuSansMono-Bold.ttf"
TILE = (30, 34, 44)
LETTER = (236, 239, 244)
CURSOR = (97, 175, 239)
GHOST = (120, 128, 142)


def draw_icon() -> Image.Image:
    s = SIZE * SCALE
    img = Image.new("RGBA", (s, s), (0, 0, 0, 0))
    d = ImageDraw.Draw(img)
    d.rounded_rectangle([0, 0, s - 1, s - 1], radius=24 * SCALE, fill=TILE)
    bold = ImageFont.truetype(FONT, 92 * SCALE)
    # The letter, left of centre so the cursor and the ghost text fit after it.
    left, top, right, bottom = d.textbbox((0, 0), "f", font=bold)
    x = 14 * SCALE - left
    y = (s - (bottom - top)) // 2 - top
    d.text((x, y), "f", font=bold, fill=LETTER)
    cursor_x = x + right + 4 * SCALE
    d.rectangle([cursor_x, y + top, cursor_x + 5 * SCALE, y + bottom], fill=CURSOR)
    gx = cursor_x + 12 * SCALE
    # Three dimmed lines of "code" after the cursor, the later two indented, as a multi-line suggestion shows.
    for i, (indent, width) in enumerate(((0, 32), (9, 23), (9, 14))):
        gx0, gy = gx + indent * SCALE, y + top + (8 + 26 * i) * SCALE
        d.rounded_rectangle([gx0, gy, gx0 + width * SCALE, gy + 9 * SCALE], radius=4 * SCALE, fill=GHOST)
    return img.resize((SIZE, SIZE), Image.Resampling.LANCZOS)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    draw_icon().save(args.out, optimize=True)
    print(args.out)


if __name__ == "__main__":
    main()
