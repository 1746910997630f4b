"""The fix and explain agent: verified fix suggestions and on-demand explanations.

Everything here is plain Python that the LSP handlers (`fimble.lsp.agent_features`), the CLI (`fimble explain`) and
`scripts/eval_fix.py` share. Model work goes through `ModelRuntime` (one worker thread); checks run in threads and
subprocesses; nothing here ever writes a user's file.
"""
