"""Load benchmark of Mamba's /chat against the fake OpenAI upstream (`python -m bench.run`)."""
