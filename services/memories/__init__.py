"""The memory store as a package; import each name from the module that owns it.

``store`` (MemoryStore), ``records`` (its dataclasses and how rows map onto them), ``sql``
(every statement, by name), ``validation`` (the checks every layer shares), ``writes`` (the
steps of a write), ``cursor`` (page tokens), ``access`` (batched hit counts) and ``dedup``
(the near-duplicate rule and the lossless merge).
"""
