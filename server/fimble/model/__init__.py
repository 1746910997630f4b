"""The model runtime: find a GGUF, read its header, load it in llama.cpp and generate on one worker thread."""
