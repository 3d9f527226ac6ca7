"""Teacher/decoder backends that live outside the core harness (e.g. the OpenAI-compatible HTTP client)."""
