"""``hpcjobs view``: a result in a browser, zoomable, read straight from its Zarr group.

``result`` describes a result's steps and their views; ``tiles``, ``series`` and
``scatter`` cut what the page asks for from the stored arrays (``chunks``: chunk-aligned
reads through one small LRU of decoded chunks); ``png`` encodes images; ``server`` answers
the page on loopback, behind a token; ``static/`` is the page itself (plain HTML, JS, CSS).
"""
