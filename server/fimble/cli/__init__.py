"""The `fimble` command line."""
