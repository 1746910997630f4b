"""Context sources: what the prompt holds besides the cursor window."""
