"""Prompt formats (data in prompts/) and the assembly of a prompt from context."""
