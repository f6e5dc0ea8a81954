"""The ground every other package stands on: settings, retries, credentials, progress lines.

Nothing here imports another riskstream package, so any of them (the
worker, the model server, the generator, the stack, the bench) can use it
without pulling in Faust or a store.
"""
