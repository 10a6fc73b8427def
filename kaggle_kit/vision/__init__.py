"""Image tools both pipelines use: fast JPEG decoding (``images``), finding images that would break training
(``clean``), Kaggle's run-length encoding (``rle``), thresholds and scores (``metrics``), pictures (``charts``) and
synthetic image sets for tests and demos (``synthetic``).
"""
