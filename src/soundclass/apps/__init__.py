"""What a person runs: the end-to-end demo, the picture of one file, the web demo.

Stage 11 (imports any library stage, never ``cli``).  ``demo`` (``soundclass
demo``), ``show`` (``soundclass show``: the 4-panel picture, the timeline),
``serve/`` (``soundclass serve`` on Starlette + uvicorn) with its page in
``static/``.
"""
