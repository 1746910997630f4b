"""Next-edit suggestions: the user's recent edits (recent_edits), the region around the cursor a model may rewrite
(region), prompt formats per model family (edit_formats, prompt), one prediction on the model runtime (predictor),
and the checks that decide what is shown (checks)."""
