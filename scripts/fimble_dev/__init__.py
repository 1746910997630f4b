"""fimble's development tools, kept out of the product package (the wheel ships `server/fimble` only): tiny
random-weight GGUF models for tests and benchmarks, and the latency replays the `scripts/bench_*.py` commands drive.

Importable by the scripts in `scripts/` (their own folder is on `sys.path`) and by the tests (pytest's `pythonpath`
setting). May import dev-only packages (`gguf`); the product never imports this package.
"""
