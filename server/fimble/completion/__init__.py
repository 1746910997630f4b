"""The completion pipeline: cursor -> context -> prompt -> model -> filters -> suggestion."""
