"""The PMML model server (aiohttp) and its process pool."""
