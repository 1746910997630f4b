"""Remote engines: fimble talks to a shared model server (llama.cpp's llama-server, or an OpenAI-compatible server
such as vLLM, Ollama, LM Studio or llama-cpp-python's) through the same `ModelBackend` interface as the in-process
engine, so prompts, context, filters, caching and the agent do not know where the model runs.

Only the standard library is used for HTTP (`http.client`), so remote support adds no dependency.
"""

from __future__ import annotations

from fimble.model.remote.failures import RemoteError

__all__ = ["RemoteError"]
