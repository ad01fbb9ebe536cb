"""
Lifecycle helpers for web frameworks: ``rehook_sdk.integrations.aiohttp`` and ``rehook_sdk.integrations.starlette``
(FastAPI and Starlette; ``pip install "rehook-sdk[fastapi]"``).
"""
