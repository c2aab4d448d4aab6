"""The LLM teacher: litellm routing, local and fake providers, response cache, token ledger."""
