"""Helpers the tests share: a fake OpenAI-compatible provider, the real servers, Dagster runs in
processes of their own. Test modules never import each other; what they share is here or in conftest."""
