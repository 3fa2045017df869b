"""The benchmark harness: memscribe against its anchors, side by side in one run.

``python -m bench`` (``make bench``; ``QUICK=1`` for a short run). Sections live in
``bench/sections`` and are registered in ``bench.sections.SECTIONS``.
"""
