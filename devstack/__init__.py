"""Local development stack: Graph simulator, managed-identity endpoint and Azurite.

Developer tooling only; never deployed (see .funcignore).
"""
