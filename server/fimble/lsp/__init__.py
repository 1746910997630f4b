"""The LSP front end: thin pygls handlers translating protocol to plain calls and back."""
