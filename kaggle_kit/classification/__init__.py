"""The image-classification pipeline: its DataBlock, defined once for training and prediction (``data``), and the
trained model as one verified folder (``model``).
"""
