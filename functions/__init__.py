"""Cloud Functions handlers: thin adapters from the platform's calls to services/.

Each handler is made by a factory taking a runtime factory, so main.py wires the lazily
built process runtime and tests wire their own.
"""
