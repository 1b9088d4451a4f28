"""Private deployment: an OpenAI-compatible server, safe by default, batching concurrent requests."""
