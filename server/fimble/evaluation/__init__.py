"""Quality and latency measurement: HumanEval infilling, repository-level line completion, keystroke latency.

Everything here drives the real completion pipeline (or the real server), so the numbers describe what a user gets.
"""
