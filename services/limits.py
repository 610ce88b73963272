"""The size limits of memories, chat messages and their requests, written once.

The validators (``services.memories.validation``), the HTTP handlers and the OpenAPI
document all read these numbers, so what the document promises is what is enforced.
``MAX_CONTENT_CHARS`` is the default of the ``MAX_CONTENT_CHARS`` setting.
"""

from __future__ import annotations

MAX_CONTENT_CHARS = 4000  # a memory's content or context, and a search query
MAX_ID_CHARS = 256  # user ids, namespaces, keys, metadata property names
MAX_METADATA_BYTES = 16_384  # a memory's metadata as JSON
MAX_JSON_ITEMS = 64  # properties of a metadata object, items of an array in it
MAX_PAGE_LIMIT = 200  # memories (or messages) one list or search returns
MAX_CURSOR_CHARS = 512  # a page cursor as the client sends it back
MAX_CHAT_MESSAGE_CHARS = 32_000  # one message a client sends to chat (or a text part of one)
MAX_THREAD_MESSAGE_CHARS = 100_000  # one stored message of a thread: answers, tool results
MAX_THREAD_ID_CHARS = 64
THREAD_ID_PATTERN = rf"^[A-Za-z0-9_-]{{1,{MAX_THREAD_ID_CHARS}}}$"
