"""The trust boundary: what a workspace (its files, its .git, the URIs a client sends) can and cannot make fimble do.

Every git invocation, every path taken from a URI and every file fimble writes goes through this package, so the
rules in the README's "Security" section are enforced in one place each.
"""
